"""``Dataset``: arrays plus what training needs to know about them.

Arrays: ``X`` is float32 ``(N, *sample_shape)`` -- images as ``(N, C, H, W)`` in [0, 1]
(texts: an object array of strings until their features are computed); classification ``y``
is int64 labels ``0..C-1`` of shape ``(N,)``; regression ``y`` is float32 ``(N, k)``.
``X``/``y`` is the pool that a run splits into train/validation (and test); ``X_test``/
``y_test`` is the data set's own test set when it has one, which is then kept as THE test set;
``X_val``/``y_val`` its own validation set (a user's ``{"train", "val"}``), which keeps the
split as given. ``X`` may also be lazy (``regulab.data.stream.Rows``): inputs read per item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from regulab.checks import MAX_CLASSES
from regulab.errors import DataError, invalid

__all__ = ["Dataset", "TASKS", "MODALITIES"]

TASKS = ("auto", "classification", "regression")
# what one sample is: a feature vector, a 1-D signal (mnist1d), an image (C, H, W), a waveform,
# a text (a string, until its features are computed), or a video's frames stacked as channels
MODALITIES = ("tabular", "signal", "image", "audio", "text", "video")


@dataclass
class Dataset:
    """Arrays plus what the trainer needs to know about them (task, class names, test set)."""

    name: str
    X: np.ndarray = field(repr=False)  # float32 (N, *sample_shape)
    y: np.ndarray = field(repr=False)  # int64 (N,) or float32 (N, k)
    task: str
    classes: list[str] | None
    X_test: np.ndarray | None = field(default=None, repr=False)
    y_test: np.ndarray | None = field(default=None, repr=False)
    X_val: np.ndarray | None = field(default=None, repr=False)
    y_val: np.ndarray | None = field(default=None, repr=False)
    description: str = ""
    feature_names: list[str] | None = None
    modality: str | None = None     # one of MODALITIES; None: from X (strings, (N, C, H, W), else tabular)

    def __post_init__(self):
        if self.task not in TASKS[1:]:
            raise invalid("Dataset.task", "classification or regression", self.task, kind="field",
                          error=DataError)
        if self.modality is None:
            self.modality = ("text" if self.X.dtype == object else "image" if self.X.ndim == 4
                             else "tabular")
        elif self.modality not in MODALITIES:
            raise invalid("Dataset.modality", f"one of {', '.join(MODALITIES)}", self.modality,
                          kind="field", error=DataError)
        if len(self.X) != len(self.y):
            raise DataError(f"Dataset '{self.name}': X has {len(self.X)} samples but y has {len(self.y)}")
        if 0 in self.X.shape[1:]:
            raise DataError(f"Dataset '{self.name}': samples have shape {tuple(self.X.shape[1:])}; "
                            "allowed: at least 1 feature (no dimension of size 0)")
        if self.classes is not None and len(self.classes) > MAX_CLASSES:
            raise DataError(f"Dataset '{self.name}': has {len(self.classes)} classes; allowed: at "
                            f"most {MAX_CLASSES} (MAX_CLASSES)")

    @property
    def num_classes(self) -> int:
        """Number of classes; 0 for regression."""
        return len(self.classes) if self.task == "classification" and self.classes else 0

    @property
    def sample_shape(self) -> tuple:
        """Shape of one sample, e.g. ``(1, 28, 28)`` or ``(40,)``."""
        return tuple(self.X.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Width of the network's output: num_classes, or the regression target width."""
        if self.task == "classification":
            return self.num_classes
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])
