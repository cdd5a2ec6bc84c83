"""Readers for user data: ``csv:PATH`` and ``npz:PATH`` -> :class:`Dataset` (``images:DIR`` is
read by the image modality, ``regulab.modalities.image.reader``).

csv: a header row; ``target`` names the label column, every other column is a numeric
feature. Missing cells (empty, nan, NA, N/A, null, None) are refused, never imputed.
Task "auto" picks classification when the target is non-numeric, or integer-valued with at
most ``MAX_AUTO_CLASSES`` distinct values; otherwise regression. Class labels are the sorted
unique target values, encoded 0..C-1 (numbers sort numerically).

csv with ``split_column`` (``data.split_column``): that column says each row's split -- ``train``,
``val`` or ``test`` -- and is not a feature; the split is kept as given (``data.split`` is not
used), with no validation split when no row says ``val``.

npz: arrays ``X`` and ``y``, optional ``X_test``/``y_test`` (kept as THE test set) and
``X_val``/``y_val`` (kept as THE validation set: ``X``/``y`` are then all trained on);
loaded with ``allow_pickle=False``.
Task "auto": integer (or bool) ``y`` -> classification, with labels already 0..C-1 (C = max+1,
at most ``checks.MAX_CLASSES``: labels are taken as given, never remapped);
float ``y`` -> regression.
"""

from __future__ import annotations

import contextlib
import csv
import math
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from regulab.checks import FLOAT32_MAX, MAX_CLASSES
from regulab.data.dataset import Dataset
from regulab.errors import DataError, did_you_mean, reason
from regulab.paths import DATA_BYTES, directory, regular_file, shown

__all__ = ["read_csv", "read_features", "read_npz", "open_npz", "npz_array", "check_features", "labels",
           "existing_path", "class_folders", "MAX_AUTO_CLASSES"]

MAX_AUTO_CLASSES = 50
_MISSING = {"", "nan", "na", "n/a", "null", "none"}


def existing_path(path_text: str, source: str) -> Path:
    """The path of a ``source:PATH`` spec, checked to exist and be a file (csv/npz) or a folder."""
    if not path_text.strip():
        raise DataError(f"data.dataset: '{source}:' has no path; write {source}:PATH")
    path = Path(path_text).expanduser()
    what = "directory" if source == "images" else "file"
    if not path.exists():
        raise DataError(f"data.dataset: {what} '{path_text}' does not exist")
    if source == "images" and not path.is_dir():
        raise DataError(f"data.dataset: '{path_text}' is not a directory; images:DIR needs a "
                        "folder with one sub-folder per class")
    if source != "images" and not path.is_file():
        raise DataError(f"data.dataset: '{path_text}' is not a file; {source}:PATH needs a .{source} file")
    if source == "images":
        return directory(path, "data.dataset: directory")      # its entries can be listed
    return regular_file(path, "data.dataset: file", max_bytes=DATA_BYTES)   # readable, bounded


def class_folders(root: Path, where: str, suffixes: tuple[str, ...],
                  what: str = "files") -> tuple[list[tuple[Path, int]], list[str]]:
    """A folder of class sub-folders (hidden ones left out, sorted by name: the classes) ->
    ``([(file, label), ...], class names)`` of the files ending in ``suffixes``; fewer than 2
    classes, or a class without such files, is a ``DataError`` naming ``where``."""
    try:
        return _class_folders(root, where, suffixes, what)
    except OSError as e:      # a folder or file that cannot be read (images:/proc)
        raise DataError(f"{where}: {shown(e.filename or root)} cannot be read ({e.strerror or e})") from None


