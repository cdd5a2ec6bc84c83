"""Models out of a finished run: ``load_model(run_dir)`` and ``predict(run_dir, inputs)``.

``load_model`` rebuilds the run's network from ``config.toml`` and ``model.json`` (the sample
shape and output width ``finish`` recorded) -- regulab's own, or the user's ``model.factory``
with the same techniques put in -- and loads ``model.safetensors`` into it: the fitted
preprocessor and the final weights (the best epoch's where early stopping restored them). It
needs neither the data nor any training: it returns a ``Pipeline`` in eval mode that maps raw
inputs ``(N, *sample_shape)`` to scores (logits, or predictions for regression), with
``classes`` (the class names) and ``task`` set on it.

A factory given as an object from Python is written ``python-object:...`` in config.toml;
pass it again: ``load_model(run_dir, model=MyNet)``.

``read_inputs(path, ...)`` reads what ``regulab predict RUN_DIR INPUT`` is given: a CSV of
feature columns (the run's ``data.target`` column, if there, is left out), an ``.npz`` (its
``X``, or its only array), or a folder of PNG/JPEG images (sorted by path; converted to the
run's channels and size, pixels / 255).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regulab.config.core import load_config
from regulab.data.files import check_features, npz_array, open_npz, read_features
from regulab.data.preprocess import Preprocessor
from regulab.data.stream import Rows
from regulab.errors import CheckpointError, DataError, RegulabInputError, invalid, reason
from regulab.io import atomic_write, load_tensors
from regulab.modalities.image.reader import IMAGE_SUFFIXES, ImageFiles
from regulab.nn.models import Pipeline
from regulab.paths import DATA_BYTES, regular_file, shown, writable_dir
from regulab.runs.prepare import network

__all__ = ["load_model", "read_inputs", "predict", "check_output", "write_predictions"]


def _run_file(run_dir: Path, name: str) -> Path:
    path = run_dir / name
    if not path.is_file():
        raise CheckpointError(f"run directory '{run_dir}' has no {name}; is it a finished regulab run "
                              f"(written by this version)?")
    return path


def load_model(run_dir: str | Path, model: Any = None) -> Pipeline:
    """The trained network of the finished run ``run_dir`` (module docstring); ``model``: the
    factory again, when the run was given it as a Python object."""
    run_dir = Path(run_dir)
    cfg = load_config(_run_file(run_dir, "config.toml")).with_code(model=model)
    info_path = _run_file(run_dir, "model.json")
    try:
        info = json.loads(info_path.read_text())
        shape = tuple(int(n) for n in info["sample_shape"])
        outputs = info["outputs"] if isinstance(info["outputs"], int) else [tuple(h) for h in info["outputs"]]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint file '{info_path}' is corrupted ({type(e).__name__}: {e})") from None
    net = network(cfg, info.get("modality") or "tabular", shape, outputs, seed=cfg.train.seed)
    pipeline = Pipeline(Preprocessor(cfg.data.preprocess, shape), net)
    weights = _run_file(run_dir, "model.safetensors")
    try:
        pipeline.load_state_dict(load_tensors(weights)[0])
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint file '{weights}' does not match {run_dir / 'config.toml'} "
                              f"({reason(e, 300)})") from None
    pipeline.classes = info.get("classes")
    pipeline.task = info.get("task")
    pipeline.binary = bool(info.get("binary"))
    return pipeline.eval()


def _read_images(root: Path, shape: tuple) -> tuple[np.ndarray, list[str]]:
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"input folder '{root}' holds no {', '.join(IMAGE_SUFFIXES)} images")
    if len(shape) != 3:
        raise DataError(f"input folder '{root}': the run takes samples of shape {shape}, not images")
    C, H, W = shape
    images = ImageFiles(files, "L" if C == 1 else "RGB", root, str(root), size=(W, H))
    return np.asarray(Rows(images, shape)), [str(f.relative_to(root)) for f in files]


def read_inputs(path: str | Path, shape: tuple, target: str | None = None,
                split_column: str | None = None) -> tuple[np.ndarray, list[str]]:
    """(samples ``(N, *shape)``, a name per sample) from a CSV (its ``target`` and
    ``split_column`` columns left out, when there), an ``.npz`` or an image folder."""
    path = Path(path)
    if path.is_dir():
        return _read_images(path, shape)
    if not path.is_file():
        raise invalid("INPUT", "an existing CSV file, .npz file or image folder", str(path),
                      kind="argument", error=DataError)
    regular_file(path, "input file", max_bytes=DATA_BYTES)     # no FIFO, no device, bounded
    where = f"input file '{path}'"
    if path.suffix.lower() == ".npz":
        with open_npz(path, where) as archive:
            names = list(archive.files)
            key = "X" if "X" in names else names[0] if len(names) == 1 else None
            if key is None:
                raise DataError(f"{where} must hold an array X (or only one array); has {names}"[:300])
            X = check_features(npz_array(archive, key, where), key, where)
    elif path.suffix.lower() == ".csv":
        X = read_features(path, [target, split_column], where).astype(np.float32)
    else:
        raise invalid("INPUT", "a .csv or .npz file, or an image folder", str(path), kind="argument",
                      error=DataError)
    if tuple(X.shape[1:]) != tuple(shape):
        if X.ndim >= 2 and int(np.prod(X.shape[1:])) == int(np.prod(shape)):
            X = X.reshape(len(X), *shape)
        else:
            raise DataError(f"input file '{path}' has samples of shape {tuple(X.shape[1:])}; the run "
                            f"takes {tuple(shape)}")
    if not len(X):
        raise DataError(f"input file '{path}' holds no samples; the run takes (N, {', '.join(map(str, shape))}) "
                        "with N >= 1")
    return X, [str(i) for i in range(len(X))]


@torch.no_grad()
def predict(model: Pipeline, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The model's scores on ``X``: class probabilities, or the regression outputs."""
    device = next(model.parameters()).device
    outs = [model(torch.as_tensor(X[i:i + batch_size], device=device)) for i in range(0, len(X), batch_size)]
    out = torch.cat(outs) if outs else torch.empty(0)
    if model.task != "classification":
        return out.cpu().numpy()
    if model.binary:
        p = torch.sigmoid(out)
        return torch.cat([1 - p, p], 1).cpu().numpy()
    return out.softmax(1).cpu().numpy()


