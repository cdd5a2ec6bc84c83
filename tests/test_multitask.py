"""Multi-task learning: derived labels, the weighted loss, per-head metrics, end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

import regulab as rl
from regulab.cli import main
from regulab.engine.trainer import Trainer
from regulab.errors import ConfigError
from regulab.nn.models import MLP, MultiHead, Regularizers
from regulab.regularize.mc_dropout import mc_predict
from regulab.regularize.multitask import Tasks
from regulab.runs import prepare as prepare_mod
from regulab.runs.ensemble import ensemble_probabilities

from .conftest import assert_refused, assert_resume_exact, write

SMALL = """
name = "mt"
[data]
dataset = "mnist1d"
n_samples = 1000
[model]
hidden = [32]
[multitask]
tasks = ["parity", "greater_than_4"]
weights = [0.5, 0.25]
[optim]
lr = 0.01
[train]
epochs = 4
early_stopping = false
"""


def _ce(z: np.ndarray, y: np.ndarray, eps: float = 0.0) -> float:
    """Mean cross-entropy in float64 by the formula, with label smoothing eps."""
    z = z.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    k = z.shape[1]
    target = np.full(z.shape, eps / k)
    target[np.arange(len(y)), y] += 1 - eps
    return float(-(target * logp).sum(1).mean())


def test_labels_follow_each_task_rule():
    tasks = Tasks(10, ["parity", "greater_than_4", "low"], groups={"low": [1, 1, 1, 0, 0, 0, 0, 0, 0, 2]})
    y = np.random.default_rng(0).integers(0, 10, size=200)
    t = tasks.labels(y)
    assert t.shape == (200, 4)
    for i, c in enumerate(y):
        assert list(t[i]) == [c, c % 2, int(c > 4), {0: 1, 1: 1, 2: 1, 9: 2}.get(c, 0)]
    assert tasks.names == ["main", "parity", "greater_than_4", "low"]
    assert tasks.sizes == [10, 2, 2, 3]
    assert tasks.classes[1] == ["even", "odd"] and tasks.classes[3] == ["0", "1", "2"]


def test_loss_is_the_weighted_sum_of_each_heads_cross_entropy():
    g = torch.Generator().manual_seed(0)
    tasks = Tasks(10, ["parity", "greater_than_4"], weights=[0.5, 0.25], main_weight=2.0,
                  label_smoothing=0.1)
    out = torch.randn(64, 14, generator=g)
    y = torch.as_tensor(tasks.labels(torch.randint(0, 10, (64,), generator=g).numpy()))
    z, yn = out.numpy(), y.numpy()
    parts = [_ce(z[:, :10], yn[:, 0], 0.1), _ce(z[:, 10:12], yn[:, 1], 0.1), _ce(z[:, 12:], yn[:, 2], 0.1)]
    assert torch.allclose(tasks.losses(out, y), torch.tensor(parts, dtype=torch.float32), atol=1e-6)
    assert float(tasks.loss(out, y)) == pytest.approx(2.0 * parts[0] + 0.5 * parts[1] + 0.25 * parts[2],
                                                      rel=1e-6)
    hits = tasks.hits(out, y)
    assert hits.tolist() == [int((z[:, a:b].argmax(1) == yn[:, i]).sum())
                             for i, (a, b) in enumerate([(0, 10), (10, 12), (12, 14)])]


def test_heads_share_the_trunk_and_its_gradient_is_the_weighted_sum():
    torch.manual_seed(0)
    net = MLP(8, [6], [("main", 4), ("parity", 2)])
    assert isinstance(net.out, MultiHead)
    assert [k for k in net.state_dict() if k.startswith("out.")] == [
        "out.main.weight", "out.main.bias", "out.parity.weight", "out.parity.bias"]
    x = torch.randn(5, 8)
    h = net.act1(net.fc1(x))
    assert torch.equal(net(x), torch.cat([net.out.main(h), net.out.parity(h)], 1))

    tasks = Tasks(4, ["parity"], weights=[0.3])
    y = torch.as_tensor(tasks.labels(np.array([0, 1, 2, 3, 1])))

    def grad(loss_of):
        net.zero_grad()
        loss_of(net(x)).backward()
        return net.fc1.weight.grad.clone(), net.out.parity.weight.grad.clone()

    g_total, g_head = grad(lambda o: tasks.loss(o, y))
    g_main, _ = grad(lambda o: torch.nn.functional.cross_entropy(o[:, :4], y[:, 0]))
    g_aux, g_aux_head = grad(lambda o: torch.nn.functional.cross_entropy(o[:, 4:], y[:, 1]))
    assert torch.allclose(g_total, g_main + 0.3 * g_aux, atol=1e-7)
    assert torch.allclose(g_head, 0.3 * g_aux_head, atol=1e-7)


def test_trainer_scores_each_head():
    torch.manual_seed(1)
    net = MLP(8, [6], [("main", 4), ("parity", 2)])
    tasks = Tasks(4, ["parity"], weights=[0.5])
    X = torch.randn(50, 8)
    y = torch.as_tensor(tasks.labels(np.random.default_rng(0).integers(0, 4, 50)))
    t = Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), None, tasks=tasks, eval_batch_size=7)
    logs = t.evaluate(X, y)
    with torch.no_grad():
        z = net.eval()(X).numpy()
    yn = y.numpy()
    main_loss, aux_loss = _ce(z[:, :4], yn[:, 0]), _ce(z[:, 4:], yn[:, 1])
    assert logs["val_loss"] == pytest.approx(main_loss, rel=1e-5)
    assert logs["val_parity_loss"] == pytest.approx(aux_loss, rel=1e-5)
    assert logs["val_total_loss"] == pytest.approx(main_loss + 0.5 * aux_loss, rel=1e-5)
    assert logs["val_acc"] == pytest.approx(np.mean(z[:, :4].argmax(1) == yn[:, 0]))
    assert logs["val_parity_acc"] == pytest.approx(np.mean(z[:, 4:].argmax(1) == yn[:, 1]))


def test_mc_dropout_averages_each_head_on_its_own():
    net = MLP(8, [16], [("main", 4), ("parity", 2)], regularizers=Regularizers(dropout=0.5))
    probs = mc_predict(net, torch.randn(10, 8), 6, generator=torch.Generator().manual_seed(0),
                       heads=[4, 2])
    assert torch.allclose(probs[:, :4].sum(1), torch.ones(10), atol=1e-6)
    assert torch.allclose(probs[:, 4:].sum(1), torch.ones(10), atol=1e-6)
    geo = mc_predict(net, torch.randn(10, 8), 6, aggregate="geometric", heads=[4, 2],
                     generator=torch.Generator().manual_seed(0))
    assert torch.allclose(geo[:, 4:].sum(1), torch.ones(10), atol=1e-6)


def test_ensemble_averages_only_the_main_head():
    nets = [MLP(8, [6], [("main", 4), ("parity", 2)]) for _ in range(2)]
    X = torch.randn(5, 8)
    probs = ensemble_probabilities(nets, X, 4)
    with torch.no_grad():
        expected = sum(torch.softmax(n(X)[:, :4], 1) for n in nets) / 2
    assert torch.allclose(probs, expected)


def test_zero_weight_heads_leave_the_main_task_as_a_single_task_run(workdir):
    """Same seed: trunk and main head start equal (heads are initialized after them), and an
    auxiliary loss weighted 0 adds nothing to their gradients, so the main task trains the same."""
    single = rl.load_config(None, ["data.n_samples=600", "model.hidden=[16]", "model.dropout=0.2",
                                   "train.epochs=3", "train.early_stopping=false"])
    multi = rl.load_config(None, ["data.n_samples=600", "model.hidden=[16]", "model.dropout=0.2",
                                  "train.epochs=3", "train.early_stopping=false",
                                  'multitask.tasks=["parity"]', "multitask.weights=[0.0]"])
    a, b = prepare_mod.prepare(single), prepare_mod.prepare(multi)
    ha = a.trainer.fit(a.loader, a.splits["val"], epochs=3)
    hb = b.trainer.fit(b.loader, b.splits["val"], epochs=3)
    for ea, eb in zip(ha, hb):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert ea[key] == pytest.approx(eb[key], rel=1e-5, abs=1e-7), key
    assert torch.allclose(a.trainer.model.fc1.weight, b.trainer.model.fc1.weight, atol=1e-6)


def test_train_writes_each_heads_metrics(workdir, capsys):
    cfg = write(workdir / "mt.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet"]) == 0
    header = (workdir / "out" / "metrics.csv").read_text().splitlines()[0].split(",")
    for split in ("train", "val"):
        assert {f"{split}_total_loss", f"{split}_parity_loss", f"{split}_parity_acc",
                f"{split}_greater_than_4_acc"} <= set(header)
    with open(workdir / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:    # the logged objective is the weighted sum of the logged head losses
        total = float(row["val_loss"]) + 0.5 * float(row["val_parity_loss"]) \
            + 0.25 * float(row["val_greater_than_4_loss"])
        assert float(row["val_total_loss"]) == pytest.approx(total, rel=1e-5)
    results = json.loads((workdir / "out" / "results.json").read_text())
    evaluation = json.loads((workdir / "out" / "evaluation.json").read_text())
    assert set(evaluation["test"]["tasks"]) == {"parity", "greater_than_4"}
    assert evaluation["val"]["tasks"]["parity"]["classes"] == ["even", "odd"]

    # recompute the final parity accuracy from the saved model on the validation split
    p = prepare_mod.prepare(rl.load_config(workdir / "out" / "config.toml"))
    from safetensors.torch import load_file
    p.pipeline.load_state_dict(load_file(workdir / "out" / "model.safetensors"))
    X, y = p.splits["val"]
    with torch.no_grad():
        out = p.pipeline.net.eval()(X)
    parity = (out[:, 10:12].argmax(1) == y[:, 0] % 2).double().mean()
    assert results["val_parity_acc"] == pytest.approx(float(parity))
    assert evaluation["val"]["tasks"]["parity"]["accuracy"] == pytest.approx(float(parity))
    assert results["val_acc"] == pytest.approx(float((out[:, :10].argmax(1) == y[:, 0]).double().mean()))


def test_multitask_composes_with_mc_dropout_and_label_noise(workdir):
    cfg = write(workdir / "mt.toml", SMALL)
    assert main(["train", str(cfg), "--out", "out", "--quiet", "--set", "model.dropout=0.3",
                 "--set", "eval.dropout_inference=mc_geometric", "--set", "eval.mc_samples=4",
                 "--set", "data.label_noise=0.2", "--set", "regularization.label_smoothing=0.1"]) == 0
    results = json.loads((workdir / "out" / "results.json").read_text())
    assert 0 < results["test_parity_acc"] <= 1 and results["test_parity_loss"] > 0


def test_auxiliary_labels_come_from_the_noisy_training_labels(workdir):
    cfg = rl.load_config(None, ["data.n_samples=600", 'multitask.tasks=["parity"]', "data.label_noise=0.3"])
    y = prepare_mod.prepare(cfg).splits["train"][1]
    assert torch.equal(y[:, 1], y[:, 0] % 2)


@pytest.mark.parametrize("sets, words", [
    (['multitask.tasks=["parity", "colour"]'], ["multitask.tasks", "'colour'", "parity, greater_than_4"]),
    (["multitask.weights=[1.0]"], ["multitask.weights", "one weight per task", "[1.0]"]),
    (["multitask.weights=[1.0, -1.0]"], ["multitask.weights[1]", "-1.0"]),
    (['multitask.tasks=["parity", "parity"]', "multitask.weights=[1.0, 1.0]"], ["multitask.tasks", "repeat"]),
    (["multitask.groups={low=[0, 1, 1]}", 'multitask.tasks=["low"]', "multitask.weights=[1.0]"],
     ["multitask.groups.low", "one label per class (10)", "got 3"]),
    (["multitask.groups={low=[0, 1]}", "multitask.weights=[1.0, 1.0]"], ["multitask.groups", "'low'", "does not list"]),
    (["multitask.groups={low=[0, -1]}", 'multitask.tasks=["low"]', "multitask.weights=[1.0]"],
     ["multitask.groups.low[1]", "-1"]),
    (["multitask.main_weight=0"], ["multitask.main_weight", "> 0"]),
    (["data.dataset=moons", "data.n_samples=200", 'multitask.tasks=["greater_than_4"]', "multitask.weights=[1.0]"],
     ["greater_than_4", "same label"]),
    (["data.dataset=sine", "data.n_samples=200", "train.monitor=val_loss"], ["multitask.tasks", "regression"]),
    (["data.dataset=moons", "data.n_samples=200", 'multitask.tasks=["parity"]', "multitask.weights=[1.0]",
      "train.loss=bce"], ["multitask.tasks", "cross_entropy", "bce"]),
])
def test_bad_multitask_config_exits_2_and_writes_nothing(workdir, capsys, sets, words):
    cfg = write(workdir / "mt.toml", SMALL)
    code = main(["train", str(cfg), "--out", "out", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert_refused(capsys, code, words, workdir)
    assert not (workdir / "runs").exists()


def test_tasks_object_rejects_bad_input_directly():
    with pytest.raises(ConfigError, match="one weight per task"):
        Tasks(10, ["parity"], weights=[1.0, 2.0])
    with pytest.raises(ConfigError, match="'multitask.tasks' must be names of tasks: .*; got 'odd'"):
        Tasks(10, ["odd"])


def test_multihead_repr_and_penalty_layer_names(workdir):
    cfg = rl.load_config(None, ["data.n_samples=600", 'multitask.tasks=["parity"]',
                                "regularization.l2=0.01", 'regularization.penalty_layers=["out.parity"]'])
    p = prepare_mod.prepare(cfg)
    net = p.trainer.model
    expected = 0.01 * float(net.out.parity.weight.detach().pow(2).sum())
    assert float(p.trainer.penalties[0](net).detach()) == pytest.approx(expected, rel=1e-6)
    assert isinstance(net.out.parity, nn.Linear)


def test_resume_of_a_multitask_run_is_exact(workdir):
    cfg = rl.load_config(write(workdir / "mt.toml", SMALL), ["model.dropout=0.2", "regularization.ema=0.9"])
    assert_resume_exact(cfg, workdir / "state.safetensors")
