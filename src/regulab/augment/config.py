"""``[augment.image]``, ``[augment.audio]``, ``[augment.text]``, ``[augment.video]``: how each
kind of data is read, preprocessed and augmented.

Preprocessing and augmentation of one modality interact (a random crop for training means a
centre crop of the same size at evaluation; SpecAugment masks the log-mel features that the
audio section computes), so each modality has one table holding both. Augmentation acts on
training batches only. Everything is off by default.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checks import (_fail, _key, _Section, boolean, choice, list_of, number, optional,
                      string)
from ..errors import ConfigError

__all__ = ["AugmentConfig", "ImageAugmentConfig", "AudioAugmentConfig", "TextAugmentConfig",
           "VideoAugmentConfig"]


def size(key: str, v: Any) -> Any:
    """A side length >= 1, or [height, width]."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return v
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in v):
        return list(v)
    raise _fail(key, "a size >= 1 or [height, width]", v)


def interval(lo: float | None = None, hi: float | None = None) -> Any:
    """[low, high] with lo <= low <= high (<= hi)."""
    allowed = ("[low, high] with " + (f"{lo} <= " if lo is not None else "") + "low <= high"
               + (f" <= {hi}" if hi is not None else ""))

    def check(key: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise _fail(key, allowed, v)
        a, b = (number()(key, x) for x in v)
        if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
            raise _fail(key, allowed, v)
        return [a, b]
    return check


def snr(key: str, v: Any) -> Any:
    """A signal-to-noise ratio in dB, or a [low, high] range drawn per example."""
    if isinstance(v, (list, tuple)):
        return interval()(key, v)
    return number()(key, v)


@dataclass
class ImageAugmentConfig(_Section):
    """Images (and the 1-D samples of mnist1d: translate -> shift, scale -> stretch).

    The notes' torchvision pipeline ``Resize(32), RandomCrop(28), RandomRotation(30),
    Normalize((0.5,), (0.5,))`` is ``resize = 32, random_crop = 28, rotation = 30,
    mean = [0.5], std = [0.5]``."""
    SECTION = "augment.image"
    resize: Any = _key(None, optional(size), "resize every image first (all splits)")
    aspect: str = _key("stretch", choice("stretch", "pad", "crop"),
                       "reaching resize's aspect ratio: stretch, pad (letterbox) or centre-crop")
    random_crop: Any = _key(None, optional(size), "random crop in training, centre crop of this size at evaluation")
    crop_padding: int = _key(0, number(ge=0, integer=True), "zero padding before the random crop")
    rotation: float = _key(0.0, number(ge=0.0, le=180.0), "max |rotation| in degrees")
    translate: float = _key(0.0, number(ge=0.0, lt=1.0), "max |shift| as a fraction of width/height")
    scale: list = _key([1.0, 1.0], interval(1e-6), "range of the zoom factor")
    shear: float = _key(0.0, number(ge=0.0, lt=90.0), "max |shear| in degrees")
    hflip: float = _key(0.0, number(ge=0.0, le=1.0), "probability of a horizontal flip")
    vflip: float = _key(0.0, number(ge=0.0, le=1.0), "probability of a vertical flip")
    mean: Any = _key(None, optional(list_of(number(), min_len=1, allowed="a list of per-channel means")),
                     "normalize: subtract per channel (all splits)")
    std: Any = _key(None, optional(list_of(number(gt=0.0), min_len=1, allowed="a list of per-channel stds > 0")),
                    "normalize: divide per channel (all splits)")


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


@dataclass
class TextAugmentConfig(_Section):
    """Text: reading (``text:PATH``, ``rotten_tomatoes``), features and augmentation."""
    SECTION = "augment.text"
    text_column: str = _key("text", string, "CSV column holding the text")
    label_column: str = _key("label", string, "CSV column holding the label")
    language: str = _key("english", choice("english", "spanish"), "stopwords and stemmer language")
    lowercase: bool = _key(True, boolean, "lower-case")
    strip_accents: bool = _key(True, boolean, "remove accents")
    strip_punctuation: bool = _key(True, boolean, "remove punctuation")
    stopwords: bool = _key(False, boolean, "drop stopwords (off: the English list holds not, no, "
                                           "good, best -- words that carry sentiment)")
    stem: bool = _key(False, boolean, "Snowball stemming")
    features: str = _key("tfidf", choice("tfidf", "bow", "word2vec"), "document features")
    max_features: int = _key(5000, number(ge=1, integer=True), "vocabulary size")
    min_df: int = _key(1, number(ge=1, integer=True), "minimum document frequency of a word")
    embedding_dim: int = _key(50, number(ge=1, integer=True), "word2vec: vector size")
    copies: int = _key(0, number(ge=0, integer=True), "augmented copies added per training text")
    char_prob: float = _key(0.0, number(ge=0.0, le=1.0), "per-character probability of a character edit")
    word_prob: float = _key(0.0, number(ge=0.0, le=1.0), "per-word probability of a word edit")
    ops: list = _key([], list_of(string, allowed="a list of augmentation names"), "augmentations to draw from (default: all)")


@dataclass
class VideoAugmentConfig(_Section):
    """Video (``video:DIR``): frame sampling, per-frame preprocessing and optical flow."""
    SECTION = "augment.video"
    frames: int = _key(8, number(ge=1, integer=True), "frames sampled per clip")
    sampling: str = _key("uniform", choice("uniform", "motion"), "evenly spaced, or the frames with the most change")
    size: Any = _key([64, 64], size, "frame size")
    gray: bool = _key(True, boolean, "grayscale frames")
    flow: bool = _key(False, boolean, "add dense optical flow (Farneback) as 2 channels per frame")


SUBSECTIONS: dict[str, type] = {"image": ImageAugmentConfig, "audio": AudioAugmentConfig,
                                "text": TextAugmentConfig, "video": VideoAugmentConfig}


@dataclass
class AugmentConfig:
    """``[augment]``: one table per modality."""
    image: ImageAugmentConfig = field(default_factory=ImageAugmentConfig)
    audio: AudioAugmentConfig = field(default_factory=AudioAugmentConfig)
    text: TextAugmentConfig = field(default_factory=TextAugmentConfig)
    video: VideoAugmentConfig = field(default_factory=VideoAugmentConfig)

    @classmethod
    def from_tables(cls, values: Any, section_of) -> "AugmentConfig":
        """From ``{"image": {...}, ...}``; ``section_of(name, cls, table)`` validates each table."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"config key 'augment' must be a table of tables "
                              f"({', '.join(SUBSECTIONS)}); got {values!r}")
        kwargs = {}
        for name, table in values.items():
            if name not in SUBSECTIONS:
                hint = difflib.get_close_matches(str(name), SUBSECTIONS, n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else ""
                raise ConfigError(f"unknown config key 'augment.{name}'{extra} (tables of [augment]: "
                                  f"{', '.join(SUBSECTIONS)})")
            kwargs[name] = section_of(f"augment.{name}", SUBSECTIONS[name], table)
        return cls(**kwargs)

    def changed(self, name: str) -> bool:
        """Whether table ``name`` differs from its defaults (the modality is configured)."""
        return getattr(self, name) != SUBSECTIONS[name]()
