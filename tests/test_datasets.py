"""Tests for regulab.data.datasets / regulab.data.files: built-ins, user files and their errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from regulab.data import builtins as datasets
from regulab.data.builtins import Builtin as DatasetInfo
from regulab.data.dataset import Dataset
from regulab.errors import DataError, RegulabInputError
from regulab.modalities.sources import BUILTINS, list_datasets, load_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never write to the user's real cache."""
    monkeypatch.setenv("REGULAB_CACHE", str(tmp_path / "cache"))


def error_of(spec, **kwargs) -> str:
    """The message of the bad-input error (DataError, or ConfigError for a value a [data] key
    refuses) that load_dataset raises; checks it is one line."""
    with pytest.raises(RegulabInputError) as info:
        load_dataset(spec, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------ built-ins

def test_list_datasets_has_the_eight_builtins():
    names = [i.name for i in list_datasets()]
    assert names == sorted(BUILTINS)
    assert set(names) == {"mnist1d", "mnist5k", "mnist", "digits", "moons", "sine", "late_delivery",
                          "rotten_tomatoes"}
    assert all(isinstance(i, DatasetInfo) and i.description for i in list_datasets())


@pytest.mark.parametrize("name, n, shape, classes", [
    ("digits", 1797, (1, 8, 8), 10),
    ("moons", 1000, (2,), 2),
    ("late_delivery", 11, (4,), 2),
    ("mnist5k", 5000, (1, 28, 28), 10),
])
def test_fixed_classification_builtins(name, n, shape, classes):
    ds = load_dataset(name)
    assert ds.name == name and ds.task == "classification"
    assert ds.X.shape == (n, *shape) and ds.X.dtype == np.float32
    assert ds.y.shape == (n,) and ds.y.dtype == np.int64
    assert ds.sample_shape == shape and ds.num_classes == ds.n_outputs == classes
    assert set(np.unique(ds.y)) == set(range(classes))
    assert ds.X_test is None and ds.y_test is None and ds.description
    if len(shape) == 3:  # images scaled to [0, 1]
        assert ds.X.min() == 0.0 and ds.X.max() == 1.0


def test_late_delivery_matches_notes_table():
    ds = load_dataset("late_delivery")
    assert ds.classes == ["on time", "late"]
    assert ds.feature_names == ["bad_weather", "is_rush_hour", "mile_distance", "urban_address"]
    np.testing.assert_allclose(ds.X[3], [1, 1, 4.2, 1])
    assert ds.y.tolist() == [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1]


def test_mnist_full_shapes():
    ds = load_dataset("mnist")
    assert ds.X.shape == (60000, 1, 28, 28) and ds.X.dtype == np.float32
    assert ds.y.shape == (60000,) and ds.y.dtype == np.int64
    assert ds.X_test.shape == (10000, 1, 28, 28) and ds.y_test.shape == (10000,)
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0 and ds.num_classes == 10


def test_mnist_unpickler_refuses_other_globals():
    import io
    import pickle

    payload = pickle.dumps(print)  # a global outside numpy's array helpers
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        datasets._NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    back = datasets._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arr, protocol=3))).load()
    np.testing.assert_array_equal(back, arr)


def test_sine_regression():
    ds = load_dataset("sine")
    assert ds.task == "regression" and ds.classes is None and ds.num_classes == 0
    assert ds.X.shape == (200, 1) and ds.y.shape == (200, 1) and ds.n_outputs == 1
    assert ds.X.dtype == ds.y.dtype == np.float32
    lo, hi = datasets.SINE_X_RANGE
    assert lo <= ds.X.min() and ds.X.max() <= hi
    noise = ds.y - np.sin(ds.X)  # y = sin(x) + N(0, 0.1^2)
    assert abs(noise.std() - datasets.SINE_NOISE_STD) < 0.03 and abs(noise.mean()) < 0.03


@pytest.mark.parametrize("name", ["moons", "sine"])
def test_generated_data_is_seeded_locally(name):
    np.random.seed(7)
    state = np.random.get_state()[1].copy()
    a = load_dataset(name, n_samples=300, seed=1)
    b = load_dataset(name, n_samples=300, seed=1)
    c = load_dataset(name, n_samples=300, seed=2)
    assert len(a.X) == 300
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched


@pytest.fixture(scope="module")
def mnist1d_default(tmp_path_factory):
    """One default mnist1d generation (~4 s), with the global RNG states around it."""
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("mnist1d_cache")
        mp.setenv("REGULAB_CACHE", str(cache))
        np.random.seed(123)
        random.seed(456)
        before = (np.random.get_state(), random.getstate())
        ds = load_dataset("mnist1d")
        after = (np.random.get_state(), random.getstate())
        yield cache, ds, before, after


