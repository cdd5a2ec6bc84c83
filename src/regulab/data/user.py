"""The user's own data, in any of the forms ``data.dataset`` takes from Python (or that the
function of ``data.dataset = "python:FILE.py:NAME"`` returns), to one :class:`Dataset`.

Forms:

* a ``Dataset`` -- itself;
* arrays ``(X, y)`` (NumPy or tensors, same length) -- in memory, as ``npz:`` reads them;
* a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` -- read lazily: its inputs
  become ``regulab.data.stream.Rows`` (collated later when they fit: ``data.resident``), its
  labels are read once (from a ``targets`` attribute when it has one, as torchvision's do, else
  by one pass over the items);
* a dict of those with key ``train`` and optionally ``val`` and ``test`` -- the user's own split,
  kept as given (without ``val``, ``data.split`` splits ``train`` into train and validation);
* a ``torch.utils.data.DataLoader``, or a dict of them -- their datasets. regulab batches, shuffles
  (seeded, checkpointed) and streams on its own terms (``train.batch_size``, ``data.workers``),
  so the loaders' batch size, sampler, workers and collate function are not used.

Task, as ``npz:`` infers it (``regulab.data.files.labels``): integer labels -> classification
with classes 0..C-1 (C = max + 1); float targets -> regression; ``data.task`` overrides. The
modality follows from the sample's shape (``Dataset``: ``(C, H, W)`` is an image).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regulab.data.dataset import Dataset
from regulab.data.files import labels
from regulab.data.stream import Rows
from regulab.errors import DataError, did_you_mean

__all__ = ["user_dataset", "FORMS", "SPLITS"]

FORMS = ("a map-style torch Dataset of (x, y), a dict of them with key 'train' (and 'val', "
         "'test'), arrays (X, y), a regulab Dataset, or DataLoaders of these")
SPLITS = ("train", "val", "test")


class Inputs:
    """The inputs ``x`` of a map-style dataset of ``(x, y)`` items (what ``Rows`` reads)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, j: int) -> Any:
        return self.dataset[j][0]


def _numeric(v: Any, what: str, where: str) -> np.ndarray:
    try:
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{where}: {what} cannot be read as numbers ({e})") from None
    if a.dtype.kind not in "biuf":
        raise DataError(f"{where}: {what} has dtype {a.dtype}; allowed: bool, int or float numbers")
    return a


def _split_of(obj: Any, split: str, where: str) -> tuple[Any, np.ndarray]:
    """(inputs: an array or ``Rows``, labels as an array) of one split's object."""
    if isinstance(obj, torch.utils.data.DataLoader):
        obj = obj.dataset
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and not isinstance(obj, torch.utils.data.Dataset):
        X, y = _numeric(obj[0], f"the {split} inputs X", where), _numeric(obj[1], f"the {split} labels y", where)
        if X.ndim < 2 or len(X) == 0:
            raise DataError(f"{where}: the {split} inputs X have shape {X.shape}; allowed: "
                            "(N, *sample_shape) with N >= 1")
        if y.ndim == 0:
            raise DataError(f"{where}: the {split} labels y have shape (); allowed: (N,) or (N, k), "
                            "one row per sample of X")
        if len(X) != len(y):
            raise DataError(f"{where}: the {split} inputs X have {len(X)} samples but the labels y have "
                            f"{len(y)}; they must match")
        return X.astype(np.float32), y
    if not (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")) or isinstance(obj, (str, dict)):
        raise DataError(f"{where} must give {FORMS}; got {type(obj).__name__} for the {split} split")
    n = len(obj)
    if n == 0:
        raise DataError(f"{where}: the {split} dataset is empty")
    try:
        first = obj[0]
        x0, _ = first
    except Exception as e:
        raise DataError(f"{where}: item 0 of the {split} dataset must be a pair (x, y); got "
                        f"{type(e).__name__}: {' '.join(str(e).split())}") from None
    shape = _numeric(x0, f"the {split} input x of item 0", where).shape
    targets = getattr(obj, "targets", None)
    try:
        y = (_numeric(targets, f"the {split} dataset's targets", where) if targets is not None
             and len(targets) == n else np.stack([_numeric(obj[j][1], f"the label of item {j}", where)
                                                  for j in range(n)]))
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{where}: reading the labels of the {split} dataset raised "
                        f"{type(e).__name__}: {' '.join(str(e).split())}") from None
    return Rows(Inputs(obj), shape), y


def user_dataset(obj: Any, where: str, task: str = "auto") -> Dataset:
    """``obj`` (module docstring) as a ``Dataset`` named ``where`` ("data.dataset 'FILE.py:NAME'"
    in errors); ``task`` is ``data.task``."""
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, dict):
        unknown = [k for k in obj if k not in SPLITS]
        if unknown or "train" not in obj:
            bad = unknown[0] if unknown else None
            raise DataError(f"{where}: a dict of datasets must have key 'train' and optionally 'val', "
                            f"'test'; got keys {list(obj)}" + (did_you_mean(str(bad), SPLITS) if bad else ""))
        parts = {k: _split_of(obj[k], k, where) for k in SPLITS if k in obj}
    else:
        parts = {"train": _split_of(obj, "train", where)}
    shape = parts["train"][0].shape[1:]
    for k, (X, _) in parts.items():
        if X.shape[1:] != shape:
            raise DataError(f"{where}: the {k} samples have shape {X.shape[1:]} but the train samples "
                            f"have {shape}; they must match")
    ys, task, classes = labels({k: y for k, (_, y) in parts.items()}, task, where)
    X, X_val, X_test = (parts[k][0] if k in parts else None for k in SPLITS)
    y, y_val, y_test = (ys.get(k) for k in SPLITS)
    return Dataset(where, X, y, task, classes, X_test=X_test, y_test=y_test, X_val=X_val, y_val=y_val,
                   description=f"{where}: {len(y)} samples of shape {shape}"
                               + "".join(f" + {len(ys[k])} {k}" for k in ("val", "test") if k in ys)
                               + f" ({task})")
