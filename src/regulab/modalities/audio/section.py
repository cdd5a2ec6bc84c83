"""``[audio]``: how clips are read (``audio:DIR``), turned into features (filters, log-mel) and
augmented (noise, time shift, SpecAugment). Each key is checked by its constraint, and the keys
that depend on each other (cut-offs below the Nyquist frequency, a band-pass's order, masks
within the features) by ``AudioConfig.relations`` -- once, whether the section comes from a
config file or from ``AudioPipeline(...)``'s keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import SHARED, Section, choice, key, list_of, number, optional, snr, string
from regulab.errors import invalid

__all__ = ["AudioConfig", "PIPELINE_KEYS", "FEATURES"]

FEATURES = ("logmel", "spectrogram", "waveform")
# the keys the pipeline uses (the others say how clips are read)
PIPELINE_KEYS = ("sample_rate", "features", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "lowpass",
                 "highpass", "noise_snr", "noise_prob", "time_shift", "freq_mask", "time_mask",
                 "n_freq_masks", "n_time_masks")


@dataclass
class AudioConfig(Section):
    """Audio: reading (``audio:DIR``), features (log-mel) and augmentation (noise, shift, SpecAugment)."""
    SECTION = "audio"
    sample_rate: int = key(8000, number(ge=100, le=384_000, integer=True), "resample every clip to this rate (Hz)",
                           population=SHARED)
    seconds: float = key(1.0, number(gt=0.0, le=3600.0), "clip length: shorter padded, longer trimmed",
                         population=SHARED)
    label: str = key("auto", choice("auto", "folder", "filename"),
                     "label from sub-folder names or the file name's first '_' field", population=SHARED)
    test_indices: Any = key(None, optional(list_of(number(ge=0, integer=True), min_len=1,
                            allowed="a list of file indices >= 0")),
                            "files whose last '_' field is one of these form the test set (FSDD: [0, 1, 2, 3, 4])",
                            population=SHARED)
    features: str = key("logmel", choice(*FEATURES), "what the model sees",
                        population=SHARED)
    n_fft: int = key(256, number(ge=8, le=65_536, integer=True), "STFT size", population=SHARED)
    hop_length: int = key(80, number(ge=1, le=65_536, integer=True), "STFT hop (samples)", population=SHARED)
    n_mels: int = key(40, number(ge=1, le=1024, integer=True), "mel bands", population=SHARED)
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

    def relations(self) -> None:
        """The checks between keys: every frequency below the Nyquist frequency sample_rate / 2,
        f_min < f_max, highpass < lowpass (a band-pass), SpecAugment masks only on spectrograms and
        a frequency mask within their bands."""
        if round(self.seconds * self.sample_rate) < 1:
            raise invalid("audio.seconds", f"long enough for one sample at {self.sample_rate} Hz", self.seconds)
        nyquist = self.sample_rate / 2
        below = f"a frequency in (0, {nyquist:g}) Hz (below sample_rate / 2)"
        for name in ("lowpass", "highpass"):
            v = getattr(self, name)
            if v is not None and not v < nyquist:
                raise invalid(f"audio.{name}", below, v)
        if self.f_max is not None and not self.f_max <= nyquist:
            raise invalid("audio.f_max", f"at most sample_rate / 2 ({nyquist:g} Hz)", self.f_max)
        if not self.f_min < (self.f_max or nyquist):
            raise invalid("audio.f_min", f"below f_max ({self.f_max or nyquist:g} Hz)", self.f_min)
        if self.lowpass is not None and self.highpass is not None and self.highpass >= self.lowpass:
            raise invalid("audio.highpass", f"below audio.lowpass ({self.lowpass} Hz) for a band-pass",
                          self.highpass)
        for name in ("freq_mask", "time_mask"):
            if self.features == "waveform" and getattr(self, name):
                raise invalid(f"audio.{name}", "0 with features = waveform (SpecAugment masks spectrograms)",
                              getattr(self, name))
        bins = {"logmel": self.n_mels, "spectrogram": self.n_fft // 2 + 1}.get(self.features, 0)
        if self.freq_mask > bins > 0:
            raise invalid("audio.freq_mask", f"at most the {bins} frequency bands of the {self.features}",
                          self.freq_mask)