def test_mnist1d_default_split(mnist1d_default):
    _, ds, _, _ = mnist1d_default
    assert ds.X.shape == (4000, 40) and ds.X_test.shape == (1000, 40)
    assert ds.y.shape == (4000,) and ds.y_test.shape == (1000,)
    assert ds.X.dtype == np.float32 and ds.y.dtype == np.int64 and ds.num_classes == 10
    assert ds.sample_shape == (40,)


def test_mnist1d_restores_global_rng_state(mnist1d_default):
    _, _, (np_before, py_before), (np_after, py_after) = mnist1d_default
    np.testing.assert_array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert py_before == py_after


def test_mnist1d_cache_hit_is_identical(mnist1d_default, monkeypatch):
    cache, ds, _, _ = mnist1d_default
    assert (cache / "mnist1d_n5000_seed42.npz").is_file()
    monkeypatch.setenv("REGULAB_CACHE", str(cache))

    def no_generation(n):
        raise AssertionError("cache miss: mnist1d was generated again")

    monkeypatch.setattr(datasets, "_generate_mnist1d", no_generation)
    again = load_dataset("mnist1d")
    for key in ("X", "y", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, key), getattr(ds, key))


def test_mnist1d_n_samples_and_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REGULAB_CACHE", str(tmp_path))
    small = load_dataset("mnist1d", n_samples=500)
    assert small.X.shape == (400, 40) and small.X_test.shape == (100, 40)
    path = tmp_path / "mnist1d_n500_seed42.npz"
    path.write_bytes(b"not a zip file")  # unreadable cache -> regenerated
    again = load_dataset("mnist1d", n_samples=500)
    np.testing.assert_array_equal(again.X, small.X)
    assert np.load(path, allow_pickle=False)["X"].shape == (400, 40)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_builtin_argument_errors():
    msg = error_of("mnsit")
    assert "data.dataset" in msg and "'mnsit'" in msg and "did you mean 'mnist'?" in msg
    assert "csv:PATH" in msg
    msg = error_of("digits", n_samples=100)
    assert "data.n_samples" in msg and "100" in msg and "moons" in msg
    msg = error_of("mnist1d", n_samples=505)
    assert "data.n_samples" in msg and "505" in msg and "multiple of 10" in msg
    msg = error_of("digits", task="regresion")
    assert "data.task" in msg and "'regresion'" in msg and "did you mean 'regression'?" in msg
    msg = error_of("sine", task="classification")
    assert "data.task" in msg and "'classification'" in msg and "regression" in msg
    msg = error_of("moons", target="y")
    assert "data.target" in msg and "'y'" in msg and "csv" in msg
    msg = error_of("moons", seed=-1)
    assert "data.seed" in msg and "-1" in msg
    msg = error_of("tsv:data.tsv")
    assert "'tsv:data.tsv'" in msg and "csv:PATH" in msg and "did you mean 'csv'" in msg


# ------------------------------------------------------------------------------------------ csv

def write(path, text):
    path.write_text(text)
    return path


def test_csv_classification_with_string_labels(tmp_path):
    f = write(tmp_path / "d.csv", "age,height,label\n30,1.7,dog\n40,1.8,cat\n\n50,1.6,dog\n")
    ds = load_dataset(f"csv:{f}", target="label")
    assert ds.name == f"csv:{f}" and ds.task == "classification"
    assert ds.classes == ["cat", "dog"] and ds.y.tolist() == [1, 0, 1]
    assert ds.feature_names == ["age", "height"]
    assert ds.X.dtype == np.float32 and ds.X.shape == (3, 2)
    np.testing.assert_allclose(ds.X[1], [40, 1.8])


def test_csv_integer_labels_sort_numerically(tmp_path):
    f = write(tmp_path / "d.csv", "a,t\n1,10\n2,2\n3,10\n4,2.0\n")
    ds = load_dataset(f"csv:{f}", target="t")
    assert ds.task == "classification" and ds.classes == ["2", "10"] and ds.y.tolist() == [1, 0, 1, 0]


def test_csv_regression(tmp_path):
    f = write(tmp_path / "d.csv", "x,y\n" + "".join(f"{i},{i * 0.5 + 0.1}\n" for i in range(60)))
    ds = load_dataset(f"csv:{f}", target="y")
    assert ds.task == "regression" and ds.classes is None and ds.n_outputs == 1
    assert ds.y.shape == (60, 1) and ds.y.dtype == np.float32
    np.testing.assert_allclose(ds.y[:, 0], np.arange(60) * 0.5 + 0.1, rtol=1e-6)
    forced = load_dataset(f"csv:{f}", target="x", task="regression")  # integer target, forced
    assert forced.task == "regression" and forced.y.shape == (60, 1)


