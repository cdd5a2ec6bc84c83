"""Tests for the audio modality: its reader (WAV reading, resampling, ``audio:DIR``), features and augmentation
(filters, spectrogram, mel filterbank, noise, time shift, SpecAugment, the pipeline).

WAVs are written into tmp_path with ``scipy.io.wavfile.write``: tones whose frequency says the
class, in several sample formats and rates. Each formula is recomputed in NumPy. One test reads
the real Free Spoken Digit Dataset when it is there (``REGULAB_FSDD`` or ../shared/data/fsdd).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch
from scipy.io import wavfile

import regulab as rl
from regulab.errors import ConfigError, DataError
from regulab.modalities.audio.augment import AudioPipeline, add_noise, spec_augment, time_shift
from regulab.modalities.audio.features import (LogMelSpectrogram, bandpass, fir_kernel, highpass, lowpass,
                                               mel_filterbank, spectrogram)
from regulab.modalities.audio.reader import load_audio_dir, natural_key, read_wav, resample
from regulab.modalities.audio.section import AudioConfig
from regulab.modalities.layer import Augment
from regulab.modalities.sources import load_dataset

FSDD = Path(os.environ.get("REGULAB_FSDD", Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tone(freq: float, sr: int, n: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)


def one_line(info) -> str:
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


def amplitude(y: np.ndarray, sr: int, freq: float) -> float:
    """Amplitude of the tone at ``freq`` (an integer number of cycles in y) by numpy's FFT."""
    spec = np.abs(np.fft.rfft(y)) * 2 / len(y)
    return float(spec[round(freq * len(y) / sr)])


# ----------------------------------------------------------------------------- reading

@pytest.mark.parametrize("dtype,values,expected", [
    (np.uint8, [0, 128, 255], [-1.0, 0.0, 127 / 128]),
    (np.int16, [-32768, 0, 16384], [-1.0, 0.0, 0.5]),
    (np.int32, [-2 ** 31, 0, 2 ** 30], [-1.0, 0.0, 0.5]),
    (np.float32, [-0.25, 0.0, 0.75], [-0.25, 0.0, 0.75]),
])
def test_read_wav_scales_each_sample_format_to_minus_one_one(tmp_path, dtype, values, expected):
    wavfile.write(tmp_path / "a.wav", 11025, np.asarray(values, dtype=dtype))
    x, sr = read_wav(tmp_path / "a.wav")
    assert sr == 11025 and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-7)