def _class_folders(root: Path, where: str, suffixes: tuple[str, ...],
                   what: str) -> tuple[list[tuple[Path, int]], list[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{where}: has {len(class_dirs)} class sub-folder(s) {[d.name for d in class_dirs]}; "
                        "needs one sub-folder per class, at least 2")
    samples = []
    for label, d in enumerate(class_dirs):
        found = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        if not found:
            raise DataError(f"{where}: class folder '{d.name}' has no {'/'.join(suffixes)} {what}")
        samples += [(f, label) for f in found]
    return samples, [d.name for d in class_dirs]


def _check_classes(where: str, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(f"{where}: the labels have {len(classes)} distinct value(s) {classes}; "
                        "classification needs at least 2 classes")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{where}: the labels have {len(classes)} distinct values; classification "
                        f"allows at most {MAX_CLASSES} classes (MAX_CLASSES)")


def _number_text(v: float) -> str:
    """Class name of a numeric label: '3' for 3.0, '0.5' for 0.5."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


# ----------------------------------------------------------------------------------------- csv

def _parse_numbers(cells: list[str], lines: list[int], column: str, where: str) -> np.ndarray:
    """Parse one column to float64, or raise naming the column and the first bad cell."""
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        if cell.lower() in _MISSING:
            shown = "an empty cell" if cell == "" else f"a missing value ({cell})"
            raise DataError(f"{where}: column '{column}' has {shown} at row {i + 1} (line {lines[i]}); "
                            "clean the file or drop the column")
        try:
            out[i] = float(cell)
        except ValueError:
            raise DataError(f"{where}: column '{column}' is not numeric: value {cell!r} at row {i + 1} "
                            f"(line {lines[i]}); feature columns must be numbers") from None
        if not math.isfinite(out[i]) or abs(out[i]) > FLOAT32_MAX:     # computed in float32
            raise DataError(f"{where}: column '{column}' has a non-finite value {cell!r} at row "
                            f"{i + 1} (line {lines[i]}); allowed: finite numbers (at most {FLOAT32_MAX:.4g} "
                            "in size: float32)")
    return out


def _read_rows(path: Path, where: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows (cells stripped, blank lines skipped) and each row's line number."""
    rows, lines = [], []
    regular_file(path, "data file", max_bytes=DATA_BYTES)     # no FIFO, no device, bounded
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append([cell.strip() for cell in row])
                    lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise DataError(f"{where}: is not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as e:
        raise DataError(f"{where}: is not valid CSV ({e})") from None
    if not rows:
        raise DataError(f"{where}: is empty; a header row and at least one data row are needed")
    header, rows, lines = rows[0], rows[1:], lines[1:]
    if not rows:
        raise DataError(f"{where}: has a header but no data rows")
    for name in header:
        if not name or header.count(name) > 1:
            raise DataError(f"{where}: header column {name!r} is empty or repeated; "
                            "every column needs a unique name")
    for row, line in zip(rows, lines):
        if len(row) != len(header):
            raise DataError(f"{where}: line {line} has {len(row)} fields but the header has "
                            f"{len(header)}; every row needs one value per column")
    return header, rows, lines


def _features(cols: dict[str, list[str]], features: list[str], lines: list[int], where: str) -> np.ndarray:
    """The feature columns as an ``(N, F)`` float64 array."""
    return np.stack([_parse_numbers(cols[c], lines, c, where) for c in features], axis=1)


def read_features(path: Path, leave_out: Iterable[str | None], where: str) -> np.ndarray:
    """Every column of the CSV file ``path`` but those in ``leave_out``, as an ``(N, F)`` float64
    array (a trained run's inputs: ``regulab predict``); the errors of ``read_csv``."""
    header, rows, lines = _read_rows(path, where)
    features = [c for c in header if c not in set(leave_out)]
    if not features:
        raise DataError(f"{where}: has no feature column (left out: {', '.join(c for c in leave_out if c)})")
    cols = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    return _features(cols, features, lines, where)


def read_csv(spec: str, path_text: str, *, target: str | None, task: str,
             split_column: str | None = None) -> Dataset:
    """Read ``csv:PATH``: numeric feature columns plus the ``target`` column (and the
    ``split_column``, which says each row's split: train, val or test)."""
    path = existing_path(path_text, "csv")
    where = f"csv file '{path_text}'"
    header, rows, lines = _read_rows(path, where)
    if target is None or target not in header:
        got = "none" if target is None else repr(target)
        hint = "" if target is None else did_you_mean(target, header)
        raise DataError(f"data.target: got {got}{hint}; csv:PATH needs the target column, one of: "
                        f"{', '.join(header)} (in {where})")
    if split_column is not None and (split_column not in header or split_column == target):
        raise DataError(f"data.split_column: got {split_column!r}"
                        f"{did_you_mean(split_column, header)}; allowed: a column of {where} other than "
                        f"the target: {', '.join(c for c in header if c != target)}")
    features = [c for c in header if c not in (target, split_column)]
    if not features:
        raise DataError(f"{where}: has only the target column '{target}'; at least one feature "
                        "column is needed")
    cols = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    X = _features(cols, features, lines, where)

    labels = cols[target]
    missing = [i for i, v in enumerate(labels) if v.lower() in _MISSING]
    if missing:
        i = missing[0]
        raise DataError(f"{where}: target column '{target}' has a missing value {labels[i]!r} at row "
                        f"{i + 1} (line {lines[i]}); clean the file or drop the row")
    try:
        values = np.asarray([float(v) for v in labels])
        numeric = bool(np.isfinite(values).all())
    except ValueError:
        values, numeric = None, False
    if task == "auto":
        small_int = numeric and np.all(values == np.round(values)) and len(np.unique(values)) <= MAX_AUTO_CLASSES
        task = "classification" if not numeric or small_int else "regression"
    if task == "regression":
        if not numeric:
            bad = next(i for i, v in enumerate(labels) if not _is_finite_number(v))
            raise DataError(f"data.task: 'regression' needs a numeric target, but column '{target}' of "
                            f"{where} has {labels[bad]!r} at row {bad + 1} (line {lines[bad]}); "
                            "allowed: auto, classification")
        y, classes = values.astype(np.float32).reshape(-1, 1), None
    elif numeric:
        uniq = np.unique(values)  # numeric sort: 2 before 10
        y, classes = np.searchsorted(uniq, values).astype(np.int64), [_number_text(u) for u in uniq]
    else:
        uniq = sorted(set(labels))
        index = {v: i for i, v in enumerate(uniq)}
        y, classes = np.asarray([index[v] for v in labels], dtype=np.int64), uniq
    if classes is not None:
        _check_classes(f"{where}: target '{target}'", classes)
    ds = Dataset(spec, X.astype(np.float32), y, task, classes, feature_names=features,
                 description=f"{where}: {len(rows)} rows, {len(features)} numeric features, "
                             f"target '{target}' ({task})")
    return ds if split_column is None else _split_by_column(ds, cols[split_column], lines, split_column, where)


SPLIT_VALUES = ("train", "val", "test")


def _split_by_column(ds: Dataset, values: list[str], lines: list[int], column: str, where: str) -> Dataset:
    """``ds`` with its rows split as the column ``values`` say: the train rows are the pool,
    the val rows THE validation set (empty when there are none: no validation split), the
    test rows THE test set (None when there are none)."""
    values = [v.lower() for v in values]
    bad = next((i for i, v in enumerate(values) if v not in SPLIT_VALUES), None)
    if bad is not None:
        raise DataError(f"data.split_column: column '{column}' of {where} has {values[bad]!r} at row "
                        f"{bad + 1} (line {lines[bad]}); allowed: {', '.join(SPLIT_VALUES)}")
    rows = {s: np.flatnonzero(np.asarray(values) == s) for s in SPLIT_VALUES}
    if not len(rows["train"]):
        raise DataError(f"data.split_column: column '{column}' of {where} marks no row 'train'; "
                        "allowed: at least one training row")
    test = rows["test"] if len(rows["test"]) else None
    return Dataset(ds.name, ds.X[rows["train"]], ds.y[rows["train"]], ds.task, ds.classes,
                   X_val=ds.X[rows["val"]], y_val=ds.y[rows["val"]],
                   X_test=None if test is None else ds.X[test], y_test=None if test is None else ds.y[test],
                   feature_names=ds.feature_names,
                   description=f"{ds.description}; split by column '{column}': "
                               + ", ".join(f"{len(r)} {s}" for s, r in rows.items()))


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------- npz

@contextlib.contextmanager
def open_npz(path: Path, where: str) -> Iterator:
    """The .npz archive at ``path`` (``np.load``, no pickle), open for the block; a file that
    is no .npz archive raises ``DataError`` naming ``where``. The file is opened here, so that
    it is closed when NumPy fails on it (``np.load`` leaves its own file open when the zip
    directory is damaged)."""
    with open(path, "rb") as f:
        try:
            archive = np.load(f, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{where}: cannot be read as a NumPy .npz archive ({type(e).__name__}); "
                            "save it with np.savez(path, X=..., y=...)") from None
        if isinstance(archive, np.ndarray):
            raise DataError(f"{where}: holds a single .npy array, not an .npz archive; "
                            "save it with np.savez(path, X=..., y=...)")
        with archive:
            yield archive


def npz_array(archive, key: str, where: str) -> np.ndarray:
    """Array ``key`` of an ``open_npz`` archive; an object (pickled) array or a damaged member
    raises ``DataError``."""
    try:
        return archive[key]
    except ValueError as e:
        if "pickle" not in str(e):      # a member whose header or data is damaged
            raise DataError(f"{where}: array '{key}' cannot be read ({reason(e)})") from None
        raise DataError(f"{where}: array '{key}' is an object (pickled) array, refused for safety; "
                        "save plain numeric arrays (e.g. X.astype(np.float32))") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{where}: array '{key}' cannot be read ({type(e).__name__}: the archive is "
                        "damaged)") from None


def _check_finite(arr: np.ndarray, key: str, where: str) -> None:
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:    # its values compute in float32
        with np.errstate(invalid="ignore"):
            bad = np.argwhere(~np.isfinite(arr) | (np.abs(arr) > FLOAT32_MAX))
    else:
        bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        raise DataError(f"{where}: array '{key}' has a non-finite value ({arr[idx]}) at index {idx}; "
                        f"allowed: finite numbers (at most {FLOAT32_MAX:.4g} in size: float32)")


def check_features(X: np.ndarray, key: str, where: str) -> np.ndarray:
    """``X`` as float32 features: a bool, int or float array of finite numbers within float32;
    else ``DataError`` naming ``where``, ``key`` and the first bad value."""
    if X.dtype.kind not in "biuf":
        raise DataError(f"{where}: array '{key}' has dtype {X.dtype}; allowed: bool, int or float")
    _check_finite(X, key, where)
    return X.astype(np.float32)


def _check_labels(y: np.ndarray, key: str, where: str) -> None:
    """Classification labels must be 1-D integers >= 0 (float values must be whole numbers)."""
    if y.ndim != 1:
        raise DataError(f"{where}: array '{key}' has shape {y.shape}; classification labels must "
                        "have shape (N,)")
    bad = np.flatnonzero(~np.isfinite(y) | (y < 0) | (y != np.round(y))) if y.dtype.kind == "f" \
        else np.flatnonzero(y < 0)
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where}: labels out of range: '{key}' has {y[i]!r} at index {i}; "
                        "classification labels must be integers 0..C-1")


