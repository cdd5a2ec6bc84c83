"""Audio clips as arrays: WAV reading, band-limited resampling and ``audio:DIR`` data sets.

Reading (``read_wav``): ``scipy.io.wavfile.read``, scaled to float32 in [-1, 1] by the sample
format, then averaged over channels to mono::

    8-bit unsigned PCM     x = (v - 128) / 128
    16/32-bit signed PCM   x = v / 2^(bits - 1)      (24-bit files arrive as left-justified int32)
    float PCM              x = v                      (kept as is, even beyond [-1, 1])

Resampling (``resample``): windowed-sinc polyphase interpolation (Smith, "Digital Audio
Resampling Home Page", CCRMA 2002; the kernel of torchaudio's ``sinc_interp_hann``). With the
rates reduced by their gcd to ``o`` (in) and ``n`` (out), output sample ``f n + j`` lies at time
``f + j / n`` and input sample ``k`` at ``k / o`` (in units of o input samples); it is::

    y[f n + j] = sum_k x[k] h(k / o - f - j / n),   h(t) = (c / o) sinc(c t) w(t)
    c = rolloff * min(o, n)                         (cut-off: rolloff times the lower Nyquist)
    w(t) = cos^2(pi c t / (2 zeros)),  |c t| <= zeros (a Hann window over ``zeros`` zero
    crossings each side; 0 beyond)

The n phases j are n kernels of one ``conv1d`` with stride o, so a whole batch is one call.
The filter is zero-phase (centred), the signal is taken as zero outside [0, T), and the output
has ``ceil(T n / o)`` samples.

Data set (``load_audio_dir``): every ``.wav`` under DIR, labelled by sub-folder (``DIR/<class>/
*.wav``) or by the file name's first ``_`` field (the Free Spoken Digit Dataset's
``{digit}_{speaker}_{index}.wav``). Each clip is resampled to ``sample_rate`` and brought to
``T = round(seconds * sample_rate)`` samples: shorter clips are padded with zeros at the end,
longer ones keep their first T samples (in the FSDD, the 20 clips longer than 1 s all have their
loudest 50 ms within the first 0.75 s, so a centred trim would cut speech). ``test_indices``
sends the files whose last ``_`` field is one of them to ``X_test``/``y_test`` (FSDD: indices
0-4 of every speaker and digit, the data set's usual 300-clip test set).
"""

from __future__ import annotations

import math
import re
import struct
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from regulab.checks import number
from regulab.data.dataset import Dataset
from regulab.errors import DataError
from regulab.paths import DATA_BYTES, regular_file, shown
from regulab.modalities.audio.section import AudioConfig

__all__ = ["read", "read_wav", "resample", "check_resampling", "natural_key", "load_audio_dir"]

RESAMPLE_ZEROS = 6      # zero crossings of the sinc on each side
RESAMPLE_ROLLOFF = 0.99  # cut-off as a fraction of the lower Nyquist frequency
MAX_RESAMPLE_TAPS = 1 << 23  # n phases x K taps of a resampling filter: 64 MiB per float64 array


