"""The user's own data (issue 13): ``data.dataset = "python:FILE.py:NAME"`` and ``data=`` from
Python in every form (a torch Dataset, a dict of splits, arrays, DataLoaders); bad data refused
in one line with nothing written; streamed data (``data.resident``) giving the resident run's
numbers, resuming exactly, training alone in a population, staying within a memory budget
four times smaller than the data, and sharded over 2 data-parallel processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import regulab as rl
from regulab.cli import main
from regulab.data.preprocess import Preprocessor
from regulab.data.stream import Rows, StreamLoader, Streamed
from regulab.data.loader import TensorLoader
from regulab.runs.population import train_population
from regulab.runs.prepare import prepare

from .conftest import (REPO, assert_refused, assert_resume_exact, metrics_rows, subprocess_env, untimed_results,
                       write)

# the user's file: deterministic samples generated per index, never all held at once
DATA_PY = '''
import numpy as np
import torch


class Blobs(torch.utils.data.Dataset):
    """Three Gaussian blobs in d dimensions; item i is generated from (seed, i)."""

    def __init__(self, n=240, d=6, seed=0, regression=False):
        self.n, self.d, self.seed, self.regression = n, d, seed, regression

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = np.random.default_rng([self.seed, i])
        label = i % 3
        x = g.normal(size=self.d).astype(np.float32) + label
        return torch.from_numpy(x), (float(x.sum()) if self.regression else label)


def blobs():
    return Blobs()


def splits():
    return {"train": Blobs(200), "val": Blobs(60, seed=1), "test": Blobs(60, seed=2)}


def train_and_test():
    return {"train": Blobs(200), "test": Blobs(60, seed=2)}


def arrays():
    ds = Blobs()
    return np.stack([ds[i][0].numpy() for i in range(len(ds))]), np.arange(len(ds)) % 3


def loader():
    return torch.utils.data.DataLoader(Blobs(), batch_size=7, shuffle=True)


def regression():
    return Blobs(regression=True)


def images():
    class Pictures(torch.utils.data.Dataset):
        def __len__(self):
            return 90

        def __getitem__(self, i):
            g = np.random.default_rng(i)
            return g.random((3, 8, 8), dtype=np.float32) + (i % 2) * 0.5, i % 2
    return Pictures()


def raises():
    raise RuntimeError("the disk is not mounted")


def wrong_type():
    return 42


def mismatched():
    return np.zeros((10, 3), np.float32), np.zeros(9, np.int64)


def bad_keys():
    return {"trian": Blobs()}


not_a_function = 3
'''

CONFIG = """
name = "mine"
[data]
dataset = "python:data.py:{name}"
preprocess = "standardize"
workers = {workers}
{extra}
[model]
hidden = [8]
[optim]
name = "adam"
lr = 0.01
[train]
epochs = 3
batch_size = 16
device = "cpu"
early_stopping = false
progress = false
"""


def config_file(folder: Path, name: str = "blobs", workers: int = 0, extra: str = "") -> Path:
    write(folder / "data.py", DATA_PY)
    return write(folder / "mine.toml", CONFIG.format(name=name, workers=workers, extra=extra))


def _close(a: dict, b: dict, rel: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert b[k] == (pytest.approx(v, rel=rel, abs=1e-7) if isinstance(v, float) else v), k


def _same_runs(one: Path, two: Path, epochs: int = 3) -> None:
    """Two runs' metrics.csv and results.json agree within float tolerance."""
    a, b = metrics_rows(one), metrics_rows(two)
    assert len(a) == len(b) == epochs
    for ra, rb in zip(a, b):
        _close(ra, rb)
    _close(untimed_results(one), untimed_results(two))


# -- every form, from a config file and from Python ---------------------------------------------------

@pytest.mark.parametrize("name, n_train, task", [
    ("blobs", 192, "classification"),          # one torch Dataset: split by data.split
    ("splits", 200, "classification"),         # its own train/val/test: kept
    ("train_and_test", 168, "classification"),  # its own test; train split into train and val
    ("arrays", 192, "classification"),
    ("loader", 192, "classification"),         # the DataLoader's dataset
    ("regression", 192, "regression"),
    ("images", 71, "classification"),          # (C, H, W) samples: the image modality
])
def test_each_form_trains_from_the_command_line(workdir, name, n_train, task):
    cfg = config_file(workdir / "project", name)
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert results["n_train"] == n_train
    assert ("train_r2" in results) == (task == "regression")
    assert 'dataset = "python:' in (workdir / "out" / "config.toml").read_text()


