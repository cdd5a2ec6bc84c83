"""``[image]``: how images (and the 1-D samples of mnist1d) are preprocessed and augmented.

The constraints of the keys are defined here once (``ROTATION``, ``TRANSLATE``, ``SHEAR``, ...)
and used both by the section and by the augmentation ops of ``regulab.modalities.image.augment``
(``RandomAffine(rotation=...)`` checks its argument with the same rule as ``image.rotation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import (MAX_SIDE, MEMBER, Check, Section, blocks, choice, interval, key, list_of, number,
                            optional, size)
from regulab.errors import invalid

__all__ = ["ImageConfig", "ROTATION", "TRANSLATE", "SHEAR", "SCALE", "PROBABILITY", "FRACTION",
           "PADDING", "ASPECTS"]

ASPECTS = ("stretch", "pad", "crop")
ROTATION = number(ge=0.0, le=180.0)            # max |angle| in degrees
FRACTION = number(ge=0.0, lt=1.0)               # of the width or height
PROBABILITY = number(ge=0.0, le=1.0)
SCALE = interval(1e-6)                          # [low, high] zoom factors
PADDING = number(ge=0, le=MAX_SIDE, integer=True)
_ANGLE = number(ge=0.0, lt=90.0)


def _pair_of(check: Check, allowed: str) -> Check:
    """A number (for both axes), or a pair [x, y] of them."""
    def pair(key: str, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise invalid(key, allowed, v)
            return [check(f"{key}[0]", v[0]), check(f"{key}[1]", v[1])]
        return check(key, v)
    return pair


TRANSLATE = _pair_of(FRACTION, "a fraction in [0, 1) or a pair [x, y] of them")
_SHEAR_PAIR = _pair_of(_ANGLE, "a number in [0, 90) or a pair [x, y] with x + y < 90")


def _shear(key: str, v: Any) -> Any:
    """A number of degrees (x shear only, torchvision's convention), or a pair [x, y] with
    x + y < 90 (``det(Sh) = 1 - tan(x) tan(y)`` must stay > 0)."""
    v = _SHEAR_PAIR(key, v)
    if isinstance(v, list) and v[0] + v[1] >= 90.0:
        raise invalid(key, "a pair [x, y] of degrees with x + y < 90 (else the shear is singular)", v)
    return v


SHEAR = _shear


@dataclass
class ImageConfig(Section):
    """Images (and the 1-D samples of mnist1d: translate -> shift, scale -> stretch).

    The notes' torchvision pipeline ``Resize(32), RandomCrop(28), RandomRotation(30),
    Normalize((0.5,), (0.5,))`` is ``resize = 32, random_crop = 28, rotation = 30,
    mean = [0.5], std = [0.5]``."""
    SECTION = "image"
    resize: Any = key(None, optional(size), "resize every image first (all splits)", population=blocks())
    aspect: str = key("stretch", choice(*ASPECTS),
                      "reaching resize's aspect ratio: stretch, pad (letterbox) or centre-crop",
                      population=blocks())
    random_crop: Any = key(None, optional(size), "random crop in training, centre crop of this size at evaluation",
                           population=blocks())
    crop_padding: int = key(0, PADDING, "zero padding before the random crop",
                            population=blocks())
    rotation: float = key(0.0, ROTATION, "max |rotation| in degrees", population=MEMBER)
    translate: Any = key(0.0, TRANSLATE, "max |shift| as a fraction of width/height (or [x, y])",
                         population=MEMBER)
    scale: list = key([1.0, 1.0], SCALE, "range of the zoom factor", population=MEMBER)
    shear: Any = key(0.0, SHEAR, "max |shear| in degrees along x (or [x, y] with x + y < 90)",
                     population=MEMBER)
    hflip: float = key(0.0, PROBABILITY, "probability of a horizontal flip", population=MEMBER)
    vflip: float = key(0.0, PROBABILITY, "probability of a vertical flip", population=MEMBER)
    mean: Any = key(None, optional(list_of(number(), min_len=1, allowed="a list of per-channel means")),
                    "normalize: subtract per channel (all splits)", population=blocks())
    std: Any = key(None, optional(list_of(number(gt=0.0), min_len=1, allowed="a list of per-channel stds > 0")),
                   "normalize: divide per channel (all splits)", population=blocks())
