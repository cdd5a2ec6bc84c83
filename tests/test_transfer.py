"""Transfer learning end to end: a run built from another run's layers, frozen or fine-tuned."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import regulab as rl
from regulab.cli import main
from regulab.runs import prepare as prepare_mod

from .conftest import assert_refused, assert_resume_exact, write

SOURCE = """
name = "source"
[data]
dataset = "mnist1d"
n_samples = 1200
classes = [0, 1, 2, 3, 4]
preprocess = "standardize"
[model]
hidden = [32, 32]
batchnorm = true
[optim]
lr = 0.01
[train]
epochs = 3
early_stopping = false
"""

TARGET = """
name = "target"
[data]
dataset = "mnist1d"
n_samples = 1200
classes = [5, 6, 7, 8, 9]
train_size = 100
[model]
hidden = [32, 32]
batchnorm = true
[transfer]
source = "src"
layers = 1
[optim]
lr = 0.01
[train]
epochs = 3
early_stopping = false
"""


@pytest.fixture
def source(workdir):
    assert main(["train", str(write(workdir / "source.toml", SOURCE)), "--out", "src", "--quiet"]) == 0
    return load_file(workdir / "src" / "model.safetensors")


def _target(workdir, *sets):
    cfg = write(workdir / "target.toml", TARGET)
    assert main(["train", str(cfg), "--out", "tgt", "--quiet", *[a for s in sets for a in ("--set", s)]]) == 0
    return load_file(workdir / "tgt" / "model.safetensors")


def test_classes_keeps_and_relabels(workdir):
    full = rl.load_dataset("mnist1d", n_samples=1200)
    ds = prepare_mod.load_data(rl.load_config(None, ["data.n_samples=1200", "data.classes=[7, 2]"]))
    assert ds.classes == [full.classes[7], full.classes[2]]
    assert len(ds.y) == int(np.sum(full.y == 7) + np.sum(full.y == 2))
    assert np.array_equal(ds.X, full.X[(full.y == 7) | (full.y == 2)])
    assert np.array_equal(ds.y, np.where(full.y[(full.y == 7) | (full.y == 2)] == 7, 0, 1))
    assert set(ds.y_test) == {0, 1} and len(ds.y_test) == int(np.isin(full.y_test, [7, 2]).sum())


def test_frozen_layers_are_the_sources_and_stay_fixed(workdir, source):
    target = _target(workdir)
    for key in ("net.fc1.weight", "net.bn1.weight", "net.bn1.bias", "net.bn1.running_mean",
                "net.bn1.running_var", "preprocess.shift", "preprocess.scale"):
        assert torch.equal(target[key], source[key]), key      # frozen batch norm: stats too
    assert not torch.equal(target["net.fc2.weight"], source["net.fc2.weight"])
    assert target["net.out.weight"].shape == (5, 32)            # a new head for 5 classes
    results = json.loads((workdir / "tgt" / "results.json").read_text())
    assert results["n_train"] == 100 and 0 <= results["test_acc"] <= 1


def test_fine_tuning_moves_the_layers_at_their_own_rate(workdir, source):
    target = _target(workdir, "transfer.freeze=false", "transfer.lr=0.001", "transfer.layers=2")
    for key in ("net.fc1.weight", "net.fc2.weight", "net.bn1.running_mean"):
        assert not torch.equal(target[key], source[key]), key
    p = prepare_mod.prepare(rl.load_config(workdir / "tgt" / "config.toml"))
    groups = {g["name"]: g for g in p.trainer.optimizer.param_groups}
    assert groups["transferred"]["lr"] == 0.001 and groups["new"]["lr"] == 0.01
    named = dict(p.trainer.model.named_parameters())
    assert {id(t) for t in groups["transferred"]["params"]} == {
        id(named[k]) for k in ("fc1.weight", "bn1.weight", "bn1.bias", "fc2.weight", "bn2.weight", "bn2.bias")}
    # the copied layers start as the source's, whatever the target's own initialization
    assert torch.equal(p.trainer.model.fc2.weight.detach(), source["net.fc2.weight"])


def test_all_layers_and_refit_preprocessing(workdir, source):
    target = _target(workdir, 'transfer.layers="all"', 'transfer.preprocess="refit"')
    assert torch.equal(target["net.fc2.weight"], source["net.fc2.weight"])
    assert torch.equal(target["preprocess.shift"], torch.zeros(40))   # target's own: preprocess none


def test_frozen_run_with_multitask_heads_and_max_norm(workdir, source):
    target = _target(workdir, 'multitask.tasks=["parity"]', "regularization.max_norm=0.1",
                     "regularization.l2=0.01")
    assert torch.equal(target["net.fc1.weight"], source["net.fc1.weight"])   # max-norm leaves it
    assert target["net.out.parity.weight"].shape == (2, 32)
    norms = target["net.fc2.weight"].norm(dim=1)
    assert float(norms.max()) <= 0.1 * (1 + 1e-5)


def test_resume_of_a_fine_tuned_run_is_exact(workdir, source):
    cfg = rl.load_config(write(workdir / "target.toml", TARGET),
                         ["transfer.freeze=false", "transfer.lr=0.001", "model.dropout=0.2"])
    assert_resume_exact(cfg, workdir / "state.safetensors")


@pytest.mark.parametrize("sets, words", [
    (["transfer.source=nowhere"], ["transfer.source", "'nowhere'", "finished regulab run"]),
    (["transfer.layers=3"], ["transfer.layers", "at most 2", "fc1, fc2", "3"]),
    (["transfer.layers=0"], ["transfer.layers", "0"]),
    (["model.hidden=[16, 32]"], ["transfer.layers", "fc1", "(32, 40)", "(16, 40)"]),
    (["model.batchnorm=false"], ["transfer.layers", "bn1", "batchnorm"]),
    (["transfer.lr=0.001"], ["transfer.lr", "0.001", "freeze"]),
    (["data.dataset=moons", "data.classes=[0, 1]"], ["transfer.source", "(40,)", "(2,)"]),
    (["data.classes=[5, 5]"], ["data.classes", "[5, 5]", "distinct"]),
    (["data.classes=[5, 10]"], ["data.classes", "[0, 9]"]),
    (['transfer.preprocess="both"'], ["transfer.preprocess", "'both'", "source, refit"]),
])
def test_bad_transfer_config_exits_2_and_writes_nothing(workdir, capsys, source, sets, words):
    cfg = write(workdir / "target.toml", TARGET)
    before = _store_rows(workdir)
    code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert_refused(capsys, code, words, workdir)
    assert _store_rows(workdir) == before          # no run registered


def _store_rows(workdir) -> list:
    from regulab.runs.store import RunStore
    return [r["run_dir"] for r in RunStore(f"sqlite:///{workdir / 'runs' / 'regulab.db'}").runs()]


def test_transfer_keys_need_a_source(workdir, capsys):
    assert main(["train", str(write(workdir / "c.toml", SOURCE)), "--quiet", "--set", "transfer.layers=2"]) == 2
    err = capsys.readouterr().err
    assert "transfer.layers" in err and "transfer.source" in err


def test_fine_tuning_groups_split_into_decayed_weights_and_the_rest(workdir, source):
    """``optim.weight_decay`` acts on the weights the L2 penalty selects, in each learning-rate
    group: batch norm and biases sit in that group's ``_no_decay`` twin."""
    cfg = rl.load_config(write(workdir / "target.toml", TARGET),
                         ["transfer.freeze=false", "transfer.lr=0.001", "transfer.layers=2",
                          "optim.weight_decay=0.01"])
    p = prepare_mod.prepare(cfg)
    named = {id(t): n for n, t in p.trainer.model.named_parameters()}
    groups = {g["name"]: (g["lr"], g["weight_decay"], sorted(named[id(t)] for t in g["params"]))
              for g in p.trainer.optimizer.param_groups}
    assert groups == {
        "transferred": (0.001, 0.01, ["fc1.weight", "fc2.weight"]),
        "transferred_no_decay": (0.001, 0.0, ["bn1.bias", "bn1.weight", "bn2.bias", "bn2.weight"]),
        "new": (0.01, 0.01, ["out.weight"]),
        "new_no_decay": (0.01, 0.0, ["out.bias"])}