def test_a_module_on_the_path_is_named_by_its_dotted_name(workdir, monkeypatch):
    cfg = config_file(workdir / "project")
    (workdir / "project" / "data.py").rename(workdir / "project" / "my_user_data.py")
    monkeypatch.syspath_prepend(str(workdir / "project"))
    assert main(["train", str(cfg), "--out", "out", "--quiet", "--set",
                 "data.dataset=python:my_user_data:splits"]) == 0
    assert json.loads((workdir / "out" / "results.json").read_text())["n_train"] == 200


def test_each_form_trains_from_python(workdir):
    namespace: dict = {}
    exec(compile(DATA_PY, "data.py", "exec"), namespace)
    Blobs = namespace["Blobs"]
    cfg = rl.load_config(config_file(workdir, "blobs"))
    X, y = namespace["arrays"]()
    forms = {"dataset": Blobs(), "dict": {"train": Blobs(200), "val": Blobs(60, seed=1)},
             "arrays": (X, y), "tensors": (torch.as_tensor(X), torch.as_tensor(y)),
             "loader": torch.utils.data.DataLoader(Blobs(), batch_size=5),
             "loaders": {"train": torch.utils.data.DataLoader(Blobs(200)),
                         "val": torch.utils.data.DataLoader(Blobs(60, seed=1))}}
    runs = {k: rl.train(cfg, out=workdir / k, progress=False, data=v) for k, v in forms.items()}
    assert {k: r.results["n_train"] for k, r in runs.items()} == {
        "dataset": 192, "dict": 200, "arrays": 192, "tensors": 192, "loader": 192, "loaders": 200}
    # the same examples in the same split give the same run, whatever the form
    for k in ("arrays", "tensors", "loader"):
        assert runs[k].results["val_loss"] == pytest.approx(runs["dataset"].results["val_loss"], rel=1e-6)
    assert runs["loaders"].results["val_loss"] == pytest.approx(runs["dict"].results["val_loss"], rel=1e-6)
    assert "python-object:" in (workdir / "dataset" / "config.toml").read_text()


# -- refused: one line, exit 2, nothing written ------------------------------------------------------

@pytest.mark.parametrize("spec, words", [
    ("python:missing.py:blobs", ["data.dataset", "missing.py", "existing file"]),
    ("python:data.py:blob", ["data.dataset", "'blob'", "did you mean 'blobs'"]),
    ("python:data.py:raises", ["data.dataset", "RuntimeError: the disk is not mounted"]),
    ("python:data.py:wrong_type", ["data.dataset", "data.py:wrong_type", "torch Dataset", "int"]),
    ("python:data.py:mismatched", ["data.dataset", "10 samples", "9"]),
    ("python:data.py:bad_keys", ["data.dataset", "'train'", "did you mean 'train'"]),
    ("python:data.py:not_a_function", ["data.dataset", "not a function"]),
])
def test_bad_user_data_is_refused_in_one_line(workdir, capsys, spec, words):
    cfg = config_file(workdir, "blobs")
    code = main(["train", str(cfg), "--out", "out", "--set", f"data.dataset={spec}"])
    assert_refused(capsys, code, words, workdir)
    assert not (workdir / "runs").exists() or not any(p.is_dir() for p in (workdir / "runs").iterdir())


def test_own_splits_keep_their_classes_and_refuse_folds(workdir, capsys):
    cfg = config_file(workdir, "splits")
    p = prepare(rl.load_config(cfg, {"data.classes": [2, 0]}))
    assert p.dataset.classes == ["2", "0"] and len(p.splits["val"][1]) == 40     # 60 of 3 classes
    assert set(p.splits["val"][1].tolist()) == {0, 1}
    code = main(["train", str(cfg), "--out", "out", "--set", "data.folds=3", "--set", "data.fold=0"])
    assert_refused(capsys, code, ["data.folds", "its own validation split"], workdir)


