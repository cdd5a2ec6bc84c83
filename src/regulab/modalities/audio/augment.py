"""Audio features and augmentation on batches of waveforms (B, T) and spectrograms (B, F, frames).

Filters (``lowpass``, ``highpass``, ``bandpass``): zero-phase windowed-sinc FIR filters applied
with ``conv1d`` (linear convolution, the signal taken as zero outside [0, T)). With N odd taps,
``n = -(N-1)/2 .. (N-1)/2`` and a symmetric Hann window ``w[n] = 0.5 + 0.5 cos(2 pi n / (N-1))``::

    lowpass(fc)  h[n] = w[n] sinc(2 fc n / sr) / sum_n w[n] sinc(2 fc n / sr)   (gain 1 at DC)
    highpass(fc) h = delta - lowpass(fc)          so lowpass(x) + highpass(x) = x exactly
    bandpass     h = lowpass(high) - lowpass(low)

(the lowpass is ``scipy.signal.firwin(N, fc, window="hann", fs=sr)``). The kernel is centred, so
the phase is zero. ``N - 1 = 3.1 sr / width`` (rounded up to even) puts the gain above 0.99 below
``fc - width / 2`` and below 0.01 above ``fc + width / 2`` (the Hann sidelobes stay under -44 dB);
the default width is sr / 40 (200 Hz at 8 kHz, 125 taps).

Spectrogram: ``S[f, m] = |sum_n w[n] x[m hop + n - n_fft / 2] e^{-2 pi i f n / n_fft}|^power``
with a periodic Hann window of ``win_length`` (centred in n_fft) and zero padding of n_fft / 2 at
both ends (``torch.stft``, center=True), ``1 + T // hop`` frames, ``n_fft // 2 + 1`` bins.

Mel filterbank (HTK, Young et al., "The HTK Book"): ``mel(f) = 2595 log10(1 + f / 700)``;
``n_mels + 2`` points equally spaced in mel between f_min and f_max give edges ``f_0 < ... <
f_{M+1}`` in Hz, and filter m is the triangle ``max(0, min((f - f_m) / (f_{m+1} - f_m),
(f_{m+2} - f) / (f_{m+2} - f_{m+1})))`` at the bin frequencies ``f = k sr / n_fft``; norm="slaney"
scales it by ``2 / (f_{m+2} - f_m)`` (equal area). Log-mel: ``log(F S + eps)``.

Additive noise at a signal-to-noise ratio: ``y = x + a n`` with ``a`` per sample such that
``10 log10(mean(x^2) / mean((a n)^2)) = snr_db`` exactly (white Gaussian n, or a given noise
clip at a random offset, tiled when shorter). SpecAugment (Park et al. 2019, "SpecAugment: A
Simple Data Augmentation Method for Automatic Speech Recognition"): each frequency mask has width
``f ~ U{0..F}`` and start ``f0 ~ U{0..nu - f}`` over the nu bins, each time mask ``t ~ U{0..T}``,
``t0 ~ U{0..tau - t}`` (the paper's time-warp and its bound p on t are not implemented); masked
cells take ``fill``, 0 or the example's mean (the paper's log-mels are mean-normalized, so there
the two agree).

Every random draw comes from the ``torch.Generator`` passed in (on its device; the draws then
move to the data's device); the ops are batched, with no loop over examples.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regulab.checks import choice, number, optional
from regulab.errors import ConfigError, DataError, invalid
from regulab.checks import snr as _snr
from regulab.modalities.image.augment import check_generator

__all__ = ["fir_kernel", "fir_filter", "lowpass", "highpass", "bandpass", "spectrogram",
           "mel_filterbank", "LogMelSpectrogram", "add_noise", "time_shift", "spec_augment",
           "AudioFeatures", "AudioPipeline"]

HANN_TRANSITION = 3.1   # (N - 1) * width / sr of a Hann-windowed sinc, gain 0.99 -> 0.01


def _tensor(owner: str, x: Any, dims: Sequence[int] | None = None, shape: str = "(B, T)") -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or (dims and x.dim() not in dims):
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{owner} takes a floating-point tensor {shape}; got {got}")
    return x


def _uniform(g: torch.Generator, shape: Sequence[int], device) -> Tensor:
    """U[0, 1) float64 draws made on the generator's device, moved to ``device``."""
    return torch.rand(tuple(shape), generator=g, device=g.device, dtype=torch.float64).to(device)