def read_wav(path) -> tuple[np.ndarray, int]:
    """A WAV file as ``(x, sample_rate)``: x float32 ``(T,)`` mono in [-1, 1] (module docstring
    for the scaling of each sample format; channels are averaged).

    Example: ``x, sr = read_wav("7_jackson_32.wav")`` -> ``x.shape == (T,)``, ``sr == 8000``.
    """
    from scipy.io import wavfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio file '{path}': does not exist or is not a file")
    regular_file(path, "audio file", max_bytes=DATA_BYTES)    # readable, not a device, bounded
    try:
        with warnings.catch_warnings():   # unknown chunks (LIST, cue...) are skipped: not our concern
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            sr, v = wavfile.read(path)
    except (ValueError, EOFError, OSError, IndexError, KeyError, struct.error) as e:
        # struct.error: a header cut short
        raise DataError(f"audio file '{path}': cannot be read as WAV ({e})") from None
    except ZeroDivisionError:   # scipy divides by the header's channels and bytes per sample
        raise DataError(f"audio file '{path}': cannot be read as WAV (its header gives 0 channels or "
                        "0 bits per sample; allowed: >= 1 of each)") from None
    if sr < 1:
        raise DataError(f"audio file '{path}': has sample rate {sr}; allowed: >= 1 Hz")
    v = np.asarray(v)
    if v.dtype == np.uint8:
        x = (v.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(v.dtype, np.signedinteger):
        x = v.astype(np.float64) / float(2 ** (8 * v.dtype.itemsize - 1))
    elif np.issubdtype(v.dtype, np.floating):
        x = v.astype(np.float64)
    else:
        raise DataError(f"audio file '{path}': has samples of type {v.dtype}; allowed: 8-bit unsigned, "
                        "16/24/32-bit signed or float PCM")
    if x.ndim == 2:
        x = x.mean(axis=1)                       # (T, C) -> (T,)
    if x.ndim != 1 or x.size == 0:
        raise DataError(f"audio file '{path}': has no samples (shape {v.shape})")
    if not np.isfinite(x).all():
        raise DataError(f"audio file '{path}': has NaN or infinite samples")
    return x.astype(np.float32), int(sr)


def _rate(key: str, v) -> int:
    return number(ge=1, integer=True)(key, v.item() if isinstance(v, np.integer) else v)


def _reach(o: int, n: int) -> int:
    """How many input samples the kernel reaches on each side: ``ceil(zeros o / c)``."""
    return math.ceil(RESAMPLE_ZEROS * o / (RESAMPLE_ROLLOFF * min(o, n)))


def check_resampling(orig_sr: int, new_sr: int, what: str) -> None:
    """Refuse rates whose polyphase filter, ``n`` phases of ``2 width + o`` taps (``o/n`` the
    rates' ratio in lowest terms), exceeds ``MAX_RESAMPLE_TAPS``: nearly coprime rates (7919 and
    8000 Hz need 63 million) would take gigabytes and minutes."""
    g = math.gcd(orig_sr, new_sr)
    o, n = orig_sr // g, new_sr // g
    taps = n * (2 * _reach(o, n) + o)
    if taps > MAX_RESAMPLE_TAPS:
        raise DataError(f"{what}: resampling {orig_sr} Hz to {new_sr} Hz needs a filter of {taps} taps; "
                        f"allowed: at most {MAX_RESAMPLE_TAPS} (MAX_RESAMPLE_TAPS; rates with a large "
                        "common divisor, as 8000, 16000, 22050, 44100, 48000 Hz)")


def _sinc_kernels(o: int, n: int, dtype: torch.dtype, device) -> tuple[Tensor, int]:
    """The n polyphase kernels ``(n, 1, 2 width + o)`` of ``h`` and ``width`` (input samples)."""
    c, width = RESAMPLE_ROLLOFF * min(o, n), _reach(o, n)
    k = torch.arange(-width, width + o, dtype=torch.float64) / o            # (K,) input times
    t = (k[None, :] - torch.arange(n, dtype=torch.float64)[:, None] / n) * c  # (n, K), in zeros
    t = t.clamp(-RESAMPLE_ZEROS, RESAMPLE_ZEROS)
    window = torch.cos(t * (math.pi / (2 * RESAMPLE_ZEROS))) ** 2
    h = torch.special.sinc(t) * window * (c / o)
    return h.to(dtype=dtype, device=device)[:, None, :], width


def resample(x: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Resample ``x`` (..., T) from ``orig_sr`` to ``new_sr`` Hz: (..., ceil(T new / orig)).

    Windowed-sinc polyphase (module docstring): band-limited to 0.99 of the lower Nyquist
    frequency, zero-phase, one ``conv1d`` for the whole batch on ``x``'s device. Equal rates
    return ``x`` itself. Example: ``resample(x, 16000, 8000)`` halves the length.
    """
    orig_sr, new_sr = _rate("resample.orig_sr", orig_sr), _rate("resample.new_sr", new_sr)
    if not isinstance(x, Tensor) or x.dim() < 1 or not x.is_floating_point():
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"resample takes a floating-point tensor (..., T); got {got}")
    if orig_sr == new_sr:
        return x
    check_resampling(orig_sr, new_sr, "resample")
    g = math.gcd(orig_sr, new_sr)
    o, n = orig_sr // g, new_sr // g
    kernels, width = _sinc_kernels(o, n, x.dtype, x.device)                 # (n, 1, K)
    T = x.shape[-1]
    y = F.pad(x.reshape(-1, 1, T), (width, width + o))                      # (B, 1, T + 2w + o)
    y = F.conv1d(y, kernels, stride=o)                                      # (B, n, T // o + 1)
    length = -(-T * n // o)
    y = y.transpose(1, 2).reshape(y.shape[0], -1)[:, :length]               # phases interleaved
    return y.reshape(*x.shape[:-1], length)


def natural_key(s: str) -> list:
    """Sort key that orders the digit runs of ``s`` numerically: "2" < "10", "a9" < "a10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _fit(clips: list[np.ndarray], rates: list[int], sample_rate: int, T: int) -> np.ndarray:
    """Resample each clip to ``sample_rate`` (batched per original rate) and pad/trim it to T."""
    X = np.zeros((len(clips), T), dtype=np.float32)                         # zero padding at the end
    groups = defaultdict(list)
    for i, sr in enumerate(rates):
        groups[sr].append(i)
    for sr, idx in groups.items():
        o, n = sr // math.gcd(sr, sample_rate), sample_rate // math.gcd(sr, sample_rate)
        need = math.ceil(T * o / n) + _reach(o, n) + o      # raw samples that the first T outputs see
        L = min(need, max(len(clips[i]) for i in idx))
        raw = np.zeros((len(idx), L), dtype=np.float32)
        for row, i in enumerate(idx):
            c = clips[i][:L]
            raw[row, :len(c)] = c
        out = resample(torch.from_numpy(raw), sr, sample_rate).numpy()[:, :T]  # (n, <= T)
        X[idx, :out.shape[1]] = out
    return X


def load_audio_dir(path, *, sample_rate: int = 8000, seconds: float = 1.0, label: str = "auto",
                   test_indices: Sequence[int] | None = None, progress: bool | None = None) -> Dataset:
    """Read ``audio:DIR``: every ``.wav`` under DIR -> a classification ``Dataset``.

    X float32 ``(N, T)`` with ``T = round(seconds * sample_rate)``: clips resampled to
    ``sample_rate``, zero-padded at the end or trimmed to their first T samples. label: "folder"
    (the first sub-folder under DIR), "filename" (the file name's first ``_`` field, as FSDD's
    ``7_jackson_32.wav`` -> "7") or "auto" (folder when some ``.wav`` lies in a sub-folder, else
    filename). Classes (at least 2) are sorted naturally ("2" before "10"); y int64.
    test_indices: files whose last ``_`` field is one of these integers form X_test/y_test
    (FSDD: ``[0, 1, 2, 3, 4]``); None: no test set of its own. progress: a tqdm bar over the
    files (None: only on a terminal).
    Example: ``load_audio_dir("fsdd/recordings", test_indices=range(5))`` -> X (2700, 8000).
    """
    from tqdm.auto import tqdm

    if isinstance(sample_rate, np.integer):
        sample_rate = sample_rate.item()
    if isinstance(test_indices, range):
        test_indices = list(test_indices)
    # the [audio] keys' own checks (and their relation: at least one sample per clip)
    section = AudioConfig(sample_rate=sample_rate, seconds=seconds, label=label, test_indices=test_indices)
    sample_rate, seconds, label, test_indices = (section.sample_rate, section.seconds, section.label,
                                                 section.test_indices)
    T = round(seconds * sample_rate)
    root = Path(path).expanduser()
    where = f"audio dir '{path}'"
    if not root.is_dir():
        raise DataError(f"{where}: does not exist or is not a directory; audio:DIR needs a folder of "
                        ".wav files")
    try:
        files = sorted((f for f in root.rglob("*") if f.is_file() and f.suffix.lower() == ".wav"
                        and not any(p.startswith(".") for p in f.relative_to(root).parts)),
                       key=lambda f: natural_key(f.relative_to(root).as_posix()))
    except OSError as e:      # a sub-folder that cannot be read
        raise DataError(f"{where}: {shown(e.filename or root)} cannot be read ({e.strerror or e})") from None
    if not files:
        raise DataError(f"{where}: has no .wav files (searched all sub-folders)")
    if label == "auto":
        label = "folder" if any(len(f.relative_to(root).parts) > 1 for f in files) else "filename"
    names = []
    for f in files:
        rel = f.relative_to(root)
        if label == "folder" and len(rel.parts) == 1:
            raise DataError(f"{where}: file '{rel}' is not in a class sub-folder; with label = folder "
                            "every .wav must lie in DIR/<class>/")
        if label == "filename" and "_" not in f.stem:
            raise DataError(f"{where}: file name '{rel}' has no '_'-separated label field; with label = "
                            "filename names must read <label>_..._<index>.wav")
        names.append(rel.parts[0] if label == "folder" else f.stem.split("_")[0])
    classes = sorted(set(names), key=natural_key)
    if len(classes) < 2:
        raise DataError(f"{where}: has {len(classes)} class {classes} (labels by {label}); needs at least 2")
    is_test = np.zeros(len(files), dtype=bool)
    if test_indices is not None:
        for i, f in enumerate(files):
            last = f.stem.split("_")[-1]
            if "_" not in f.stem or not last.isdigit():
                raise DataError(f"{where}: file name '{f.relative_to(root)}' does not end in an integer "
                                f"index field ('_<index>.wav'), which audio.test_indices needs")
            is_test[i] = int(last) in test_indices
        if is_test.all() or not is_test.any():
            raise DataError(f"{where}: audio.test_indices {test_indices} select {int(is_test.sum())} "
                            f"of {len(files)} files; allowed: indices that leave both a test and a training set")
    clips, rates = [], []
    for f in tqdm(files, desc="audio clips", unit="clip", leave=False,
                  disable=None if progress is None else not progress):
        x, sr = read_wav(f)
        check_resampling(sr, sample_rate, f"audio file '{f}'")
        clips.append(x)
        rates.append(sr)
    X = _fit(clips, rates, sample_rate, T)                                   # (N, T)
    lookup = {c: k for k, c in enumerate(classes)}
    y = np.asarray([lookup[n] for n in names], dtype=np.int64)
    train, test = ~is_test, is_test
    described = (f"{where}: {len(files)} clips in {len(classes)} classes (labels by {label}), "
                 f"resampled to {sample_rate} Hz, {T} samples each (zero-padded at the end / first "
                 f"{T} kept)" + (f"; {int(test.sum())} test clips with index in {test_indices}"
                                if test_indices is not None else ""))
    if test_indices is None:
        return Dataset(f"audio:{path}", X, y, "classification", classes, description=described,
                       modality="audio")
    return Dataset(f"audio:{path}", X[train], y[train], "classification", classes,
                   X_test=X[test], y_test=y[test], description=described, modality="audio")


def read(spec: str, path: str, section, *, task: str) -> Dataset:
    """``audio:DIR`` for ``load_dataset``, read as the ``[audio]`` section says."""
    return load_audio_dir(path, sample_rate=section.sample_rate, seconds=section.seconds,
                          label=section.label, test_indices=section.test_indices)
