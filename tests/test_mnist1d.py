"""The quickstart reproduces the MNIST-1D paper's MLP result (Greydanus, 2020: about 0.60-0.70)."""

from __future__ import annotations

import json

from regulab.cli import main

from .conftest import EXAMPLES


def test_quickstart_mlp_reaches_the_papers_accuracy(workdir):
    assert main(["train", str(EXAMPLES / "quickstart.toml"), "--out", "out", "--quiet"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert 0.60 <= results["test_acc"] <= 0.70, results
    assert results["train_acc"] > results["val_acc"] + 0.15      # and it overfits, as in the paper
    assert results["diagnosis"] == "overfit"