# ----------------------------------------------------------------------------- filters

def fir_kernel(sample_rate: float, low: float | None = None, high: float | None = None,
               width: float | None = None) -> Tensor:
    """The float64 taps (N,) of a zero-phase FIR filter passing ``low..high`` Hz (module doc).

    low None: lowpass at ``high``; high None: highpass at ``low``; both: bandpass. width:
    transition band in Hz (default sample_rate / 40); it sets N = 3.1 sr / width + 1 (odd).
    """
    sr = number(gt=0.0)("fir_kernel.sample_rate", sample_rate)
    width = sr / 40.0 if width is None else number(gt=0.0)("fir_kernel.width", width)
    nyq = f"a frequency in (0, {sr / 2:g}) Hz (below sample_rate / 2)"
    for name, v in (("low", low), ("high", high)):
        if v is not None:
            number(gt=0.0, lt=sr / 2)(f"fir_kernel.{name}", v)
    if low is None and high is None:
        raise invalid("fir_kernel.high", nyq + " (low or high, or both)", None)
    if low is not None and high is not None and not low < high:
        raise invalid("fir_kernel.low", f"below high ({high} Hz)", low)
    half = math.ceil(HANN_TRANSITION * sr / width / 2)
    n = torch.arange(-half, half + 1, dtype=torch.float64)                       # (N,)
    w = 0.5 + 0.5 * torch.cos(math.pi * n / half)                                # symmetric Hann

    def lp(fc: float) -> Tensor:
        h = w * torch.special.sinc(2.0 * fc / sr * n)
        return h / h.sum()
    delta = (n == 0).to(torch.float64)
    if low is None:
        return lp(high)
    return (delta if high is None else lp(high)) - lp(low)


