"""The config section of images (and 1-D samples): how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import SHARED, Section, blocks, key, choice, interval, list_of, number, optional, size

__all__ = ["ImageConfig"]


@dataclass
class ImageConfig(Section):
    """Images (and the 1-D samples of mnist1d: translate -> shift, scale -> stretch).

    The notes' torchvision pipeline ``Resize(32), RandomCrop(28), RandomRotation(30),
    Normalize((0.5,), (0.5,))`` is ``resize = 32, random_crop = 28, rotation = 30,
    mean = [0.5], std = [0.5]``."""
    SECTION = "image"
    resize: Any = key(None, optional(size), "resize every image first (all splits)", population=blocks())
    aspect: str = key("stretch", choice("stretch", "pad", "crop"),
                      "reaching resize's aspect ratio: stretch, pad (letterbox) or centre-crop",
                      population=blocks())
    random_crop: Any = key(None, optional(size), "random crop in training, centre crop of this size at evaluation",
                           population=blocks())
    crop_padding: int = key(0, number(ge=0, integer=True), "zero padding before the random crop",
                            population=blocks())
    rotation: float = key(0.0, number(ge=0.0, le=180.0), "max |rotation| in degrees", population=blocks())
    translate: float = key(0.0, number(ge=0.0, lt=1.0), "max |shift| as a fraction of width/height",
                           population=blocks())
    scale: list = key([1.0, 1.0], interval(1e-6), "range of the zoom factor", population=blocks())
    shear: float = key(0.0, number(ge=0.0, lt=90.0), "max |shear| in degrees", population=blocks())
    hflip: float = key(0.0, number(ge=0.0, le=1.0), "probability of a horizontal flip", population=blocks())
    vflip: float = key(0.0, number(ge=0.0, le=1.0), "probability of a vertical flip", population=blocks())
    mean: Any = key(None, optional(list_of(number(), min_len=1, allowed="a list of per-channel means")),
                    "normalize: subtract per channel (all splits)", population=blocks())
    std: Any = key(None, optional(list_of(number(gt=0.0), min_len=1, allowed="a list of per-channel stds > 0")),
                   "normalize: divide per channel (all splits)", population=blocks())
