"""The config section of video: how it is read, preprocessed and augmented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import SHARED, Section, boolean, choice, key, number, size

__all__ = ["VideoConfig"]


@dataclass
class VideoConfig(Section):
    """Video (``video:DIR``): frame sampling, per-frame preprocessing and optical flow."""
    SECTION = "video"
    frames: int = key(8, number(ge=1, le=1024, integer=True), "frames sampled per clip", population=SHARED)
    sampling: str = key("uniform", choice("uniform", "motion"), "evenly spaced, or the frames with the most change",
                        population=SHARED)
    size: Any = key([64, 64], size, "frame size", population=SHARED)
    gray: bool = key(True, boolean, "grayscale frames", population=SHARED)
    flow: bool = key(False, boolean, "add dense optical flow (Farneback) as 2 channels per frame",
                     population=SHARED)