def test_csv_errors(tmp_path):
    f = write(tmp_path / "d.csv", "age,height,label\n30,1.7,a\n40,NaN,b\n50,1.6,a\n")
    msg = error_of(f"csv:{f}", target="lable")
    assert "data.target" in msg and "'lable'" in msg and "did you mean 'label'?" in msg
    assert "age, height, label" in msg
    msg = error_of(f"csv:{f}")
    assert "data.target" in msg and "none" in msg and "label" in msg
    msg = error_of(f"csv:{f}", target="label")
    assert str(f) in msg and "'height'" in msg and "row 2" in msg and "missing" in msg

    f = write(tmp_path / "e.csv", "age,city,label\n30,1,a\n40,,b\n")
    msg = error_of(f"csv:{f}", target="label")
    assert "'city'" in msg and "row 2" in msg and "empty cell" in msg

    f = write(tmp_path / "s.csv", "age,city,label\n30,1,a\n40,Paris,b\n")
    msg = error_of(f"csv:{f}", target="label")
    assert str(f) in msg and "'city'" in msg and "not numeric" in msg and "'Paris'" in msg and "row 2" in msg

    msg = error_of(f"csv:{f}", target="age", task="regression")  # fine: numeric target
    assert "'city'" in msg
    f = write(tmp_path / "r.csv", "a,b\n1,x\n2,y\n")
    msg = error_of(f"csv:{f}", target="b", task="regression")
    assert "data.task" in msg and "'x'" in msg and "numeric" in msg

    msg = error_of(f"csv:{tmp_path / 'missing.csv'}", target="a")
    assert "data.dataset" in msg and "missing.csv" in msg and "does not exist" in msg
    cases = [("empty.csv", "", "is empty"), ("h.csv", "a,b\n", "no data rows"),
             ("w.csv", "a,b\n1,2\n3\n", "line 3 has 1 fields"),
             ("one.csv", "a,b\n1,0\n2,0\n", "at least 2 classes")]
    for name, text, expected in cases:
        msg = error_of(f"csv:{write(tmp_path / name, text)}", target="b")
        assert name in msg and expected in msg
    msg = error_of(f"csv:{f}", target="b", n_samples=10)
    assert "data.n_samples" in msg and "10" in msg
    # finite in float64 but not in float32, which the run computes in: refused, not trained on inf
    big = write(tmp_path / "big.csv", "a,b\n1e300,0\n2,1\n")
    msg = error_of(f"csv:{big}", target="b")
    assert "'a'" in msg and "'1e300'" in msg and "row 1" in msg and "float32" in msg


# ------------------------------------------------------------------------------------------ npz

def test_npz_classification_and_regression(tmp_path):
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(20, 3, 4)), rng.normal(size=(5, 3, 4))
    f = tmp_path / "c.npz"
    np.savez(f, X=X, y=np.arange(20) % 3, X_test=Xt, y_test=np.array([0, 1, 2, 3, 0]))
    ds = load_dataset(f"npz:{f}")
    assert ds.task == "classification" and ds.classes == ["0", "1", "2", "3"]  # C = max + 1
    assert ds.X.dtype == np.float32 and ds.sample_shape == (3, 4) and ds.y.dtype == np.int64
    assert ds.X_test.shape == (5, 3, 4) and ds.y_test.tolist() == [0, 1, 2, 3, 0]
    np.testing.assert_allclose(ds.X, X.astype(np.float32))

    f = tmp_path / "r.npz"
    np.savez(f, X=X.reshape(20, -1), y=rng.normal(size=20))
    ds = load_dataset(f"npz:{f}")
    assert ds.task == "regression" and ds.y.shape == (20, 1) and ds.y.dtype == np.float32
    np.savez(f, X=X.reshape(20, -1), y=rng.normal(size=(20, 2)))
    assert load_dataset(f"npz:{f}").n_outputs == 2
    np.savez(f, X=X.reshape(20, -1), y=np.arange(20.0) % 2)  # float labels, forced
    ds = load_dataset(f"npz:{f}", task="classification")
    assert ds.y.dtype == np.int64 and ds.num_classes == 2


