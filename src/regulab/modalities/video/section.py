"""The config section of video: how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import _key, _Section, boolean, choice, number, size

__all__ = ["VideoAugmentConfig"]


@dataclass
class VideoAugmentConfig(_Section):
    """Video (``video:DIR``): frame sampling, per-frame preprocessing and optical flow."""
    SECTION = "augment.video"
    frames: int = _key(8, number(ge=1, integer=True), "frames sampled per clip")
    sampling: str = _key("uniform", choice("uniform", "motion"), "evenly spaced, or the frames with the most change")
    size: Any = _key([64, 64], size, "frame size")
    gray: bool = _key(True, boolean, "grayscale frames")
    flow: bool = _key(False, boolean, "add dense optical flow (Farneback) as 2 channels per frame")
