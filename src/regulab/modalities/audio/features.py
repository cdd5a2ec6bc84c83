"""Audio features on batches of waveforms (B, T): filters, spectrograms and log-mel features.

Filters (``lowpass``, ``highpass``, ``bandpass``): zero-phase windowed-sinc FIR filters applied
with ``conv1d`` (linear convolution, the signal taken as zero outside [0, T)). With N odd taps,
``n = -(N-1)/2 .. (N-1)/2`` and a symmetric Hann window ``w[n] = 0.5 + 0.5 cos(2 pi n / (N-1))``::

    lowpass(fc)  h[n] = w[n] sinc(2 fc n / sr) / sum_n w[n] sinc(2 fc n / sr)   (gain 1 at DC)
    highpass(fc) h = delta - lowpass(fc)          so lowpass(x) + highpass(x) = x exactly
    bandpass     h = lowpass(high) - lowpass(low)

(the lowpass's taps are ``scipy.signal.firwin(N, fc, window="hann", fs=sr)``, tested against
the formula above). The kernel is centred, so
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

``AudioFeatures``: the deterministic part of the ``[audio]`` pipeline (filter, then features), the
module saved with the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regulab.checks import choice, number, optional
from regulab.errors import ConfigError, DataError, invalid

__all__ = ["fir_kernel", "fir_filter", "lowpass", "highpass", "bandpass", "spectrogram",
           "mel_filterbank", "LogMelSpectrogram", "AudioFeatures", "waveforms", "HANN_TRANSITION"]

HANN_TRANSITION = 3.1   # (N - 1) * width / sr of a Hann-windowed sinc, gain 0.99 -> 0.01


def waveforms(owner: str, x: Any, dims: Sequence[int] | None = None, shape: str = "(B, T)") -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or (dims and x.dim() not in dims):
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise DataError(f"{owner} takes a floating-point tensor {shape}; got {got}")
    return x


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
    from scipy.signal import firwin     # here: only a run that filters pays SciPy's import
    half = math.ceil(HANN_TRANSITION * sr / width / 2)

    def lp(fc: float) -> Tensor:        # the windowed sinc of the module doc, scaled to gain 1 at DC
        return torch.from_numpy(firwin(2 * half + 1, fc, window="hann", fs=sr)).to(torch.float64)
    delta = (torch.arange(-half, half + 1) == 0).to(torch.float64)
    if low is None:
        return lp(high)
    return (delta if high is None else lp(high)) - lp(low)


def fir_filter(x: Tensor, kernel: Tensor) -> Tensor:
    """``x`` (..., T) convolved with the centred odd-length ``kernel`` (N,): same length, zero phase."""
    x = waveforms("fir_filter", x, shape="(..., T)")
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
    x = waveforms("spectrogram", x, shape="(..., T)")
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
        S = spectrogram(waveforms("LogMelSpectrogram", x, (2,)), self.n_fft, self.hop_length,
                        self.win_length, 2.0, self.window)                        # (B, F, frames)
        if self.filterbank is not None:
            S = torch.matmul(self.filterbank.to(S.dtype), S)                      # (B, n_mels, frames)
        return torch.log(S + self.eps).unsqueeze(1)                               # (B, 1, ., frames)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}, eps={self.eps}")


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