def fir_filter(x: Tensor, kernel: Tensor) -> Tensor:
    """``x`` (..., T) convolved with the centred odd-length ``kernel`` (N,): same length, zero phase."""
    x = _tensor("fir_filter", x, shape="(..., T)")
    T = x.shape[-1]
    k = kernel.to(device=x.device, dtype=x.dtype).flip(0).view(1, 1, -1)         # conv1d correlates
    y = F.conv1d(x.reshape(-1, 1, T), k, padding=k.shape[-1] // 2)              # (B, 1, T)
    return y.view(x.shape)


def lowpass(x: Tensor, sr: float, cutoff: float, width: float | None = None) -> Tensor:
    """Zero-phase low-pass of ``x`` (..., T) at ``cutoff`` Hz (-6 dB there; see module doc)."""
    return fir_filter(x, fir_kernel(sr, high=cutoff, width=width))


def highpass(x: Tensor, sr: float, cutoff: float, width: float | None = None) -> Tensor:
    """Zero-phase high-pass of ``x`` (..., T) at ``cutoff`` Hz: ``x - lowpass(x, sr, cutoff)``."""
    return fir_filter(x, fir_kernel(sr, low=cutoff, width=width))


def bandpass(x: Tensor, sr: float, low: float, high: float, width: float | None = None) -> Tensor:
    """Zero-phase band-pass of ``x`` (..., T) keeping ``low..high`` Hz."""
    return fir_filter(x, fir_kernel(sr, low=low, high=high, width=width))


# ----------------------------------------------------------------------------- features

def spectrogram(x: Tensor, n_fft: int = 256, hop_length: int = 80, win_length: int | None = None,
                power: float = 2.0, window: Tensor | None = None) -> Tensor:
    """``|STFT(x)|^power`` of ``x`` (..., T): (..., n_fft // 2 + 1, 1 + T // hop_length).

    Periodic Hann window of ``win_length`` (default n_fft; or ``window`` as given), centred
    frames with zero padding (module doc). power: 2 for power, 1 for magnitude.
    """
    x = _tensor("spectrogram", x, shape="(..., T)")
    n_fft = number(ge=2, integer=True)("spectrogram.n_fft", n_fft)
    hop_length = number(ge=1, integer=True)("spectrogram.hop_length", hop_length)
    win_length = n_fft if win_length is None else number(ge=1, le=n_fft, integer=True)(
        "spectrogram.win_length", win_length)
    power = number(gt=0.0)("spectrogram.power", power)
    if window is None:
        window = torch.hann_window(win_length, periodic=True, dtype=x.dtype, device=x.device)
    z = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length, win_length, window.to(x.device, x.dtype),
                   center=True, pad_mode="constant", return_complex=True)       # (B, F, frames)
    S = z.abs() if power == 1.0 else z.abs().pow(power)
    return S.view(*x.shape[:-1], *S.shape[-2:])


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: float, f_min: float = 0.0,
                   f_max: float | None = None, norm: str | None = None) -> Tensor:
    """Triangular HTK-mel filters as a float32 matrix (n_mels, n_freqs): ``mel = fb @ S``.

    n_freqs: bins of the spectrogram (n_fft // 2 + 1, spanning 0..sample_rate / 2). f_max:
    default sample_rate / 2. norm: None (peak 1) or "slaney" (area-normalized). A band that
    catches no FFT bin is an error (fewer mels or a larger n_fft fixes it).
    """
    n_freqs = number(ge=2, integer=True)("mel_filterbank.n_freqs", n_freqs)
    n_mels = number(ge=1, integer=True)("mel_filterbank.n_mels", n_mels)
    sr = number(gt=0.0)("mel_filterbank.sample_rate", sample_rate)
    f_max = sr / 2 if f_max is None else number(gt=0.0, le=sr / 2)("mel_filterbank.f_max", f_max)
    f_min = number(ge=0.0, lt=f_max)("mel_filterbank.f_min", f_min)
    optional(choice("slaney"))("mel_filterbank.norm", norm)
    freqs = torch.linspace(0.0, sr / 2, n_freqs, dtype=torch.float64)              # (n_freqs,)
    mels = torch.linspace(2595.0 * math.log10(1.0 + f_min / 700.0), 2595.0 * math.log10(1.0 + f_max / 700.0),
                          n_mels + 2, dtype=torch.float64)                         # HTK mel
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)                               # (n_mels + 2,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = torch.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)).clamp(min=0.0)
    empty = (fb.amax(dim=1) == 0).nonzero().flatten()
    if len(empty):
        m = int(empty[0])
        raise ConfigError(f"config key 'n_mels' = {n_mels} leaves mel band {m} ({float(lo[m]):.1f}-"
                          f"{float(hi[m]):.1f} Hz) without an FFT bin (bins every {sr / 2 / (n_freqs - 1):.2f} "
                          "Hz); allowed: fewer mels, a larger n_fft or a wider f_min..f_max")
    if norm == "slaney":
        fb = fb * (2.0 / (hi - lo))
    return fb.float()


