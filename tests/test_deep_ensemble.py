"""Deep ensembles and bagging: averaged probabilities, bootstrap resamples, one evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import regulab as rl
from regulab.cli import main
from regulab.modalities.sources import load_dataset
from regulab.runs.prepare import prepare, split_arrays

from .conftest import write

SMALL = """
name = "ens"
[data]
dataset = "moons"
n_samples = 400
[model]
hidden = [16]
[optim]
lr = 0.02
[train]
epochs = 15
batch_size = 32
early_stopping = false
"""


def test_bootstrap_resamples_the_training_split_only():
    cfg = rl.load_config(None, ["data.dataset=moons", "data.n_samples=400", "data.bootstrap=true"])
    ds = load_dataset("moons", n_samples=400)
    plain = split_arrays(rl.load_config(None, ["data.dataset=moons", "data.n_samples=400"]), ds)
    boot = split_arrays(cfg, ds)
    X0, Xb = plain["train"][0], boot["train"][0]
    assert len(Xb) == len(X0)
    rows0 = {tuple(r) for r in X0}
    rows_b = [tuple(r) for r in Xb]
    assert set(rows_b) <= rows0                      # drawn from the training split...
    unique = len(set(rows_b)) / len(rows_b)
    assert 0.55 < unique < 0.72                      # ...with replacement: ~1 - 1/e distinct
    for split in ("val", "test"):
        assert np.array_equal(plain[split][0], boot[split][0])
    other = split_arrays(rl.load_config(None, ["data.dataset=moons", "data.n_samples=400",
                                          "data.bootstrap=true", "train.seed=1"]), ds)
    assert not np.array_equal(other["train"][0], Xb)   # each member its own resample


@pytest.mark.parametrize("bagging", [False, True])
def test_ensemble_averages_member_probabilities(workdir, capsys, bagging):
    cfg = write(workdir / "ens.toml", SMALL)
    args = ["train", str(cfg), "--out", "ens", "--quiet", "--members", "3"] + ["--bagging"] * bagging
    assert main(args) == 0
    assert "ensemble.json" in capsys.readouterr().out
    result = json.loads((workdir / "ens" / "ensemble.json").read_text())
    # recompute: each member's saved pipeline on the raw test inputs, probabilities averaged
    ds = load_dataset("moons", n_samples=400)
    X, y = split_arrays(rl.load_config(workdir / "ens" / "member-0" / "config.toml"), ds)["test"]
    X = torch.as_tensor(X)
    probs = []
    for k in range(3):
        member_cfg = rl.load_config(workdir / "ens" / f"member-{k}" / "config.toml")
        assert member_cfg.train.seed == k and member_cfg.data.bootstrap == bagging
        q = prepare(member_cfg)
        q.pipeline.load_state_dict(load_file(workdir / "ens" / f"member-{k}" / "model.safetensors"))
        with torch.no_grad():
            probs.append(torch.softmax(q.pipeline.eval()(X), 1).numpy())
    mean = np.mean(probs, axis=0)
    assert result["test_acc"] == pytest.approx(float((mean.argmax(1) == y).mean()), abs=1e-12)
    accs = [json.loads((workdir / "ens" / f"member-{k}" / "results.json").read_text())["test_acc"]
            for k in range(3)]
    assert result["member_test_acc_mean"] == pytest.approx(np.mean(accs))


def test_ensemble_bad_input(workdir, capsys):
    cfg = write(workdir / "ens.toml", SMALL)
    assert main(["train", str(cfg), "--members", "1", "--quiet"]) == 2
    assert "members" in capsys.readouterr().err
    assert main(["train", str(cfg), "--bagging", "--quiet"]) == 2
    assert "--bagging" in capsys.readouterr().err
    assert not (workdir / "runs").exists()
