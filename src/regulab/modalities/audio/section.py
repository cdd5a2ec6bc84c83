"""The config section of audio: how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import _key, _Section, choice, list_of, number, optional, snr, string

__all__ = ["AudioAugmentConfig"]


@dataclass
class AudioAugmentConfig(_Section):
    """Audio: reading (``audio:DIR``), features (log-mel) and augmentation (noise, shift, SpecAugment)."""
    SECTION = "augment.audio"
    sample_rate: int = _key(8000, number(ge=100, integer=True), "resample every clip to this rate (Hz)")
    seconds: float = _key(1.0, number(gt=0.0), "clip length: shorter padded, longer trimmed")
    label: str = _key("auto", choice("auto", "folder", "filename"),
                      "label from sub-folder names or the file name's first '_' field")
    test_indices: Any = _key(None, optional(list_of(number(ge=0, integer=True), min_len=1,
                             allowed="a list of file indices >= 0")),
                             "files whose last '_' field is one of these form the test set (FSDD: [0, 1, 2, 3, 4])")
    features: str = _key("logmel", choice("logmel", "spectrogram", "waveform"), "what the model sees")
    n_fft: int = _key(256, number(ge=8, integer=True), "STFT size")
    hop_length: int = _key(80, number(ge=1, integer=True), "STFT hop (samples)")
    n_mels: int = _key(40, number(ge=1, integer=True), "mel bands")
    f_min: float = _key(0.0, number(ge=0.0), "lowest mel frequency (Hz)")
    f_max: Any = _key(None, optional(number(gt=0.0)), "highest mel frequency (Hz; default sample_rate/2)")
    lowpass: Any = _key(None, optional(number(gt=0.0)), "low-pass cutoff (Hz), all splits")
    highpass: Any = _key(None, optional(number(gt=0.0)), "high-pass cutoff (Hz), all splits")
    noise_snr: Any = _key(None, optional(snr), "additive white noise at this SNR (dB) or range, training only")
    noise_prob: float = _key(1.0, number(ge=0.0, le=1.0), "probability that an example gets noise")
    noise_file: Any = _key(None, optional(string), "noise from this WAV file or folder of WAVs "
                                                   "(random offsets) instead of white noise")
    time_shift: float = _key(0.0, number(ge=0.0, lt=1.0), "max |shift| as a fraction of the clip")
    freq_mask: int = _key(0, number(ge=0, integer=True), "SpecAugment: max width of a frequency mask")
    time_mask: int = _key(0, number(ge=0, integer=True), "SpecAugment: max width of a time mask")
    n_freq_masks: int = _key(1, number(ge=0, integer=True), "SpecAugment: frequency masks per example")
    n_time_masks: int = _key(1, number(ge=0, integer=True), "SpecAugment: time masks per example")