class LogMelSpectrogram(nn.Module):
    """Waveforms (B, T) -> ``log(mel_filterbank @ |STFT|^2 + eps)`` as (B, 1, n_mels, frames).

    The channel dim is for CNNs; frames = 1 + T // hop_length. n_mels None: no filterbank, the
    log-power spectrogram (B, 1, n_fft // 2 + 1, frames). The Hann window and filterbank are
    buffers: they follow ``.to(device)`` and are saved in the ``state_dict``.
    Example: ``LogMelSpectrogram(8000, 256, 80, 40)(torch.zeros(2, 8000)).shape == (2, 1, 40, 101)``.
    """

    def __init__(self, sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 80,
                 n_mels: int | None = 40, f_min: float = 0.0, f_max: float | None = None,
                 eps: float = 1e-6, win_length: int | None = None, norm: str | None = None):
        super().__init__()
        self.sample_rate, self.n_mels, self.f_min, self.f_max, self.norm = sample_rate, n_mels, f_min, f_max, norm
        self.n_fft = number(ge=2, integer=True)("LogMelSpectrogram.n_fft", n_fft)
        self.hop_length = number(ge=1, integer=True)("LogMelSpectrogram.hop_length", hop_length)
        self.win_length = n_fft if win_length is None else number(ge=1, le=n_fft, integer=True)(
            "LogMelSpectrogram.win_length", win_length)
        self.eps = number(gt=0.0)("LogMelSpectrogram.eps", eps)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True))
        fb = None if n_mels is None else mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max, norm)
        self.register_buffer("filterbank", fb)                                   # (n_mels, F)

    def output_shape(self, T: int) -> tuple[int, int, int]:
        """(1, n_mels or n_fft // 2 + 1, 1 + T // hop_length)."""
        return 1, self.n_mels or self.n_fft // 2 + 1, 1 + int(T) // self.hop_length

    def forward(self, x: Tensor) -> Tensor:
        S = spectrogram(_tensor("LogMelSpectrogram", x, (2,)), self.n_fft, self.hop_length,
                        self.win_length, 2.0, self.window)                        # (B, F, frames)
        if self.filterbank is not None:
            S = torch.matmul(self.filterbank.to(S.dtype), S)                      # (B, n_mels, frames)
        return torch.log(S + self.eps).unsqueeze(1)                               # (B, 1, ., frames)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}, eps={self.eps}")


# ----------------------------------------------------------------------------- augmentation

def add_noise(x: Tensor, snr_db: float | Sequence[float], generator: torch.Generator,
              noise: Tensor | None = None, prob: float = 1.0) -> Tensor:
    """``x`` (B, T) plus noise at ``snr_db`` dB: ``10 log10(mean(x^2) / mean(added^2)) = snr_db``.

    snr_db: a number, or (low, high) drawn uniformly per example. noise: None (white Gaussian),
    a clip (L,) or a bank (K, L) (one clip per example at random) read from a random offset,
    tiled when L < T. prob: probability that an example gets noise (the others are unchanged).
    A silent example stays silent. Example: ``add_noise(x, (10, 20), g)``.
    """
    x = _tensor("add_noise", x, (2,))
    g = check_generator("add_noise", generator)
    snr_db = _snr("add_noise.snr_db", snr_db)                                    # dB or [low, high]
    lo, hi = snr_db if isinstance(snr_db, list) else (snr_db, snr_db)
    prob = number(ge=0.0, le=1.0)("add_noise.prob", prob)
    B, T = x.shape
    u = _uniform(g, (B, 2), x.device)
    snr = lo + (hi - lo) * u[:, 0]                                               # (B,) dB
    if noise is None:
        n = torch.randn((B, T), generator=g, device=g.device, dtype=x.dtype).to(x.device)
    else:
        bank = _tensor("add_noise noise", noise, (1, 2), "(L,) or (K, L)").to(x.device, x.dtype)
        bank = bank.view(-1, bank.shape[-1])                                      # (K, L)
        K, L = bank.shape
        v = _uniform(g, (B, 2), x.device)
        row = (v[:, 0] * K).long().clamp(max=K - 1)                              # U{0..K-1}
        span = L - T + 1 if L >= T else L                                         # offsets U{0..span-1}
        offset = (v[:, 1] * span).long().clamp(max=span - 1)
        idx = (offset[:, None] + torch.arange(T, device=x.device)) % L            # (B, T), tiles when L < T
        n = bank[row[:, None], idx]
    p_signal = x.double().pow(2).mean(dim=1)
    p_noise = n.double().pow(2).mean(dim=1)
    scale = torch.where(p_noise > 0, torch.sqrt(p_signal / (p_noise.clamp(min=1e-300) * 10.0 ** (snr / 10.0))),
                        torch.zeros_like(p_noise))
    scale = torch.where(u[:, 1] < prob, scale, torch.zeros_like(scale))          # (B,)
    return x + scale.to(x.dtype)[:, None] * n


