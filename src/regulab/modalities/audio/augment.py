"""Audio augmentation on batches of waveforms (B, T) and spectrograms (B, F, frames), and the
``[audio]`` pipeline that chains filters, noise, shift, features and SpecAugment.

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

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from regulab.checks import number
from regulab.checks import snr as _snr
from regulab.errors import invalid
from regulab.modalities.audio.features import AudioFeatures, waveforms
from regulab.modalities.audio.reader import check_resampling, read_wav, resample
from regulab.modalities.audio.section import PIPELINE_KEYS, AudioConfig
from regulab.modalities.image.augment import check_generator

__all__ = ["add_noise", "time_shift", "spec_augment", "noise_bank", "AudioPipeline"]


def _uniform(g: torch.Generator, shape: Sequence[int], device) -> Tensor:
    """U[0, 1) float64 draws made on the generator's device, moved to ``device``."""
    return torch.rand(tuple(shape), generator=g, device=g.device, dtype=torch.float64).to(device)


# ----------------------------------------------------------------------------- augmentation

def add_noise(x: Tensor, snr_db: float | Sequence[float], generator: torch.Generator,
              noise: Tensor | None = None, prob: float = 1.0) -> Tensor:
    """``x`` (B, T) plus noise at ``snr_db`` dB: ``10 log10(mean(x^2) / mean(added^2)) = snr_db``.

    snr_db: a number, or (low, high) drawn uniformly per example. noise: None (white Gaussian),
    a clip (L,) or a bank (K, L) (one clip per example at random) read from a random offset,
    tiled when L < T. prob: probability that an example gets noise (the others are unchanged).
    A silent example stays silent. Example: ``add_noise(x, (10, 20), g)``.
    """
    x = waveforms("add_noise", x, (2,))
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
        bank = waveforms("add_noise noise", noise, (1, 2), "(L,) or (K, L)").to(x.device, x.dtype)
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
    x = waveforms("time_shift", x, (2,))
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
    S = waveforms("spec_augment", S, (3, 4), "(B, F, frames) or (B, C, F, frames)")
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


def noise_bank(section: AudioConfig) -> Tensor | None:
    """``[audio] noise_file``: its clips (a WAV or a folder of WAVs) at the section's sample
    rate, as a bank (K, L) of equal rows (each clip's first L samples); None without one."""
    if section.noise_file is None:
        return None
    path = Path(section.noise_file)
    files = sorted(path.rglob("*.wav")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise invalid("audio.noise_file", "a WAV file or a folder of WAVs", section.noise_file)
    clips = []
    for f in files:
        wave, sr = read_wav(f)
        check_resampling(sr, section.sample_rate, f"audio file '{f}'")
        clips.append(resample(torch.as_tensor(wave), sr, section.sample_rate) if sr != section.sample_rate
                     else torch.as_tensor(wave))
    length = min(len(c) for c in clips)
    return torch.stack([c[:length] for c in clips])


class AudioPipeline:
    """``[audio]``: waveforms (B, T) -> model input, with augmentation in training.

    features: "logmel" (B, 1, n_mels, frames), "spectrogram" (log-power, B, 1, n_fft // 2 + 1,
    frames) or "waveform" (B, T). lowpass / highpass: cut-offs in Hz (both: a band-pass), every
    split. Training only: noise_snr (dB, or [low, high] drawn per example) with probability
    noise_prob (white, or drawn from ``noise`` clips), time_shift (max fraction of T,
    zero-filled), SpecAugment masks (filled with each example's mean, as the paper's normalized
    log-mels are filled with 0). ``train`` = filter -> noise -> time shift -> features ->
    SpecAugment; ``eval`` = filter -> features = ``features_module()``, the module to save with
    the model.

    Built from an ``AudioConfig`` (``AudioPipeline(cfg.audio, noise=noise_bank(cfg.audio))``) or
    from its keys, which the section checks (each key, and how they relate).
    Example: ``AudioPipeline(noise_snr=[10, 20], freq_mask=8, time_mask=10).train(x, g)``.
    """

    def __init__(self, config: AudioConfig | None = None, *, noise: Tensor | None = None, **keys: Any):
        c = config if config is not None else AudioConfig(**keys)   # each key checked once, there
        self.config = c
        for name in PIPELINE_KEYS:
            setattr(self, name, getattr(c, name))
        self.noise = noise      # None: white noise; else a clip (L,) or a bank (K, L) to draw from
        self._module = AudioFeatures(c.sample_rate, c.features, c.n_fft, c.hop_length, c.n_mels,
                                     c.f_min, c.f_max, c.lowpass, c.highpass)

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
        x = m.filter(waveforms("AudioPipeline", x, (2,)))
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
        return self._module(waveforms("AudioPipeline", x, (2,)))

    def get_config(self) -> dict[str, Any]:
        """Plain values; ``AudioPipeline(**cfg)`` rebuilds an equal pipeline."""
        return {name: getattr(self, name) for name in PIPELINE_KEYS}

    def __repr__(self) -> str:
        return f"AudioPipeline({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"