def test_npz_errors(tmp_path):
    X = np.zeros((4, 2), dtype=np.float32)
    f = tmp_path / "d.npz"
    np.savez(f, X=X, labels=np.zeros(4))
    msg = error_of(f"npz:{f}")
    assert str(f) in msg and "'y'" in msg and "labels" in msg and "X" in msg

    np.savez(f, X=X, y=np.zeros(3, dtype=np.int64))
    msg = error_of(f"npz:{f}")
    assert str(f) in msg and "4 samples" in msg and "has 3" in msg

    np.savez(f, X=np.array([[1], "a"], dtype=object), y=np.zeros(2, dtype=np.int64))
    msg = error_of(f"npz:{f}")
    assert str(f) in msg and "'X'" in msg and "object" in msg

    np.savez(f, X=X, y=np.array([0, 1, -1, 2]))
    msg = error_of(f"npz:{f}")
    assert str(f) in msg and "labels out of range" in msg and "-1" in msg and "index 2" in msg
    np.savez(f, X=X, y=np.array([0, 1, 0.5, 1]))
    msg = error_of(f"npz:{f}", task="classification")
    assert "labels out of range" in msg and "0.5" in msg

    bad = X.copy()
    bad[2, 1] = np.nan
    np.savez(f, X=bad, y=np.array([0, 1, 0, 1]))
    msg = error_of(f"npz:{f}")
    assert "'X'" in msg and "nan" in msg and "(2, 1)" in msg

    big = X.astype(np.float64)
    big[1, 0] = -1e300      # beyond float32, which the run computes in
    np.savez(f, X=big, y=np.array([0, 1, 0, 1]))
    msg = error_of(f"npz:{f}")
    assert "'X'" in msg and "-1e+300" in msg and "(1, 0)" in msg and "float32" in msg
    np.savez(f, X=X, y=np.array([0, 1, 0, 1]))
    data = bytearray(f.read_bytes())
    data[120] ^= 0xFF       # inside X's compressed bytes: a damaged member, not a damaged archive
    f.write_bytes(bytes(data))
    msg = error_of(f"npz:{f}")
    assert str(f) in msg and ("'X'" in msg or "'y'" in msg) and "cannot be read" in msg

    np.savez(f, X=X, y=np.array([0, 1, 0, 1]), X_test=X)
    assert "y_test" in error_of(f"npz:{f}")
    np.save(tmp_path / "a.npy", X)
    msg = error_of(f"npz:{tmp_path / 'a.npy'}")
    assert "a.npy" in msg and "np.savez" in msg
    msg = error_of(f"npz:{tmp_path / 'nope.npz'}")
    assert "data.dataset" in msg and "nope.npz" in msg and "does not exist" in msg


# --------------------------------------------------------------------------------------- images

def make_images(root, sizes, mode="L"):
    """root/<class>/<i>.png images with a known pixel value each."""
    for cls, files in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, size in enumerate(files):
            color = 255 if mode == "L" else (255, 0, 51)
            Image.new(mode, size, color=color if i == 0 else 0).save(root / cls / f"{i}.png")
    return root


def test_images_grayscale_and_rgb(tmp_path):
    root = make_images(tmp_path / "gray", {"cat": [(6, 4)] * 2, "dog": [(6, 4)] * 3})
    (root / "dog" / "notes.txt").write_text("ignored: not an image suffix")
    ds = load_dataset(f"images:{root}")
    assert ds.task == "classification" and ds.classes == ["cat", "dog"]
    assert ds.X.shape == (5, 1, 4, 6) and ds.X.dtype == np.float32  # (N, C, H, W)
    assert ds.y.tolist() == [0, 0, 1, 1, 1]
    assert ds.X[0].min() == 1.0 and ds.X[1].max() == 0.0

    root = make_images(tmp_path / "rgb", {"a": [(3, 3)], "b": [(3, 3)]}, mode="RGB")
    ds = load_dataset(f"images:{root}")
    assert ds.X.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(ds.X[0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_images_errors(tmp_path):
    root = make_images(tmp_path / "m", {"cat": [(8, 8), (8, 8)], "dog": [(8, 8), (9, 8)]})
    msg = error_of(f"images:{root}")
    assert "dog/1.png" in msg and "9x8" in msg and "8x8" in msg and "same size" in msg

    root = make_images(tmp_path / "one", {"cat": [(4, 4)]})
    msg = error_of(f"images:{root}")
    assert str(root) in msg and "at least 2" in msg and "'cat'" in msg

    root = make_images(tmp_path / "bad", {"a": [(4, 4)], "b": [(4, 4)]})
    (root / "b" / "broken.png").write_bytes(b"not a png")
    msg = error_of(f"images:{root}")
    assert "b/broken.png" in msg and "cannot be read" in msg

    msg = error_of(f"images:{tmp_path / 'nowhere'}")
    assert "data.dataset" in msg and "nowhere" in msg and "does not exist" in msg
    msg = error_of(f"images:{root}", task="regression")
    assert "data.task" in msg and "'regression'" in msg


def test_dataset_properties_and_validation():
    ds = Dataset("t", np.zeros((3, 2), np.float32), np.zeros((3, 4), np.float32), "regression", None)
    assert ds.n_outputs == 4 and ds.num_classes == 0 and ds.sample_shape == (2,)
    with pytest.raises(DataError, match="Dataset.task"):
        Dataset("t", np.zeros((3, 2)), np.zeros(3), "clustering", None)
    with pytest.raises(DataError, match="3 samples but y has 2"):
        Dataset("t", np.zeros((3, 2)), np.zeros(2), "regression", None)