def time_shift(x: Tensor, max_shift: float, generator: torch.Generator, fill: float = 0.0,
               circular: bool = False) -> Tensor:
    """Shift each example of ``x`` (B, T) by s ~ U{-S..S} samples, S = floor(max_shift T).

    ``y[t] = x[t - s]`` (s > 0 delays); samples shifted in are ``fill`` (default), or wrap
    around with ``circular``. One ``gather`` for the batch. max_shift: a fraction in [0, 1).
    """
    x = _tensor("time_shift", x, (2,))
    max_shift = number(ge=0.0, lt=1.0)("time_shift.max_shift", max_shift)
    g = check_generator("time_shift", generator)
    B, T = x.shape
    S = math.floor(max_shift * T)
    if S == 0:
        return x
    s = (_uniform(g, (B,), x.device) * (2 * S + 1)).long().clamp(max=2 * S) - S  # U{-S..S}
    src = torch.arange(T, device=x.device)[None, :] - s[:, None]                 # (B, T)
    if circular:
        return x.gather(1, src % T)
    y = x.gather(1, src.clamp(0, T - 1))
    return torch.where((src >= 0) & (src < T), y, torch.full_like(y, fill))


def _bands(g: torch.Generator, B: int, n_masks: int, max_width: int, size: int, device) -> Tensor:
    """(B, size) bool: the union of n_masks bands, width ~ U{0..max_width}, start ~ U{0..size-width}."""
    u = _uniform(g, (B, n_masks, 2), device)
    w = (u[..., 0] * (max_width + 1)).long().clamp(max=max_width)                 # (B, n)
    start = torch.minimum((u[..., 1] * (size - w + 1)).long(), size - w)
    i = torch.arange(size, device=device)
    return ((i >= start[..., None]) & (i < (start + w)[..., None])).any(dim=1)


def spec_augment(S: Tensor, freq_mask: int = 0, time_mask: int = 0, n_freq_masks: int = 1,
                 n_time_masks: int = 1, *, generator: torch.Generator, fill: float | str = 0.0) -> Tensor:
    """SpecAugment masks (Park et al. 2019) on ``S`` (B, F, frames) or (B, C, F, frames).

    freq_mask, time_mask: the largest width F, T of a mask (0: none); n_freq_masks,
    n_time_masks: masks per example (they may overlap). fill: a number or "mean" (each
    example's mean). All channels of an example share its masks. Zero widths return ``S``.
    """
    S = _tensor("spec_augment", S, (3, 4), "(B, F, frames) or (B, C, F, frames)")
    nF, nT = S.shape[-2:]
    fm = number(ge=0, le=nF, integer=True)("spec_augment.freq_mask", freq_mask)
    tm = number(ge=0, le=nT, integer=True)("spec_augment.time_mask", time_mask)
    nf = number(ge=0, integer=True)("spec_augment.n_freq_masks", n_freq_masks)
    nt = number(ge=0, integer=True)("spec_augment.n_time_masks", n_time_masks)
    if not isinstance(fill, str):
        fill = number()("spec_augment.fill", fill)
    elif fill != "mean":
        raise invalid("spec_augment.fill", "a number or 'mean'", fill)
    if fm * nf == 0 and tm * nt == 0:
        return S
    g, B = check_generator("spec_augment", generator), S.shape[0]
    mask = torch.zeros((B, nF, nT), dtype=torch.bool, device=S.device)
    if fm * nf:
        mask |= _bands(g, B, nf, fm, nF, S.device)[:, :, None]
    if tm * nt:
        mask |= _bands(g, B, nt, tm, nT, S.device)[:, None, :]
    if S.dim() == 4:
        mask = mask[:, None]
    value = S.mean(dim=(-2, -1), keepdim=True) if fill == "mean" else torch.full_like(S[..., :1, :1], fill)
    return torch.where(mask, value, S)