def test_an_unpicklable_object_cannot_go_to_other_processes(workdir):
    cfg = rl.load_config(config_file(workdir), {"train.nproc": 2})
    X = np.zeros((30, 2), np.float32)

    class Local(torch.utils.data.Dataset):      # defined in a function: not picklable
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return X[i], i % 2
    with pytest.raises(rl.ConfigError, match="train.nproc' must be 1 when data= is an object that cannot be pickled"):
        rl.train(cfg, out=workdir / "out", data=Local())
    assert not (workdir / "out").exists()


# -- streamed ----------------------------------------------------------------------------------------

def test_streamed_gives_the_resident_numbers(workdir):
    cfg = config_file(workdir, "splits", workers=2)
    assert main(["train", str(cfg), "--out", "resident", "--quiet", "--set", "data.resident=true"]) == 0
    assert main(["train", str(cfg), "--out", "streamed", "--quiet", "--set", "data.resident=false"]) == 0
    _same_runs(workdir / "resident", workdir / "streamed")


def test_streamed_follows_the_resident_order_and_preprocessing():
    X = torch.randn(50, 3, dtype=torch.float64).float() * 3 + 1
    y = torch.arange(50)
    streamed = Streamed(Rows(X.numpy(), (3,)), lambda x: x, "cpu", 0)
    pairs = [(TensorLoader(X, y, 8, generator=torch.Generator().manual_seed(1)),
              StreamLoader(streamed, y, 8, generator=torch.Generator().manual_seed(1)))]
    for resident, stream in pairs:
        for (xa, ya), (xb, yb) in zip(resident, stream, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(streamed[:2], X[:2])
    for kind in ("standardize", "minmax"):
        whole = Preprocessor(kind, (3,)).fit(X)
        batched = Preprocessor(kind, (3,)).fit_batches(streamed.batches(7))
        torch.testing.assert_close(batched.shift, whole.shift)
        torch.testing.assert_close(batched.scale, whole.scale)
    # two ranks read the two halves of every global batch, and nothing else
    shards = [StreamLoader(streamed, y, 8, generator=torch.Generator().manual_seed(1)).shard(r, 2)
              for r in range(2)]
    whole_batches = [yb for _, yb in TensorLoader(X, y, 8, generator=torch.Generator().manual_seed(1))]
    for full, (_, y0), (_, y1) in zip(whole_batches, *shards, strict=True):
        assert torch.equal(torch.cat([y0, y1]), full)


def test_rows_select_lazily_and_read_on_demand():
    reads = []

    class Counting:
        def __len__(self):
            return 10

        def __getitem__(self, j):
            reads.append(j)
            return np.full(2, j, np.float32)
    rows = Rows(Counting(), (2,))
    sub = rows[np.array([7, 3, 5])][np.array([True, False, True])]
    assert reads == [] and sub.shape == (2, 2) and sub.nbytes == 16
    assert np.asarray(sub).tolist() == [[7, 7], [5, 5]] and reads == [7, 5]


def test_streamed_run_resumes_exactly(workdir, tmp_path):
    cfg = rl.load_config(config_file(workdir, "blobs", workers=1), {"data.resident": False,
                                                                    "model.dropout": 0.2})
    assert prepare(cfg).streamed == "data.resident = false"
    assert_resume_exact(cfg, tmp_path / "state.safetensors", stop=2, epochs=4)


def test_auto_streams_over_the_budget_and_trains_alone_in_a_population(workdir, caplog):
    cfg = rl.load_config(config_file(workdir, "blobs"), {"data.memory_budget": 0.001})
    assert "exceeds data.memory_budget" in prepare(cfg).streamed
    assert prepare(rl.load_config(config_file(workdir, "blobs"))).streamed is None
    with caplog.at_level("INFO", logger="regulab"):
        runs = train_population([cfg, cfg.with_code()], outs=[workdir / "a", workdir / "b"], progress=False)
    assert len(runs) == 2 and "a population needs resident data" in caplog.text


def test_an_image_folder_streams(workdir):
    from PIL import Image
    g = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (workdir / "pics" / c).mkdir(parents=True)
        for i in range(20):
            pixels = (g.random((6, 6, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(workdir / "pics" / c / f"{i}.png")
    base = {"data.dataset": "images:pics", "model.hidden": [8], "train.epochs": 2, "train.batch_size": 8,
            "train.device": "cpu", "train.progress": False, "data.workers": 1}
    resident = rl.train(rl.load_config(None, {**base, "data.resident": True}), out=workdir / "r")
    streamed = rl.train(rl.load_config(None, {**base, "data.resident": False}), out=workdir / "s")
    _close(untimed_results(workdir / "r"), untimed_results(workdir / "s"))
    assert resident.results["n_train"] == streamed.results["n_train"] == 32


# Must show 3: a dataset four times the memory budget trains with bounded memory
MEMORY_SCRIPT = '''
import json, resource, sys
import numpy as np, torch
import regulab as rl

N = 2048                            # 64x64 RGB float32: 48 KiB a sample, 96 MiB in all


class Generated(torch.utils.data.Dataset):
    def __init__(self, n=N):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = np.random.default_rng(i)
        return g.random((3, 64, 64), dtype=np.float32) + (i % 2) * 0.1, i % 2


def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024


SETTINGS = {"data.memory_budget": 24, "data.workers": 1, "data.split": [0.8, 0.1, 0.1],
                            "data.preprocess": "standardize", "model.kind": "cnn", "model.channels": [4],
                            "model.kernel_size": 5, "model.hidden": [8], "train.epochs": 1,
                            "train.batch_size": 64, "eval.batch_size": 64, "train.device": "cpu",
                            "train.progress": False}
cfg = rl.load_config(None, SETTINGS)
torch.set_num_threads(1)
# the code paths, the same weights, streamed too (a small set would be resident)
rl.train(rl.load_config(None, {**SETTINGS, "data.resident": False}), out=sys.argv[1] + "-warm-up",
         data=Generated(64))
before = peak()
run = rl.train(cfg, out=sys.argv[1], data=Generated())
after = peak()
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
from regulab.data.stream import place
from regulab.data.user import user_dataset
_, why = place(user_dataset(Generated(), "generated"), "auto", 24)
print(json.dumps({"before": before, "after": after, "children": children, "n_train": run.results["n_train"],
                  "size": N * 3 * 64 * 64 * 4, "streamed": why}))
'''


def test_four_times_the_memory_budget_trains_in_bounded_memory(tmp_path, data_cache):
    script = write(tmp_path / "memory.py", MEMORY_SCRIPT)
    # the environment a user has: no allocator settings (regulab fixes glibc's mmap threshold
    # itself when data streams: regulab.data.stream.return_freed_batches)
    env = {k: v for k, v in subprocess_env(data_cache).items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(REPO / "src")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["n_train"] > 1600 and m["size"] == 4 * 24 * 2 ** 20
    assert m["streamed"] == "its collated size 96 MiB exceeds data.memory_budget 24 MiB"
    # resident, the 96 MiB would be held twice (raw and preprocessed); streamed, the peak grows by
    # less than the 24 MiB budget: a few batches of 64 (3 MiB each: in the worker, in flight, in use)
    budget = m["size"] / 4
    assert m["after"] - m["before"] < budget, m
    assert m["children"] - m["before"] < budget, m       # the DataLoader worker, forked from it


# Must show 5: data-parallel over a streamed dataset, each rank reading its shard
def test_two_processes_over_streamed_data_match_one(workdir):
    cfg = config_file(workdir / "project", "splits", workers=1, extra="resident = false")
    assert main(["train", str(cfg), "--out", "one", "--quiet"]) == 0
    assert main(["train", str(cfg), "--out", "two", "--quiet", "--nproc", "2"]) == 0
    _same_runs(workdir / "one", workdir / "two")
    assert "nproc = 2" in (workdir / "two" / "config.toml").read_text()


def test_readme_documents_the_python_source():
    text = (REPO / "README.md").read_text()
    assert "python:FILE.py:NAME" in text and "data.resident" in text
    assert "runs its code" in text


def test_a_run_of_a_python_object_needs_the_object_again(workdir, capsys):
    namespace: dict = {}
    exec(compile(DATA_PY, "data.py", "exec"), namespace)
    cfg = rl.load_config(config_file(workdir), {"train.epochs": 1})
    rl.train(cfg, out=workdir / "first", progress=False, data=namespace["Blobs"]())
    code = main(["train", str(workdir / "first" / "config.toml"), "--out", "out"])
    assert_refused(capsys, code, ["data.dataset", "was a Python object (Blobs)", "pass the object again"], workdir)


def test_streamed_runs_set_glibcs_mmap_threshold():
    import ctypes
    import platform

    from regulab.data.stream import return_freed_batches
    glibc = platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL(None), "mallopt")
    assert return_freed_batches() is glibc
