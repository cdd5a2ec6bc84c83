"""Training without a validation split, and validation splits the data brings (issue 14).

``data.split = [1, 0, 0]`` trains on every row (``[0.9, 0, 0.1]`` on every row not tested) when
nothing needs validation: no ``val_*`` column or entry anywhere, ``diagnosis`` null. Early
stopping, a study and a sweep need validation and are refused with one line. A validation set of
the data's own -- an npz's ``X_val``/``y_val``, a csv's ``data.split_column``, a ``python:``
dataset's ``val`` -- is kept as THE validation split, row for row.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import regulab as rl
from regulab.cli import main
from regulab.config.core import apply_overrides, config_from_dict
from regulab.data.split import split_indices
from regulab.engine.population.eligibility import population_key
from regulab.errors import ConfigError
from regulab.runs.population import train_population
from regulab.runs.prepare import prepare

from .conftest import assert_refused, write

CONFIG = """
name = "all-rows"
[data]
dataset = "{dataset}"
split = {split}
{extra}
[model]
hidden = [8]
[optim]
name = "adam"
lr = 0.01
[train]
epochs = 2
batch_size = 32
early_stopping = {early_stopping}
progress = false
device = "cpu"
"""


def config_text(dataset: str = "digits", split: str = "[1.0, 0.0, 0.0]", early_stopping: str = "false",
                extra: str = "") -> str:
    return CONFIG.format(dataset=dataset, split=split, early_stopping=early_stopping, extra=extra)


def metrics_header(run_dir) -> list[str]:
    with open(run_dir / "metrics.csv") as f:
        return next(csv.reader(f))


def no_val_anywhere(run_dir) -> dict:
    results = json.loads((run_dir / "results.json").read_text())
    assert not [k for k in results if "val" in k], results
    assert "val" not in json.loads((run_dir / "evaluation.json").read_text())
    assert not [c for c in metrics_header(run_dir) if c.startswith("val")]
    assert results["diagnosis"] is None
    return results


# -- the split ---------------------------------------------------------------------------------

@pytest.mark.parametrize("stratify", [True, False])
def test_a_zero_validation_fraction_gives_an_empty_validation_split(stratify):
    y = np.arange(300) % 3
    s = split_indices(y, [1.0, 0.0, 0.0], stratify=stratify, seed=0, has_test=False)
    assert len(s.val) == 0 and s.test is None and s.train.tolist() == list(range(300))
    s = split_indices(y, [0.9, 0.0, 0.1], stratify=stratify, seed=0, has_test=False)
    assert len(s.val) == 0 and len(s.test) == 30 and len(s.train) == 270
    assert sorted([*s.train, *s.test]) == list(range(300))
    if stratify:    # the test split keeps the class proportions
        assert np.bincount(y[s.test]).tolist() == [10, 10, 10]


# -- runs without validation -------------------------------------------------------------------

def test_split_1_0_0_trains_on_every_row_and_logs_no_validation(workdir, capsys):
    cfg = write(workdir / "all.toml", config_text())
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    assert "no validation split" in capsys.readouterr().out
    results = no_val_anywhere(workdir / "out")
    assert results["n_train"] == 1797 and "n_test" not in results      # digits: 1797 rows
    assert metrics_header(workdir / "out")[:3] == ["epoch", "train_loss", "train_acc"]


def test_split_with_train_and_test_only(workdir):
    cfg = write(workdir / "tt.toml", config_text(split="[0.9, 0.0, 0.1]"))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = no_val_anywhere(workdir / "out")
    assert results["n_train"] + results["n_test"] == 1797 and results["n_test"] == 180
    assert "test" in json.loads((workdir / "out" / "evaluation.json").read_text())


def test_a_regression_run_without_validation(workdir):
    cfg = write(workdir / "sine.toml", config_text(dataset="sine"))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = no_val_anywhere(workdir / "out")
    assert "train_r2" in results


def test_a_population_without_validation_matches_separate_runs(workdir):
    raw = {"name": "pop", "data": {"dataset": "digits", "split": [1.0, 0.0, 0.0], "train_size": 300},
           "model": {"hidden": [16]}, "optim": {"name": "adam", "lr": 1e-3},
           "train": {"epochs": 2, "early_stopping": False, "progress": False, "device": "cpu"}}
    cfgs = [config_from_dict(apply_overrides(raw, {"train.seed": s})) for s in (0, 1)]
    assert population_key(cfgs[0]) is not None
    together = train_population(cfgs, [workdir / "p0", workdir / "p1"])
    alone = rl.train(cfgs[1], out=workdir / "alone")
    for run in (*together, alone):
        assert not [k for k in run.history[-1] if k.startswith("val")]
    assert together[1].results["train_acc"] == pytest.approx(alone.results["train_acc"], abs=1e-5)


# -- what needs validation is refused ----------------------------------------------------------

def test_early_stopping_without_validation_is_refused(workdir, capsys):
    cfg = write(workdir / "es.toml", config_text(early_stopping="true"))
    code = main(["train", str(cfg), "--out", "out"])
    assert_refused(capsys, code, ["data.split", "train.early_stopping", "[1.0, 0.0, 0.0]"], workdir)
    assert not (workdir / "runs").exists()


STUDY = """
[study]
name = "nv"
kind = "compare"
seeds = [0]
[base]
data = { dataset = "moons", n_samples = 200, split = [0.9, 0.0, 0.1] }
model = { hidden = [8] }
train = { epochs = 2, early_stopping = false, device = "cpu" }
[variants.baseline]
[variants.drop]
"model.dropout" = 0.2
"""

SWEEP = """
[sweep]
name = "nv"
sampler = "grid"
[base]
data = { dataset = "moons", n_samples = 200 }
model = { hidden = [8] }
train = { epochs = 2, early_stopping = false, device = "cpu" }
[space]
"model.dropout" = { values = [0.0, 0.2] }
"""


@pytest.mark.parametrize("command, text, sets, words", [
    ("study", STUDY, [], ["data.split", "[0.9, 0.0, 0.1]", "study 'nv'", "validation"]),
    ("sweep", SWEEP, ["--set", "data.split=[1.0, 0.0, 0.0]"], ["data.split", "[1.0, 0.0, 0.0]", "sweep",
                                                                "validation"]),
    ("sweep", SWEEP.replace('"model.dropout" = { values = [0.0, 0.2] }',
                            '"data.split" = { values = [[0.8, 0.2, 0.0], [1.0, 0.0, 0.0]] }'), [],
     ["data.split", "[1.0, 0.0, 0.0]", "validation"]),
])
def test_a_study_or_sweep_without_validation_is_refused(workdir, capsys, command, text, sets, words):
    write(workdir / "spec.toml", text)
    code = main([command, "spec.toml", "--out", "out", *sets])
    assert_refused(capsys, code, words, workdir)
    assert not (workdir / "runs").exists()


def test_a_study_from_python_without_validation_is_refused(workdir):
    cfg = config_from_dict(apply_overrides(
        {"data": {"dataset": "moons", "split": [1.0, 0.0, 0.0]}, "train": {"early_stopping": False}}, {}))
    with pytest.raises(ConfigError, match=r"data\.split.*validation"):
        rl.study(cfg, variants={"drop": {"model.dropout": 0.2}}, seeds=1, out=workdir / "out")
    assert not (workdir / "out").exists()


# -- validation sets the data brings -----------------------------------------------------------

def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (g.normal(size=(n, 5)) + y[:, None]).astype(np.float32), y


def _val_acc(run_dir, X: np.ndarray, y: np.ndarray) -> float:
    model = rl.load_model(run_dir)
    with torch.no_grad():
        pred = model(torch.as_tensor(X)).argmax(1).numpy()
    return float((pred == y).mean())


def test_an_npz_with_x_val_keeps_it_as_the_validation_split(workdir):
    (X, y), (Xv, yv), (Xt, yt) = _blobs(200, 0), _blobs(37, 1), _blobs(41, 2)
    np.savez(workdir / "d.npz", X=X, y=y, X_val=Xv, y_val=yv, X_test=Xt, y_test=yt)
    cfg = write(workdir / "npz.toml", config_text(dataset="npz:d.npz", split="[0.8, 0.15, 0.05]",
                                                  early_stopping="true"))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert (results["n_train"], results["n_val"], results["n_test"]) == (200, 37, 41)
    assert results["val_acc"] == pytest.approx(_val_acc(workdir / "out", Xv, yv), abs=1e-6)
    assert results["test_acc"] == pytest.approx(_val_acc(workdir / "out", Xt, yt), abs=1e-6)
    p = prepare(config_from_dict(apply_overrides({"data": {"dataset": f"npz:{workdir / 'd.npz'}"}}, {})))
    assert torch.equal(p.splits["val"][1], torch.as_tensor(yv))


def test_an_npz_with_half_a_validation_set_is_refused(workdir, capsys):
    X, y = _blobs(50, 0)
    np.savez(workdir / "d.npz", X=X, y=y, X_val=X[:5])
    cfg = write(workdir / "npz.toml", config_text(dataset="npz:d.npz"))
    code = main(["train", str(cfg), "--out", "out"])
    assert_refused(capsys, code, ["X_val / y_val", "give both or neither"], workdir)


def _csv(path, X: np.ndarray, y: np.ndarray, splits: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "part", "b", "c", "d", "e", "label"])
        for x, label, part in zip(X, y, splits):
            w.writerow([x[0], part, *x[1:], f"k{label}"])


def test_a_csv_split_column_gives_each_rows_split(workdir):
    X, y = _blobs(120, 0)
    parts = ["train"] * 80 + ["val"] * 25 + ["TEST"] * 15
    _csv(workdir / "d.csv", X, y, parts)
    cfg = write(workdir / "csv.toml", config_text(dataset="csv:d.csv", split="[0.8, 0.15, 0.05]",
                                                  extra='target = "label"\nsplit_column = "part"'))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert (results["n_train"], results["n_val"], results["n_test"]) == (80, 25, 15)
    model_info = json.loads((workdir / "out" / "model.json").read_text())
    assert model_info["sample_shape"] == [5]                  # the split column is not a feature
    # written as a float text and read back: the same float32 values
    assert results["val_acc"] == pytest.approx(_val_acc(workdir / "out", X[80:105], y[80:105]), abs=1e-6)


def test_a_csv_split_column_without_val_rows_trains_without_validation(workdir):
    X, y = _blobs(60, 0)
    _csv(workdir / "d.csv", X, y, ["train"] * 50 + ["test"] * 10)
    cfg = write(workdir / "csv.toml", config_text(dataset="csv:d.csv", split="[0.8, 0.15, 0.05]",
                                                  extra='target = "label"\nsplit_column = "part"'))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = no_val_anywhere(workdir / "out")
    assert (results["n_train"], results["n_test"]) == (50, 10)


@pytest.mark.parametrize("dataset, column, parts, words", [
    ("csv:d.csv", "prt", None, ["data.split_column", "'prt'", "did you mean 'part'"]),
    ("csv:d.csv", "label", None, ["data.split_column", "'label'", "other than the target"]),
    ("csv:d.csv", "part", ["train"] * 29 + ["valid"], ["data.split_column", "'valid'", "row 30",
                                                       "train, val, test"]),
    ("csv:d.csv", "part", ["val"] * 30, ["data.split_column", "no row 'train'"]),
    ("moons", "part", None, ["data.split_column", "'part'", "csv:PATH"]),
])
def test_a_bad_split_column_is_refused(workdir, capsys, dataset, column, parts, words):
    X, y = _blobs(30, 0)
    _csv(workdir / "d.csv", X, y, parts or ["train"] * 20 + ["val"] * 10)
    target = 'target = "label"\n' if dataset.startswith("csv") else ""
    cfg = write(workdir / "csv.toml", config_text(dataset=dataset, extra=f'{target}split_column = "{column}"'))
    code = main(["train", str(cfg), "--out", "out"])
    assert_refused(capsys, code, words, workdir)


DATA_PY = '''
import numpy as np
import torch


def splits():
    def part(n, seed):
        g = np.random.default_rng(seed)
        y = np.arange(n) % 3
        X = (g.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
        return torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    return {"train": part(90, 0), "val": part(33, 1)}
'''


def test_a_python_dataset_with_val_keeps_it(workdir):
    write(workdir / "data.py", DATA_PY)
    cfg = write(workdir / "py.toml", config_text(dataset="python:data.py:splits", split="[1.0, 0.0, 0.0]",
                                                 early_stopping="true"))
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert (results["n_train"], results["n_val"]) == (90, 33)
    Xv, yv = _blobs(33, 1)
    assert results["val_acc"] == pytest.approx(_val_acc(workdir / "out", Xv, yv), abs=1e-6)


def test_an_estimator_fits_on_every_row_without_validation():
    from regulab.sklearn import RegulabClassifier
    X, y = _blobs(120, 0)
    est = RegulabClassifier(data__split=(1.0, 0.0, 0.0), train__early_stopping=False, train__epochs=2,
                            train__device="cpu").fit(X, y)
    assert not [k for k in est.history_[-1] if k.startswith("val")]
    with pytest.raises(ConfigError, match=r"'data\.split' and 'train\.early_stopping'"):
        RegulabClassifier(data__split=(1.0, 0.0, 0.0), train__epochs=2, train__device="cpu").fit(X, y)


def test_a_study_uses_the_validation_split_its_data_brings(workdir, capsys):
    """``data.split = [1, 0, 0]`` with an npz that holds ``X_val``: the study runs and ranks on
    that validation set; the same npz without it is refused before anything is written."""
    (X, y), (Xv, yv) = _blobs(120, 0), _blobs(40, 1)
    np.savez(workdir / "own.npz", X=X, y=y, X_val=Xv, y_val=yv)
    np.savez(workdir / "none.npz", X=X, y=y)
    text = STUDY.replace('dataset = "moons", n_samples = 200, split = [0.9, 0.0, 0.1]',
                         'dataset = "npz:NPZ", split = [1.0, 0.0, 0.0]')
    write(workdir / "own.toml", text.replace("NPZ", "own.npz"))
    assert main(["study", "own.toml", "--out", "s", "--db", str(workdir / "r.db"), "--quiet"]) == 0
    r = json.loads((workdir / "s" / "results.json").read_text())
    for v in r["variants"]:
        run = v["runs"][0]["results"]
        assert run["n_val"] == 40 and run["n_train"] == 120
        assert run["val_acc"] == pytest.approx(_val_acc(workdir / "s" / v["runs"][0]["run_dir"], Xv, yv))
    capsys.readouterr()
    write(workdir / "none.toml", text.replace("NPZ", "none.npz"))
    code = main(["study", "none.toml", "--out", "out"])
    assert_refused(capsys, code, ["data.split", "[1.0, 0.0, 0.0]", "validation"], workdir)