# ----------------------------------------------------------------------------- pipeline

class AudioFeatures(nn.Module):
    """The deterministic part of ``AudioPipeline``: FIR filter (``fir`` buffer) then features.

    ``filter(x)`` and ``features(x)`` are the two halves (augmentation goes between them);
    ``forward = features(filter(x))``: waveforms (B, T) -> the model input.
    """

    def __init__(self, sample_rate: int, features: str, n_fft: int, hop_length: int, n_mels: int,
                 f_min: float, f_max: float | None, lowpass: float | None, highpass: float | None):
        super().__init__()
        fir = None if lowpass is None and highpass is None else fir_kernel(sample_rate, highpass, lowpass)
        self.register_buffer("fir", None if fir is None else fir.float())
        self.spec = None if features == "waveform" else LogMelSpectrogram(
            sample_rate, n_fft, hop_length, n_mels if features == "logmel" else None, f_min, f_max)

    def filter(self, x: Tensor) -> Tensor:
        return x if self.fir is None else fir_filter(x, self.fir)

    def features(self, x: Tensor) -> Tensor:
        return x if self.spec is None else self.spec(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(self.filter(x))


class AudioPipeline:
    """``[audio]``: waveforms (B, T) -> model input, with augmentation in training.

    features: "logmel" (B, 1, n_mels, frames), "spectrogram" (log-power, B, 1, n_fft // 2 + 1,
    frames) or "waveform" (B, T). lowpass / highpass: cut-offs in Hz (both: a band-pass), every
    split. Training only: noise_snr (dB, or [low, high] drawn per example) with probability
    noise_prob (white, or drawn from ``noise`` clips), time_shift (max fraction of T, zero-filled), SpecAugment masks (filled with each
    example's mean, as the paper's normalized log-mels are filled with 0).
    ``train`` = filter -> noise -> time shift -> features -> SpecAugment; ``eval`` = filter ->
    features = ``features_module()``, the module to save with the model.
    Example: ``AudioPipeline(noise_snr=[10, 20], freq_mask=8, time_mask=10).train(x, g)``.
    """

    def __init__(self, sample_rate: int = 8000, features: str = "logmel", n_fft: int = 256,
                 hop_length: int = 80, n_mels: int = 40, f_min: float = 0.0, f_max: float | None = None,
                 lowpass: float | None = None, highpass: float | None = None,
                 noise_snr: float | Sequence[float] | None = None, noise_prob: float = 1.0,
                 noise: Tensor | None = None,
                 time_shift: float = 0.0, freq_mask: int = 0, time_mask: int = 0,
                 n_freq_masks: int = 1, n_time_masks: int = 1):
        k, integer = "audio", (lambda lo: number(ge=lo, integer=True))
        self.sample_rate = integer(1)(f"{k}.sample_rate", sample_rate)
        nyquist = number(gt=0.0, lt=self.sample_rate / 2)
        self.features = choice("logmel", "spectrogram", "waveform")(f"{k}.features", features)
        self.n_fft, self.hop_length = integer(8)(f"{k}.n_fft", n_fft), integer(1)(f"{k}.hop_length", hop_length)
        self.n_mels = integer(1)(f"{k}.n_mels", n_mels)
        self.f_max = optional(number(gt=0.0, le=self.sample_rate / 2))(f"{k}.f_max", f_max)
        self.f_min = number(ge=0.0, lt=self.f_max or self.sample_rate / 2)(f"{k}.f_min", f_min)
        self.lowpass = optional(nyquist)(f"{k}.lowpass", lowpass)
        self.highpass = optional(nyquist)(f"{k}.highpass", highpass)
        if self.lowpass is not None and self.highpass is not None and self.highpass >= self.lowpass:
            raise invalid(f"{k}.highpass", f"below audio.lowpass ({self.lowpass} Hz) for a band-pass",
                        highpass)
        self.noise_snr = optional(_snr)(f"{k}.noise_snr", noise_snr)           # dB, [low, high] or None
        self.noise_prob = number(ge=0.0, le=1.0)(f"{k}.noise_prob", noise_prob)
        self.noise = noise      # None: white noise; else a clip (L,) or a bank (K, L) to draw from
        self.time_shift = number(ge=0.0, lt=1.0)(f"{k}.time_shift", time_shift)
        bins = {"logmel": self.n_mels, "spectrogram": self.n_fft // 2 + 1}.get(self.features, 0)
        self.freq_mask = integer(0)(f"{k}.freq_mask", freq_mask)
        self.time_mask = integer(0)(f"{k}.time_mask", time_mask)
        for name, v in (("freq_mask", self.freq_mask), ("time_mask", self.time_mask)):
            if self.features == "waveform" and v:
                raise invalid(f"{k}.{name}", "0 with features = waveform (SpecAugment masks spectrograms)", v)
        if self.freq_mask > bins > 0:
            raise invalid(f"{k}.freq_mask", f"at most the {bins} frequency bands of the {self.features}",
                        self.freq_mask)
        self.n_freq_masks = integer(0)(f"{k}.n_freq_masks", n_freq_masks)
        self.n_time_masks = integer(0)(f"{k}.n_time_masks", n_time_masks)
        self._module = AudioFeatures(self.sample_rate, self.features, self.n_fft, self.hop_length, self.n_mels,
                                     self.f_min, self.f_max, self.lowpass, self.highpass)

    def features_module(self) -> AudioFeatures:
        """The deterministic waveform -> model input module (the one ``train``/``eval`` use)."""
        return self._module

    def output_shape(self, T: int) -> tuple[int, ...]:
        """Shape of one example after ``train``/``eval`` for clips of T samples; checks that
        ``time_mask`` fits the frames."""
        T = number(ge=1, integer=True)("AudioPipeline.output_shape T", int(T))
        if self._module.spec is None:
            return (T,)
        shape = self._module.spec.output_shape(T)
        if self.time_mask > shape[-1]:
            raise invalid("audio.time_mask", f"at most the {shape[-1]} frames of a {T}-sample clip",
                        self.time_mask)
        return shape

    def train(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """filter -> noise (per example with probability noise_prob) -> time shift -> features -> SpecAugment."""
        m = self._module
        x = m.filter(_tensor("AudioPipeline", x, (2,)))
        if self.noise_snr is not None and self.noise_prob > 0:
            x = add_noise(x, self.noise_snr, generator, noise=self.noise, prob=self.noise_prob)
        if self.time_shift > 0:
            x = time_shift(x, self.time_shift, generator)
        x = m.features(x)
        if self.freq_mask * self.n_freq_masks or self.time_mask * self.n_time_masks:
            x = spec_augment(x, self.freq_mask, self.time_mask, self.n_freq_masks, self.n_time_masks,
                             generator=generator, fill="mean")
        return x

    def eval(self, x: Tensor) -> Tensor:
        """filter -> features, no randomness."""
        return self._module(_tensor("AudioPipeline", x, (2,)))

    def get_config(self) -> dict[str, Any]:
        """Plain values; ``AudioPipeline(**cfg)`` rebuilds an equal pipeline."""
        return {key: getattr(self, key) for key in inspect.signature(AudioPipeline).parameters}

    def __repr__(self) -> str:
        return f"AudioPipeline({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"
