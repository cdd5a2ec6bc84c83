"""A study's aggregates beyond the scores: each variant's budget in epochs, and the test confusion
matrix of a variant summed over its runs (from the runs' ``evaluation.json``, as ``finish``
writes it with ``regulab.metrics.classification_report``), recounted by a naive loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from regulab.metrics import classification_report, regression_report
from regulab.studies import aggregate
from regulab.studies.spec import Variant

CLASSES = ["cat", "dog", "emu"]


def _results(epochs_run, best_epoch):
    return {"train_acc": 0.9, "val_acc": 0.8, "test_acc": 0.8, "train_loss": 0.1, "val_loss": 0.5,
            "test_loss": 0.5, "epochs_run": epochs_run, "best_epoch": best_epoch}


def test_summarize_gives_the_mean_epochs_run_and_kept():
    runs = [{"seed": s, "fold": None, "results": _results(e, b)}
            for s, (e, b) in enumerate([(20, 14), (17, 11), (30, 30)])]
    entry = aggregate.summarize(Variant("v"), runs, 10)
    assert entry["epochs_mean"] == pytest.approx((20 + 17 + 30) / 3)
    assert entry["best_epoch_mean"] == pytest.approx((14 + 11 + 30) / 3)
    runs[1]["results"].pop("best_epoch")        # an older run without it: left out of the mean
    assert aggregate.summarize(Variant("v"), runs, 10)["best_epoch_mean"] == pytest.approx(22.0)
    for r in runs:
        r["results"].pop("epochs_run")
    assert aggregate.summarize(Variant("v"), runs, 10)["epochs_mean"] is None


def _write_runs(root, name, preds, truths, report=None):
    """Runs of variant ``name`` with evaluation.json from ``preds``/``truths`` (label lists)."""
    runs = []
    for k, (p, t) in enumerate(zip(preds, truths)):
        run_dir = f"runs/{name}/seed-{k}"
        (root / run_dir).mkdir(parents=True)
        logits = torch.nn.functional.one_hot(torch.tensor(p), len(CLASSES)).float()
        test = (report or classification_report)(logits, torch.tensor(t), CLASSES)
        (root / run_dir / "evaluation.json").write_text(json.dumps({"val": test, "test": test}))
        runs.append({"seed": k, "fold": None, "run_dir": run_dir, "results": _results(5, 5)})
    return {"name": name, "runs": runs}


def test_confusion_sums_the_runs_test_matrices(tmp_path):
    rng = np.random.default_rng(0)
    truths = [rng.integers(0, 3, 40).tolist() for _ in range(3)]
    preds = [[t if rng.random() < 0.7 else int(rng.integers(0, 3)) for t in ts] for ts in truths]
    entries = [_write_runs(tmp_path, "base", preds[:1], truths[:1]),
               _write_runs(tmp_path, "drop", preds, truths)]
    got = aggregate.confusion(entries, tmp_path, "drop")
    expected = [[0] * 3 for _ in range(3)]
    for ps, ts in zip(preds, truths):
        for p, t in zip(ps, ts):
            expected[t][p] += 1             # rows: true class, columns: predicted
    assert got == {"variant": "drop", "classes": CLASSES, "matrix": expected, "runs": 3}
    assert sum(map(sum, got["matrix"])) == 120
    assert aggregate.confusion(entries, str(tmp_path), "base")["runs"] == 1
    json.dumps(got)     # plain values, ready for results.json


def test_confusion_is_none_when_there_is_nothing_to_sum(tmp_path):
    truths, preds = [[0, 1, 2, 1]] * 2, [[0, 1, 1, 1]] * 2
    entries = [_write_runs(tmp_path, "ok", preds, truths)]
    assert aggregate.confusion(entries, tmp_path, "nowhere") is None        # no such variant
    (tmp_path / entries[0]["runs"][1]["run_dir"] / "evaluation.json").unlink()
    assert aggregate.confusion(entries, tmp_path, "ok") is None             # a missing file
    no_test = _write_runs(tmp_path, "no-test", preds, truths)
    for r in no_test["runs"]:
        path = tmp_path / r["run_dir"] / "evaluation.json"
        path.write_text(json.dumps({"val": json.loads(path.read_text())["val"]}))
    assert aggregate.confusion([no_test], tmp_path, "no-test") is None     # no test split
    reg = _write_runs(tmp_path, "reg", preds, truths,
                      report=lambda logits, y, classes: regression_report(logits, logits))
    assert aggregate.confusion([reg], tmp_path, "reg") is None              # a regression