def labels(ys: dict[str, np.ndarray], task: str, where: str) -> tuple[dict[str, np.ndarray], str, list[str] | None]:
    """Labels or targets of each split (``{"y": ..., "y_test": ...}``, numeric arrays) checked
    and typed for ``task`` -- "auto": integer (or bool) -> classification with labels already
    0..C-1 (C = max + 1 over the splits), float -> regression, (N, k) float32 -- and the class
    names; ``where`` names the data in errors."""
    if task == "auto":
        task = "regression" if next(iter(ys.values())).dtype.kind == "f" else "classification"
    if task == "classification":
        for k in ys:
            _check_labels(ys[k], k, where)
            if len(ys[k]) and ys[k].max() >= MAX_CLASSES:   # before a list of max + 1 class names
                i = int(ys[k].argmax())
                raise DataError(f"{where}: labels out of range: '{k}' has {int(ys[k][i])} at index {i}; "
                                f"classification labels must be integers 0..K-1 with K <= {MAX_CLASSES} "
                                "(MAX_CLASSES; map other labels with np.unique(y, return_inverse=True))")
            ys[k] = ys[k].astype(np.int64)
        classes = [str(c) for c in range(int(max(y.max() for y in ys.values())) + 1)]
        _check_classes(where, classes)
        return ys, task, classes
    for k in ys:
        y = ys[k].astype(np.float32)
        if y.ndim not in (1, 2):
            raise DataError(f"{where}: array '{k}' has shape {y.shape}; regression targets must be "
                            "(N,) or (N, k)")
        _check_finite(y, k, where)
        ys[k] = y.reshape(len(y), -1)  # always (N, k)
    return ys, task, None