def check_output(path: str | Path) -> Path:
    """``--out`` of ``regulab predict``, checked before the model is loaded: a path (new, or a
    regular file it replaces) in an existing folder this process can write."""
    if not str(path).strip() or "\0" in str(path):
        raise invalid("--out", "a file path", str(path), kind="argument")
    p = Path(path)
    if p.exists() and not p.is_file():
        raise invalid("--out", "a new file or a regular file to replace", str(path), kind="argument")
    if not p.parent.resolve().is_dir():
        raise invalid("--out", "a file in an existing folder", str(path), kind="argument")
    writable_dir(p.parent, f"--out {shown(path)}: its folder")
    return p


def write_predictions(path: str | Path, names: list[str], scores: np.ndarray, classes: list | None) -> Path:
    """A CSV: one row per sample -- its name, the predicted class and each class's probability,
    or the regression outputs."""
    path = Path(path)
    lines = []
    if classes is not None:
        lines.append(",".join(["input", "prediction", *(f"p_{c}" for c in classes)]))
        for name, row in zip(names, scores):
            lines.append(",".join([name, str(classes[int(row.argmax())]), *(f"{v:.6g}" for v in row)]))
    else:
        lines.append(",".join(["input", *(f"y{j}" for j in range(scores.shape[1]))]))
        lines += [",".join([name, *(f"{v:.6g}" for v in row)]) for name, row in zip(names, scores)]
    try:
        atomic_write(path, "\n".join(lines) + "\n")
    except OSError as e:
        raise RegulabInputError(f"argument '--out' cannot be written: '{path}' ({e.strerror})") from None
    return path