def test_read_wav_averages_stereo_and_refuses_broken_files(tmp_path):
    wavfile.write(tmp_path / "s.wav", 8000, np.array([[16384, 0], [-32768, -16384]], dtype=np.int16))
    np.testing.assert_allclose(read_wav(tmp_path / "s.wav")[0], [0.25, -0.75])
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x01not a wave file")
    with pytest.raises(DataError, match="bad.wav"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(DataError, match="missing.wav.*does not exist"):
        read_wav(tmp_path / "missing.wav")


@pytest.mark.parametrize("orig,new", [(16000, 8000), (22050, 8000), (8000, 16000), (11025, 8000)])
def test_resample_matches_scipy_resample_poly_on_tones(orig, new):
    x = tone(440, orig, orig) + tone(1500, orig, orig)                      # 1 s, both below 4 kHz
    y = resample(torch.tensor(x), orig, new).numpy()
    g = math.gcd(orig, new)
    ref = scipy.signal.resample_poly(x, new // g, orig // g)
    assert len(y) == len(ref) == math.ceil(len(x) * new / orig)
    inner = slice(100, -100)                                                 # both pad with zeros
    assert np.abs(y - ref)[inner].max() < 5e-3
    assert np.abs(y - tone(440, new, len(y)) - tone(1500, new, len(y)))[inner].max() < 2e-3


def test_resample_is_batched_and_checks_rates():
    x = torch.randn(2, 3, 500, generator=gen())
    y = resample(x, 16000, 6000)
    assert y.shape == (2, 3, 188)
    torch.testing.assert_close(y[1, 2], resample(x[1, 2], 16000, 6000))
    assert resample(x, 8000, 8000) is x
    with pytest.raises(ConfigError, match="resample.new_sr.*0"):
        resample(x, 8000, 0)


@pytest.mark.parametrize("orig", [7919, 8001, 2**32 - 1])
def test_resampling_nearly_coprime_rates_is_refused_before_building_the_filter(orig):
    """7919 -> 8000 Hz needs 8000 phases of 7931 taps (63 million); refused naming both rates."""
    with pytest.raises(DataError, match=f"resampling {orig} Hz to 8000 Hz .*MAX_RESAMPLE_TAPS"):
        resample(torch.zeros(400), orig, 8000)
    assert resample(torch.zeros(441), 44100, 8000).shape == (80,)     # 80 phases of 509 taps


# ----------------------------------------------------------------------------- audio:DIR

def write_tone(path: Path, freq: float, sr: int, n: int, dtype=np.int16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = tone(freq, sr, n)
    if dtype == np.int16:
        x = np.round(x * 32767).astype(np.int16)
    elif dtype == np.int32:
        x = np.round(x * (2 ** 31 - 1)).astype(np.int32)
    elif dtype == np.uint8:
        x = np.round(x * 127 + 128).astype(np.uint8)
    wavfile.write(path, sr, x.astype(dtype))


FREQS = {"2": 500.0, "10": 1000.0, "cat": 1500.0}                           # class -> tone


def fsdd_like(root: Path) -> Path:
    """{label}_{speaker}_{index}.wav: 3 classes x 4 indices, mixed formats and rates."""
    formats = [(8000, np.int16), (16000, np.float32), (11025, np.uint8), (8000, np.int32)]
    for label, f in FREQS.items():
        for i, (sr, dtype) in enumerate(formats):
            write_tone(root / f"{label}_spk_{i}.wav", f, sr, int(sr * 0.5) if i != 3 else 2 * sr, dtype)
    return root


def test_load_audio_dir_fsdd_layout(tmp_path):
    ds = load_audio_dir(fsdd_like(tmp_path / "rec"), sample_rate=8000, seconds=0.75, test_indices=[0, 2])
    assert ds.classes == ["2", "10", "cat"]                                 # natural order
    assert ds.X.shape == (6, 6000) and ds.X_test.shape == (6, 6000) and ds.X.dtype == np.float32
    assert sorted(ds.y.tolist()) == [0, 0, 1, 1, 2, 2] and ds.y.dtype == np.int64
    for X, y in ((ds.X, ds.y), (ds.X_test, ds.y_test)):
        for clip, label in zip(X, y):
            spec = np.abs(np.fft.rfft(clip[:4000]))                          # 0.5 s: 2 Hz bins
            assert spec.argmax() * 2 == FREQS[ds.classes[label]]            # every rate resampled
            assert 0.45 < np.abs(clip[1000:3000]).max() < 0.55
    n_long = sum(1 for c in ds.X if np.abs(c[4100:]).max() > 0.1)           # index 3: 2 s, trimmed
    assert n_long == 3 and np.abs(ds.X_test[:, 4100:]).max() == 0.0          # 0.5 s clips: zero tail


def test_load_audio_dir_folders_and_load_dataset(tmp_path):
    for label, f in (("low", 300.0), ("high", 2000.0)):
        for i in range(3):
            write_tone(tmp_path / "d" / label / f"clip{i}.wav", f, 8000, 4000)
    ds = load_audio_dir(tmp_path / "d", seconds=0.25)                         # auto -> folder
    assert ds.classes == ["high", "low"] and ds.X.shape == (6, 2000) and ds.X_test is None
    via = load_dataset(f"audio:{tmp_path / 'd'}", sections=rl.Config(audio=AudioConfig(seconds=0.25, label="folder")))
    assert via.name == f"audio:{tmp_path / 'd'}" and np.array_equal(via.X, ds.X)


def test_load_audio_dir_errors_are_one_line(tmp_path):
    root = fsdd_like(tmp_path / "rec")
    cases = [
        (dict(path=tmp_path / "nowhere"), DataError, ["nowhere", "does not exist"]),
        (dict(path=tmp_path / "rec", sample_rate=0), ConfigError, ["sample_rate", "0"]),
        (dict(path=tmp_path / "rec", seconds=-1.0), ConfigError, ["seconds", "-1.0"]),
        (dict(path=tmp_path / "rec", label="dir"), ConfigError, ["label", "'dir'"]),
        (dict(path=tmp_path / "rec", test_indices=[7]), DataError, ["test_indices", "[7]", "0 of 12"]),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((dict(path=tmp_path / "empty"), DataError, ["empty", "no .wav"]))
    for kwargs, error, words in cases:
        with pytest.raises(error) as info:
            load_audio_dir(**kwargs)
        assert all(w in one_line(info) for w in words), (words, str(info.value))
    write_tone(root / "cat_spk_last.wav", 100.0, 8000, 100)
    with pytest.raises(DataError, match="cat_spk_last.wav.*integer index"):
        load_audio_dir(root, test_indices=[0])
    (root / "cat_spk_last.wav").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cat_spk_last.wav.*cannot be read"):
        load_audio_dir(root)
    write_tone(tmp_path / "one" / "x_0.wav", 100.0, 8000, 100)
    with pytest.raises(DataError, match="1 class.*at least 2"):
        load_audio_dir(tmp_path / "one")
    assert sorted(["a10", "a9", "b1"], key=natural_key) == ["a9", "a10", "b1"]


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason="the Free Spoken Digit Dataset is not here")
def test_real_fsdd_standard_split():
    ds = load_audio_dir(FSDD / "recordings", test_indices=[0, 1, 2, 3, 4])
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.X.shape == (2700, 8000) and ds.X_test.shape == (300, 8000)
    assert np.bincount(ds.y_test).tolist() == [30] * 10
    assert np.abs(ds.X).max() <= 1.0 and np.abs(ds.X).mean() > 1e-3
    S = AudioPipeline().eval(torch.from_numpy(ds.X_test[:8]))
    assert S.shape == (8, 1, 40, 101) and torch.isfinite(S).all()


# ----------------------------------------------------------------------------- filters

def test_filters_pass_below_and_stop_above_the_cutoff():
    sr, n = 8000, 8000
    low, mid, high = tone(500, sr, n, 1.0), tone(1500, sr, n, 1.0), tone(3000, sr, n, 1.0)
    x = torch.tensor(np.stack([low + mid + high]))
    for y, kept in ((lowpass(x, sr, 1000), [500]), (highpass(x, sr, 2000), [3000]),
                    (bandpass(x, sr, 1000, 2000), [1500])):
        y = y[0].numpy()
        for f in (500, 1500, 3000):
            a = amplitude(y, sr, f)
            assert (a > 0.95) if f in kept else (a < 0.01), (f, a)
    torch.testing.assert_close(lowpass(x, sr, 1000) + highpass(x, sr, 1000), x)   # complementary


def test_fir_kernel_is_the_windowed_sinc_of_its_formula_and_zero_phase():
    h = fir_kernel(8000, high=1000).numpy()     # scipy.signal.firwin's taps, against the formula
    n = np.arange(len(h)) - (len(h) - 1) / 2
    formula = (0.5 + 0.5 * np.cos(2 * np.pi * n / (len(h) - 1))) * np.sinc(2 * 1000 / 8000 * n)
    np.testing.assert_allclose(h, formula / formula.sum(), atol=1e-15)
    band = fir_kernel(8000, low=500, high=1000).numpy()         # lowpass(high) - lowpass(low)
    low = (0.5 + 0.5 * np.cos(2 * np.pi * n / (len(h) - 1))) * np.sinc(2 * 500 / 8000 * n)
    np.testing.assert_allclose(band, formula / formula.sum() - low / low.sum(), atol=1e-15)
    assert len(h) == 125 and np.allclose(h, h[::-1])                         # width sr/40: 3.1*40 + 1
    _, H = scipy.signal.freqz(h, worN=[1000 - 100, 1000 + 100], fs=8000)  # cutoff -/+ width / 2
    assert abs(H[0]) > 0.99 and abs(H[1]) < 0.01
    impulse = torch.zeros(1, 301, dtype=torch.float64)
    impulse[0, 150] = 1.0
    assert lowpass(impulse, 8000, 1000)[0].argmax() == 150                    # no delay
    for kwargs, words in ((dict(high=4000), ["high", "4000"]), (dict(low=900, high=800), ["low", "900"])):
        with pytest.raises(ConfigError) as info:
            fir_kernel(8000, **kwargs)
        assert all(w in one_line(info) for w in words)


# ----------------------------------------------------------------------------- features

def numpy_stft_power(x: np.ndarray, n_fft: int, hop: int, win: int, power: float) -> np.ndarray:
    w = np.zeros(n_fft)
    left = (n_fft - win) // 2
    w[left:left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)   # periodic Hann
    xp = np.pad(x, n_fft // 2)
    frames = np.stack([xp[m * hop:m * hop + n_fft] * w for m in range(1 + len(x) // hop)])
    return (np.abs(np.fft.rfft(frames, axis=1)) ** power).T                 # (F, frames)


@pytest.mark.parametrize("n_fft,hop,win,power", [(256, 80, None, 2.0), (64, 16, 40, 1.0)])
def test_spectrogram_is_numpy_rfft_of_hann_frames(n_fft, hop, win, power):
    x = torch.randn(3, 1000, generator=gen(), dtype=torch.float64)
    S = spectrogram(x, n_fft, hop, win, power)
    assert S.shape == (3, n_fft // 2 + 1, 1 + 1000 // hop)
    for b in range(3):
        np.testing.assert_allclose(S[b].numpy(), numpy_stft_power(x[b].numpy(), n_fft, hop, win or n_fft, power),
                                   rtol=1e-9, atol=1e-9)


def numpy_mel_fb(n_freqs, n_mels, sr, f_min, f_max):
    mel = lambda f: 2595 * np.log10(1 + f / 700)                            # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)                             # noqa: E731
    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    fb = np.zeros((n_mels, n_freqs))
    for m in range(n_mels):
        for k, f in enumerate(np.linspace(0, sr / 2, n_freqs)):
            lo, c, hi = edges[m:m + 3]
            fb[m, k] = max(0.0, min((f - lo) / (c - lo), (hi - f) / (hi - c)))
    return fb, edges


def test_mel_filterbank_is_the_htk_formula():
    fb = mel_filterbank(129, 40, 8000).numpy()
    ref, _ = numpy_mel_fb(129, 40, 8000, 0.0, 4000.0)
    np.testing.assert_allclose(fb, ref, atol=1e-6)
    fb2 = mel_filterbank(257, 20, 16000, f_min=300.0, f_max=6000.0, norm="slaney").numpy()
    ref2, edges = numpy_mel_fb(257, 20, 16000, 300.0, 6000.0)
    np.testing.assert_allclose(fb2, ref2 * (2 / (edges[2:] - edges[:-2]))[:, None], rtol=1e-5, atol=1e-9)
    assert fb2[:, :round(300 / 31.25)].max() == 0 and fb2[:, round(6000 / 31.25) + 1:].max() == 0
    with pytest.raises(ConfigError) as info:
        mel_filterbank(129, 128, 8000)
    assert "n_mels" in one_line(info) and "128" in str(info.value)


def test_log_mel_spectrogram_module():
    m = LogMelSpectrogram(8000, 256, 80, 40, eps=1e-6)
    x = torch.randn(2, 8000, generator=gen())
    out = m(x)
    assert out.shape == (2, 1, 40, 101) == (2, *m.output_shape(8000))
    fb = mel_filterbank(129, 40, 8000)
    torch.testing.assert_close(out[:, 0], torch.log(fb @ spectrogram(x, 256, 80) + 1e-6))
    assert set(m.state_dict()) == {"window", "filterbank"}
    assert m.to(torch.float64).filterbank.dtype == torch.float64 and m.to("meta").window.is_meta
    lin = LogMelSpectrogram(8000, 128, 64, n_mels=None)
    assert lin(x).shape == (2, 1, 65, 126) and "filterbank" not in lin.state_dict()


# ----------------------------------------------------------------------------- augmentation

def snr_db(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (10 * torch.log10(x.double().pow(2).mean(1) / (y - x).double().pow(2).mean(1))).numpy()


def test_add_noise_hits_the_snr_exactly():
    x = torch.randn(16, 4000, generator=gen(1)) * torch.linspace(0.01, 2.0, 16)[:, None]
    np.testing.assert_allclose(snr_db(x, add_noise(x, 10.0, gen())), 10.0, atol=0.01)
    y = add_noise(x, (5.0, 20.0), gen())
    s = snr_db(x, y)
    assert s.min() >= 5.0 - 0.01 and s.max() <= 20.0 + 0.01 and s.std() > 2.0   # drawn per example
    torch.testing.assert_close(y, add_noise(x, [5.0, 20.0], gen()))               # seeded
    for clip in (torch.randn(1000, generator=gen(2)), torch.randn(3, 9000, generator=gen(3))):
        np.testing.assert_allclose(snr_db(x, add_noise(x, 3.0, gen(), noise=clip)), 3.0, atol=0.01)
    short = torch.arange(1.0, 11.0)                                               # tiled when shorter
    d = (add_noise(x, 0.0, gen(), noise=short) - x) / short.std()
    assert torch.allclose(d[:, 10:] / d[:, :-10], torch.ones(1), atol=1e-3)      # period 10
    assert len(torch.unique((d[:, 0] / d.amax(1)).round(decimals=4))) > 3         # random offsets
    assert torch.equal(add_noise(x, 10.0, gen(), prob=0.0), x)
    kept = (add_noise(torch.ones(2000, 10), 10.0, gen(), prob=0.3) == 1).all(1).float().mean()
    assert abs(kept - 0.7) < 0.03
    assert torch.equal(add_noise(torch.zeros(2, 50), 10.0, gen()), torch.zeros(2, 50))  # silent stays silent


def test_time_shift_moves_each_example_by_a_bounded_integer():
    x = torch.arange(1.0, 101.0).repeat(500, 1)
    y = time_shift(x, 0.1, gen())
    first = (y != 0).float().argmax(1)                                            # first kept sample
    shifts = first - (y[torch.arange(500), first].long() - 1)                     # y[t] = x[t - s]
    for row, s in zip(y[:50].numpy(), shifts[:50].tolist()):
        ref = [t - s + 1.0 if 0 <= t - s < 100 else 0.0 for t in range(100)]      # naive loop
        np.testing.assert_array_equal(row, ref)
    assert shifts.min() == -10 and shifts.max() == 10 and len(shifts.unique()) == 21
    c = time_shift(x, 0.1, gen(), circular=True)
    assert torch.equal(c.sort(1).values, x) and not torch.equal(c, x)
    assert time_shift(x, 0.0, gen()) is x


def test_spec_augment_masks_bands_within_bounds():
    B, nF, nT, Fw, Tw = 3000, 40, 101, 8, 10
    S = torch.ones(B, nF, nT)
    out = spec_augment(S, freq_mask=Fw, generator=gen())
    rows = out[:, :, 0] == 0                                                       # masked rows
    assert torch.equal(out == 0, rows[:, :, None].expand(-1, -1, nT))           # whole rows
    widths = rows.sum(1)
    starts = torch.where(widths > 0, rows.float().argmax(1), -1)
    assert torch.equal(rows.long().diff(dim=1).clamp(min=0).sum(1), (widths > 0).long() - rows[:, 0].long())
    counts = torch.bincount(widths, minlength=Fw + 1).float() / B                 # U{0..F}
    assert widths.max() <= Fw and (counts - 1 / (Fw + 1)).abs().max() < 0.025
    full = starts[widths == Fw].float()                                            # start ~ U{0..nF-F}
    assert full.max() <= nF - Fw and full.min() == 0 and abs(full.mean() - (nF - Fw) / 2) < 1.5
    t = spec_augment(S, time_mask=Tw, n_time_masks=2, generator=gen())
    cols = t[:, 0, :] == 0
    assert torch.equal(t == 0, cols[:, None, :].expand(-1, nF, -1)) and cols.sum(1).max() <= 2 * Tw
    assert 9.0 < cols.sum(1).float().mean() < 10.0                               # 2 E[t] = 10, less overlaps
    torch.testing.assert_close(spec_augment(S, 8, 10, generator=gen(5)), spec_augment(S, 8, 10, generator=gen(5)))
    assert spec_augment(S, 0, 0, generator=gen()) is S
    z = torch.randn(6, 2, 40, 101, generator=gen())
    m = spec_augment(z, 40, 0, generator=gen(), fill="mean")                      # 4-D, mean fill
    changed = m != z
    assert torch.equal(changed[:, 0], changed[:, 1])
    assert torch.allclose(m[changed], z.mean((-2, -1), keepdim=True).expand_as(z)[changed])
    with pytest.raises(ConfigError, match="freq_mask.*41"):
        spec_augment(S, 41, 0, generator=gen())


# ----------------------------------------------------------------------------- pipeline

def test_pipeline_shapes_and_eval_is_the_features_module():
    x = torch.randn(3, 8000, generator=gen())
    for features, shape in (("logmel", (1, 40, 101)), ("spectrogram", (1, 129, 101)), ("waveform", (8000,))):
        p = AudioPipeline(features=features, lowpass=3000.0, highpass=100.0)
        assert p.output_shape(8000) == shape and p.eval(x).shape == (3, *shape)
        torch.testing.assert_close(p.eval(x), p.features_module()(x))
        torch.testing.assert_close(p.train(x, None), p.eval(x))                   # nothing random asked
    p = AudioPipeline(lowpass=3000.0)
    ref = LogMelSpectrogram(8000, 256, 80, 40)(lowpass(x, 8000, 3000.0))
    torch.testing.assert_close(p.eval(x), ref)
    assert AudioPipeline(**p.get_config()).get_config() == p.get_config()


def test_pipeline_train_augments_reproducibly():
    x = torch.randn(8, 8000, generator=gen())
    p = AudioPipeline(noise_snr=[10, 20], time_shift=0.1, freq_mask=8, time_mask=10)
    a, b = p.train(x, gen(3)), p.train(x, gen(3))
    assert torch.equal(a, b) and a.shape == p.eval(x).shape and not torch.allclose(a, p.eval(x))
    layer = Augment(p)
    assert {"features.spec.window", "features.spec.filterbank"} <= set(layer.state_dict())
    layer.generator = gen(3)
    torch.testing.assert_close(layer.train()(x), a)
    torch.testing.assert_close(layer.eval()(x), p.eval(x))


@pytest.mark.parametrize("kwargs,words", [
    (dict(features="mfcc"), ["audio.features", "'mfcc'"]),
    (dict(lowpass=1000.0, highpass=2000.0), ["audio.highpass", "2000"]),
    (dict(lowpass=4000.0), ["audio.lowpass", "4000"]),
    (dict(freq_mask=41), ["audio.freq_mask", "41"]),
    (dict(features="waveform", time_mask=5), ["audio.time_mask", "waveform"]),
    (dict(noise_snr=[20, 10]), ["audio.noise_snr", "[20, 10]"]),
    (dict(noise_prob=1.5), ["audio.noise_prob", "1.5"]),
])
def test_pipeline_refuses_bad_keys_in_one_line(kwargs, words):
    with pytest.raises(ConfigError) as info:
        AudioPipeline(**kwargs)
    assert all(w in one_line(info) for w in words), str(info.value)


def test_pipeline_output_shape_checks_time_mask():
    with pytest.raises(ConfigError, match="time_mask.*11 frames"):
        AudioPipeline(time_mask=20).output_shape(800)