def read_npz(spec: str, path_text: str, *, task: str) -> Dataset:
    """Read ``npz:PATH``: arrays X, y and optionally X_val, y_val and X_test, y_test."""
    path = existing_path(path_text, "npz")
    where = f"npz file '{path_text}'"
    with open_npz(path, where) as archive:
        keys = list(archive.files)
        for key in ("X", "y"):
            if key not in keys:
                raise DataError(f"{where}: missing array '{key}'; arrays present: "
                                f"{', '.join(keys) or 'none'} (needs X and y, optional X_val, y_val, "
                                "X_test, y_test)")
        for part in ("val", "test"):
            if (f"X_{part}" in keys) != (f"y_{part}" in keys):
                raise DataError(f"{where}: has only one of X_{part} / y_{part} (arrays: "
                                f"{', '.join(keys)}); give both or neither")
        arrays = {k: npz_array(archive, k, where) for k in ("X", "y", "X_val", "y_val", "X_test", "y_test")
                  if k in keys}

    for xk, yk in (("X", "y"), ("X_val", "y_val"), ("X_test", "y_test")):
        if xk not in arrays:
            continue
        X, y = arrays[xk], arrays[yk]
        check_features(X, xk, where)
        if X.ndim < 2 or len(X) == 0:
            raise DataError(f"{where}: array '{xk}' has shape {X.shape}; allowed: (N, *sample_shape) "
                            "with N >= 1 (one feature: X.reshape(-1, 1))")
        if X.shape[1:] != arrays["X"].shape[1:]:
            raise DataError(f"{where}: '{xk}' samples have shape {X.shape[1:]} but 'X' samples have "
                            f"{arrays['X'].shape[1:]}; they must match")
        if y.ndim == 0:
            raise DataError(f"{where}: array '{yk}' has shape (); allowed: (N,) or (N, k), one row per "
                            f"sample of '{xk}'")
        if len(X) != len(y):
            raise DataError(f"{where}: '{xk}' has {len(X)} samples but '{yk}' has {len(y)}; they must match")
        if y.dtype.kind not in "biuf":
            raise DataError(f"{where}: array '{yk}' has dtype {y.dtype}; allowed: integer labels "
                            "(classification) or floats (regression)")

    ys, task, classes = labels({k: arrays[k] for k in ("y", "y_val", "y_test") if k in arrays}, task, where)
    arrays.update(ys)
    X_val, X_test = arrays.get("X_val"), arrays.get("X_test")
    return Dataset(spec, arrays["X"].astype(np.float32), arrays["y"], task, classes,
                   X_val=None if X_val is None else X_val.astype(np.float32), y_val=arrays.get("y_val"),
                   X_test=None if X_test is None else X_test.astype(np.float32),
                   y_test=arrays.get("y_test"),
                   description=f"{where}: {len(arrays['X'])} samples of shape {arrays['X'].shape[1:]}"
                               f"{'' if X_val is None else f' + {len(X_val)} validation'}"
                               f"{'' if X_test is None else f' + {len(X_test)} test'} ({task})")
