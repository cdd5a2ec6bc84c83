"""The config section of audio: how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import SHARED, Section, blocks, key, choice, list_of, number, optional, snr, string

__all__ = ["AudioConfig"]


@dataclass
class AudioConfig(Section):
    """Audio: reading (``audio:DIR``), features (log-mel) and augmentation (noise, shift, SpecAugment)."""
    SECTION = "audio"
    sample_rate: int = key(8000, number(ge=100, integer=True), "resample every clip to this rate (Hz)",
                           population=SHARED)
    seconds: float = key(1.0, number(gt=0.0), "clip length: shorter padded, longer trimmed",
                         population=SHARED)
    label: str = key("auto", choice("auto", "folder", "filename"),
                     "label from sub-folder names or the file name's first '_' field", population=SHARED)
    test_indices: Any = key(None, optional(list_of(number(ge=0, integer=True), min_len=1,
                            allowed="a list of file indices >= 0")),
                            "files whose last '_' field is one of these form the test set (FSDD: [0, 1, 2, 3, 4])",
                            population=SHARED)
    features: str = key("logmel", choice("logmel", "spectrogram", "waveform"), "what the model sees",
                        population=SHARED)
    n_fft: int = key(256, number(ge=8, integer=True), "STFT size", population=SHARED)
    hop_length: int = key(80, number(ge=1, integer=True), "STFT hop (samples)", population=SHARED)
    n_mels: int = key(40, number(ge=1, integer=True), "mel bands", population=SHARED)
    f_min: float = key(0.0, number(ge=0.0), "lowest mel frequency (Hz)", population=SHARED)
    f_max: Any = key(None, optional(number(gt=0.0)), "highest mel frequency (Hz; default sample_rate/2)",
                     population=SHARED)
    lowpass: Any = key(None, optional(number(gt=0.0)), "low-pass cutoff (Hz), all splits", population=SHARED)
    highpass: Any = key(None, optional(number(gt=0.0)), "high-pass cutoff (Hz), all splits",
                        population=SHARED)
    noise_snr: Any = key(None, optional(snr), "additive white noise at this SNR (dB) or range, training only",
                         population=SHARED)
    noise_prob: float = key(1.0, number(ge=0.0, le=1.0), "probability that an example gets noise",
                            population=SHARED)
    noise_file: Any = key(None, optional(string), "noise from this WAV file or folder of WAVs "
                                                  "(random offsets) instead of white noise",
                          population=SHARED)
    time_shift: float = key(0.0, number(ge=0.0, lt=1.0), "max |shift| as a fraction of the clip",
                            population=SHARED)
    freq_mask: int = key(0, number(ge=0, integer=True), "SpecAugment: max width of a frequency mask",
                         population=SHARED)
    time_mask: int = key(0, number(ge=0, integer=True), "SpecAugment: max width of a time mask",
                         population=SHARED)
    n_freq_masks: int = key(1, number(ge=0, integer=True), "SpecAugment: frequency masks per example",
                            population=SHARED)
    n_time_masks: int = key(1, number(ge=0, integer=True), "SpecAugment: time masks per example",
                            population=SHARED)
