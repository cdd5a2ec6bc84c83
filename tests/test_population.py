"""Population training: stacked networks and optimizers, and each member equal to its own run.

Members and separate runs agree to float rounding: the batched matmuls sum in another order
than a single network's. With tanh that stays at rounding level; with ReLU a pre-activation
within rounding of 0 can fall on the other side of the kink, and Adam, which normalizes
each gradient, then moves that weight by up to lr on one side only: the ReLU case compares
the weights to a few lr (``test_relu_members_agree_up_to_kinks``), the losses as tightly.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import regulab as rl
from regulab.config.core import apply_overrides as _apply
from regulab.config.core import config_from_dict
from regulab.engine.population.eligibility import population_key
from regulab.engine.population.optimizer import StackedOptimizer
from regulab.engine.population.penalty import StackedNormPenalty, member_runs
from regulab.engine.population import stacked as stacked_module
from regulab.engine.population.flat import FlatParams
from regulab.engine.population.stacked import StackedNet, Unsupported, OnRows
from regulab.errors import DivergedError
from regulab.modalities.image.augment import ImagePipeline
from regulab.modalities.layer import Augment
from regulab.nn.models import build_model
from regulab.runs import population as population_module
from regulab.engine.population.rows import MemberRows
from regulab.runs.population import population_of, train_population
from regulab.runs.prepare import prepare
from regulab.runs.store import RunStore

BASE = {"name": "pop", "data": {"dataset": "digits", "preprocess": "standardize", "train_size": 500},
        "model": {"kind": "mlp", "hidden": [24, 24], "activation": "tanh"},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 3, "batch_size": 64, "early_stopping": False, "progress": False}}


def config(base=BASE, **overrides):
    return config_from_dict(_apply(base, {k.replace("__", "."): v for k, v in overrides.items()}))


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def assert_same_run(a, b, atol=1e-4):
    """``a`` (population member) and ``b`` (separate run): history, results, weights, files."""
    assert len(a.history) == len(b.history)
    for ha, hb in zip(a.history, b.history):
        assert set(ha) == set(hb)
        for key in ha:
            if key != "seconds":
                assert ha[key] == pytest.approx(hb[key], rel=1e-4, abs=1e-5), key
    n_val = a.results["n_val"]
    for key, value in b.results.items():
        if key == "fit_seconds":
            continue
        if isinstance(value, float):    # an accuracy may differ by one near-tie example
            assert a.results[key] == pytest.approx(value, rel=1e-4, abs=1.01 / min(n_val, 100)), key
        else:
            assert a.results[key] == value, key
    wa, wb = weights(a.run_dir), weights(b.run_dir)
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=atol, rtol=1e-4, msg=name)
    assert (a.run_dir / "metrics.csv").read_text().splitlines()[0] == \
        (b.run_dir / "metrics.csv").read_text().splitlines()[0]
    assert (a.run_dir / "evaluation.json").is_file()
    assert (a.run_dir / "checkpoint" / "state.safetensors").is_file()


MEMBERS = {
    "adam": [{}, {"train__seed": 1, "model__dropout": 0.3},
             {"regularization__l2": 1e-3, "optim__lr": 2e-3},
             {"regularization__input_noise": 0.3, "model__dropout": [0.1, 0.5]},
             {"regularization__weight_noise": 0.05, "regularization__l1": 1e-4, "train__seed": 3},
             {"regularization__label_smoothing": 0.1, "model__input_dropout": 0.2, "train__seed": 5},
             {"optim__weight_decay": 1e-2, "model__dropout": 0.2}],
    "momentum": [{"optim__lr": 0.05}, {"optim__lr": 0.02, "model__dropout": 0.2, "train__seed": 2},
                 {"optim__lr": 0.05, "optim__weight_decay": 1e-3, "regularization__input_noise": 0.2}],
    "nesterov": [{"optim__lr": 0.05}, {"optim__lr": 0.03, "regularization__l2": 1e-3, "train__seed": 1}],
    "sgd": [{"optim__lr": 0.1}, {"optim__lr": 0.05, "model__dropout": 0.1, "regularization__l1": 1e-4}],
    "rmsprop": [{"optim__lr": 1e-3}, {"optim__lr": 5e-4, "regularization__weight_noise": 0.05}],
    "adamw": [{"optim__weight_decay": 0.01}, {"optim__weight_decay": 0.1, "model__dropout": 0.3}],
}


@pytest.mark.parametrize("optimizer", list(MEMBERS))
def test_each_member_equals_a_separate_run(tmp_path, optimizer):
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(optim__name=optimizer, **m) for m in MEMBERS[optimizer]]
    assert len({population_key(c) for c in cfgs}) == 1
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    for k, (c, member) in enumerate(zip(cfgs, members)):
        alone = rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False)
        assert_same_run(member, alone)
    rows = RunStore(db).runs()
    assert sum(r["status"] == "completed" for r in rows) == 2 * len(cfgs)


def test_relu_members_agree_up_to_kinks(tmp_path):
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(model__activation="relu", **m) for m in MEMBERS["adam"][:4]]
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    for k, (c, member) in enumerate(zip(cfgs, members)):
        alone = rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False)
        assert_same_run(member, alone, atol=3 * c.optim.lr)


def test_regression_and_classic_dropout_members(tmp_path):
    base = _apply(BASE, {"data.dataset": "sine", "data.train_size": None,
                         "model.dropout_mode": "classic", "train.batch_size": 32})
    cfgs = [config(base, model__dropout=0.2), config(base, model__dropout=0.4, train__seed=1),
            config(base, regularization__l2=1e-3)]
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(3)], db=f"sqlite:///{tmp_path}/r.db")
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert "val_r2" in member.results
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=f"sqlite:///{tmp_path}/r.db",
                                         progress=False))


def test_bagging_members_equal_their_runs(tmp_path):
    """Bagging (``data.bootstrap``): each member trains on its own bootstrap resample, and with
    ``standardize`` fitted on it, validates on its own inputs too; a member without a resample
    stacks with them; each equals its separate run, early stopping and eval_train included."""
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(data__bootstrap=True), config(data__bootstrap=True, train__seed=1, model__dropout=0.2),
            config(train__seed=2, regularization__l2=1e-3),
            config(data__bootstrap=True, train__seed=3, train__eval_train=True)]
    assert len({population_key(c) for c in cfgs}) == 1
    pop = population_of([prepare(c) for c in cfgs])                    # stacked, not trained alone
    assert pop.train.own and pop.val.own and pop.train.X.shape[:2] == (4, 500)
    member_rows = [prepare(c).loader.X for c in cfgs]
    assert not torch.equal(member_rows[0], member_rows[1]), "each resample is its own"
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))
    assert "clean_train_loss" in members[3].history[-1]


def test_member_rows_gather_each_members_examples():
    """``MemberRows``: shared rows expanded, own rows gathered per member -- recomputed by indexing."""
    X, y = torch.randn(3, 6, 2), torch.randint(0, 5, (3, 6))
    own = MemberRows([(X[k], y[k]) for k in range(3)], "training")
    shared = MemberRows([(X[0], y[0])] * 3, "training")
    assert own.own and not shared.own and own.n == shared.n == 6
    idx = torch.tensor([[0, 5], [1, 1], [4, 2]])
    xb, yb = own.batch(idx)
    for k in range(3):
        assert torch.equal(xb[k], X[k][idx[k]]) and torch.equal(yb[k], y[k][idx[k]])
    xs, _ = shared.batch(idx)
    assert all(torch.equal(xs[k], X[0][idx[k]]) for k in range(3))
    xc, yc = own.chunk(2, 4)
    assert torch.equal(xc, X[:, 2:4]) and torch.equal(yc, y[:, 2:4])
    kept = own.select([2, 0])
    assert torch.equal(kept.member(0)[0], X[2]) and torch.equal(kept.member(1)[1], y[0])
    with pytest.raises(Unsupported, match="differ in number or shape"):
        MemberRows([(X[0], y[0]), (X[1][:5], y[1][:5])], "training")


def test_augmented_members_equal_their_runs(tmp_path):
    """MNIST-1D's shift and stretch (``[image]``) as a member key: members with different
    strengths, and one without, each draw their own augmentation first in every step."""
    db = f"sqlite:///{tmp_path}/runs.db"
    base = _apply(BASE, {"data.dataset": "mnist1d", "data.preprocess": "none", "data.train_size": 300,
                         "model.hidden": [16]})
    cfgs = [config(base, image__translate=0.1), config(base, image__translate=0.2, image__scale=[0.9, 1.1],
                                                       model__dropout=0.2, train__seed=1),
            config(base, model__dropout=0.3), config(base, image__scale=[0.8, 1.2], regularization__input_noise=0.1)]
    assert len({population_key(c) for c in cfgs}) == 1
    ops = population_of([prepare(c) for c in cfgs]).net.ops      # stacked, not trained alone
    assert [op.members for op in ops if op.kind == "augment"] == [[0, 1, 3]]
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))


def count_rows(monkeypatch) -> list[int]:
    """The rows of every ``shift_scale_1d`` call the stacked network makes (its batched path)."""
    rows, inner = [], stacked_module.shift_scale_1d

    def spy(x, *args):
        rows.append(len(x))
        return inner(x, *args)
    monkeypatch.setattr(stacked_module, "shift_scale_1d", spy)
    return rows


def test_members_with_different_shifts_and_stretches_are_augmented_together(tmp_path, monkeypatch):
    """Three members with their own translate and scale and one without augmentation: one
    ``shift_scale_1d`` over the three members' rows per step, each member still its own run."""
    db = f"sqlite:///{tmp_path}/runs.db"
    base = _apply(BASE, {"data.dataset": "mnist1d", "data.preprocess": "none", "data.train_size": 300,
                         "model.hidden": [16]})
    cfgs = [config(base, image__translate=0.05, image__scale=[0.9, 1.1]),
            config(base, image__translate=0.3, image__scale=[0.7, 1.0], train__seed=1),
            config(base, model__dropout=0.2, train__seed=2),
            config(base, image__translate=0.15, image__scale=[1.0, 1.3], model__dropout=0.1, train__seed=3)]
    rows = count_rows(monkeypatch)
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    batch, n = cfgs[0].train.batch_size, members[0].results["n_train"]
    assert len(rows) == 3 * math.ceil(n / batch) and set(rows) == {3 * batch, 3 * (n % batch)}
    monkeypatch.undo()
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))


def test_max_norm_members_equal_their_runs(tmp_path):
    """Max-norm radii as a member key: tight (every unit projected back), loose, and none; each
    member equals its run alone, its logged largest unit norm included."""
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(regularization__max_norm=0.5, optim__lr=1e-2),
            config(regularization__max_norm=3.0, model__dropout=0.2, train__seed=1, optim__lr=1e-2),
            config(optim__lr=1e-2)]
    assert len({population_key(c) for c in cfgs}) == 1
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(3)], db=db)
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))
    w = weights(members[0].run_dir)
    norms = [float(torch.linalg.vector_norm(v, dim=1).max()) for name, v in w.items() if v.dim() == 2]
    assert max(norms) == pytest.approx(0.5, rel=1e-5), "the tight radius should bind"
    assert members[0].history[-1]["max_unit_norm"] == pytest.approx(0.5, rel=1e-5)


def test_early_stopping_is_per_member(tmp_path):
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(optim__name="momentum", optim__lr=lr, train__seed=s, train__epochs=12,
                   train__early_stopping=True, train__patience=2, train__monitor="val_loss")
            for lr, s in [(0.3, 0), (0.05, 1), (0.2, 2)]]
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(3)], db=db)
    alone = [rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False) for k, c in enumerate(cfgs)]
    for member, run in zip(members, alone):
        assert_same_run(member, run)
    assert_stopped_apart(members)


def assert_stopped_apart(members) -> None:
    """Early stopping was per member: members stopped at different epochs, some early."""
    assert len({m.results["epochs_run"] for m in members}) > 1, "members should stop at different epochs"
    assert any(m.results["stopped_early"] for m in members)


def test_a_killed_population_resumes_member_by_member(tmp_path):
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(train__epochs=4, train__seed=s, model__dropout=p, optim__weight_decay=wd)
            for s, p, wd in [(0, 0.0, 0.0), (1, 0.3, 1e-2)]]     # 1 and 2 parameter groups
    outs = [tmp_path / f"pop-{k}" for k in range(2)]

    def kill(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_population(cfgs, outs, db=db, on_epoch=kill)
    assert not any((o / "results.json").exists() for o in outs)
    assert {r["status"] for r in RunStore(db).runs()} == {"failed"}
    for k, (c, out) in enumerate(zip(cfgs, outs)):
        resumed = rl.resume(out, progress=False)
        assert_same_run(resumed, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))


def test_a_diverging_member_leaves_the_others_finished(tmp_path):
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = [config(optim__name="sgd", optim__lr=lr, model__activation="relu") for lr in (0.05, 1e12, 0.1)]
    outs = [tmp_path / f"pop-{k}" for k in range(3)]
    with pytest.raises(DivergedError):
        train_population(cfgs, outs, db=db)
    assert [(o / "results.json").exists() for o in outs] == [True, False, True]
    status = {r["run_dir"]: r["status"] for r in RunStore(db).runs()}
    assert status[str(outs[1].resolve())] == "diverged"


# -- the pieces, against torch's own ---------------------------------------------------------

def member_nets(overrides: list[dict], shape=(64,), n_out=10):
    nets, gens = [], []
    for k, o in enumerate(overrides):
        c = config(**o)
        nets.append(build_model(c.model, shape, n_out, torch.Generator().manual_seed(k), c.regularization))
        gens.append(torch.Generator().manual_seed(100 + k))
    return nets, gens


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_stacked_forward_draws_what_each_network_draws(mode):
    overrides = [{"model__dropout": [0.1, 0.5], "model__dropout_mode": mode},
                 {"model__dropout_mode": mode},
                 {"model__input_dropout": 0.2, "regularization__input_noise": 0.3, "model__dropout_mode": mode},
                 {"regularization__weight_noise": 0.1, "model__dropout": 0.3, "model__dropout_mode": mode}]
    assert_forward_follows_each_network(overrides)


TRAINING_STEPS = 7      # assert_forward_follows_each_network's


def assert_forward_follows_each_network(overrides: list[dict], x=None):
    """The networks of ``overrides`` stacked, against each network alone (its generator in
    step): ``TRAINING_STEPS`` steps, masks drawn, then predrawn in blocks of 3, 2 (an epoch's
    last, shorter block, in the buffers of the first) and 1 step, then evaluation. Returns
    (the stacked net, the networks alone)."""
    nets, gens = member_nets(overrides)
    twins, twin_gens = member_nets(overrides)           # the same networks, generators in step
    for net, g in zip(twins, twin_gens):
        rl.nn.layers.set_generator(net, g)
    stacked = StackedNet(nets, gens)
    x = torch.randn(len(nets), 16, 64) if x is None else x
    for block, step in [(None, None), (3, 0), (None, 1), (None, 2), (2, 0), (None, 1), (1, 0)]:
        if block is not None:
            stacked.predraw(16, block)
        out = stacked.forward(x, True, step)
        for k, net in enumerate(twins):
            torch.testing.assert_close(out[k], net.train()(x[k]), atol=1e-5, rtol=1e-5)
    out = stacked.forward(x, False)
    for k, net in enumerate(twins):
        torch.testing.assert_close(out[k], net.eval()(x[k]), atol=1e-5, rtol=1e-5)
    return stacked, twins


@pytest.mark.parametrize("sample", [(40,), (2, 40)])
@pytest.mark.parametrize("std", [0.5, 2.0])
def test_stacked_1d_augmentation_draws_what_each_pipeline_draws(sample, std, monkeypatch):
    """Members' shift and stretch of 1-D samples: one ``shift_scale_1d`` over the rows of the
    members that draw, then one normalize, when they normalize alike (else one by one). Member 3
    only normalizes (draws nothing), member 2 has no augmentation, member 4 is inactive."""
    keys = [{"translate": 0.05, "mean": [0.1], "std": [0.5]},
            {"translate": 0.3, "scale": [0.7, 1.3], "mean": [0.1], "std": [std]}, None,
            {"mean": [0.1], "std": [0.5]}, {"translate": 0.2, "mean": [0.1], "std": [0.5]}]

    nets = [nn.Sequential(*([] if k is None else [Augment(ImagePipeline(**k))]),
                          nn.Flatten(), nn.Linear(math.prod(sample), 3)) for k in keys]
    twins = copy.deepcopy(nets)                         # the same networks, generators in step
    gens, twin_gens = ([torch.Generator().manual_seed(100 + k) for k in range(len(keys))] for _ in range(2))
    for net, g in zip(twins, twin_gens):
        rl.nn.layers.set_generator(net, g)
    stacked = StackedNet(nets, gens)
    stacked.active[4] = False
    rows = count_rows(monkeypatch)
    x = torch.randn(len(keys), 16, *sample)
    for _ in range(2):
        out = stacked.forward(x, True)
        for k, net in enumerate(twins):
            expected = net[1:](x[k]) if k == 4 else net.train()(x[k])
            torch.testing.assert_close(out[k], expected, atol=1e-5, rtol=1e-5)
    assert rows == ([2 * 16] * 2 if std == 0.5 else [])          # members 0 and 1 draw
    out = stacked.forward(x, False)
    for k, net in enumerate(twins):
        torch.testing.assert_close(out[k], net.eval()(x[k]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("add", [False, True], ids=["product", "sum"])
def test_a_mask_or_noise_on_some_members_rows_is_the_full_product_with_ones(add):
    """``StackedNet``'s ``OnRows``: rows ``idx`` multiplied (shifted) by their factors, the
    others untouched -- bit for bit ``x * f`` (``x + f``) with ``f`` 1 (0) elsewhere, and the
    gradient autograd gives that product (sum)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 4, generator=g, requires_grad=True)
    idx = torch.tensor([1, 3])
    factor = torch.rand(2, 3, 4, generator=g)
    full = torch.zeros(5, 3, 4) if add else torch.ones(5, 3, 4)
    full[idx] = factor
    out = OnRows.apply(x, idx, factor, add)
    expected = x + full if add else x * full
    assert torch.equal(out, expected.detach())
    upstream = torch.randn(5, 3, 4, generator=g)
    (grad,) = torch.autograd.grad(out, x, upstream)
    (wanted,) = torch.autograd.grad(expected, x, upstream)
    assert torch.equal(grad, wanted)
    assert torch.equal(out[[0, 2, 4]], x[[0, 2, 4]].detach()), "the other rows as they were"


def test_optimizers_differing_beyond_lr_and_decay_are_refused():
    own = [[torch.zeros(3, requires_grad=True)] for _ in range(2)]
    opts = [torch.optim.Adam(own[0], betas=(0.9, 0.999)), torch.optim.Adam(own[1], betas=(0.8, 0.999))]
    with pytest.raises(Unsupported, match="differ"):
        StackedOptimizer(FlatParams(own), opts)


def test_layers_without_a_stacked_form_are_refused():
    gens = [torch.Generator().manual_seed(k) for k in range(2)]
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LayerNorm(8), nn.Linear(8, 10)) for _ in gens]
    with pytest.raises(Unsupported, match="LayerNorm"):
        StackedNet(nets, gens)
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8, momentum=None)) for _ in gens]
    with pytest.raises(Unsupported, match="momentum"):
        StackedNet(nets, gens)
    nets, gens = member_nets([{"model__hidden": [8]}, {"model__hidden": [16]}])
    with pytest.raises(Unsupported, match="differ"):
        StackedNet(nets, gens)
    nets, gens = member_nets([{"model__batchnorm": True}, {}])     # batch norm is a shared key
    with pytest.raises(Unsupported, match="differ"):
        StackedNet(nets, gens)


OPTIMIZERS = [   # members differ in lr and weight decay (population keys), share the rest
    (torch.optim.SGD, [{"lr": 0.1}, {"lr": 0.05, "weight_decay": 0.01}]),
    (torch.optim.SGD, [{"lr": 0.1, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}]),
    (torch.optim.SGD, [{"lr": 0.1, "momentum": 0.8, "nesterov": True}, {"lr": 0.2, "momentum": 0.8, "nesterov": True}]),
    (torch.optim.Adam, [{"lr": 1e-3, "betas": (0.8, 0.99), "eps": 1e-6},
                        {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}]),
    (torch.optim.AdamW, [{"lr": 1e-3, "weight_decay": 0.1}, {"lr": 3e-3, "weight_decay": 0.0}]),
    (torch.optim.RMSprop, [{"lr": 1e-3, "alpha": 0.9}, {"lr": 1e-2, "alpha": 0.9, "weight_decay": 0.01}]),
]


@pytest.mark.parametrize("cls, options", OPTIMIZERS)
def test_stacked_optimizer_follows_torch_member_by_member(cls, options):
    gen = torch.Generator().manual_seed(0)
    own = [[torch.randn(s, generator=gen).requires_grad_() for s in SHAPES] for _ in options]
    opts = [cls(params, **o) for params, o in zip(own, options)]
    assert_stacked_steps_follow(own, opts, gen, lambda params, k: cls(params, **options[k]))


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_stacked_optimizer_decays_what_each_members_groups_decay(name):
    """Members built by ``build_optimizer``: no decay (one group), or decay on the weight and
    none on the bias (two groups) -- a per-element mask in the stacked step."""
    from regulab.config.sections import OptimConfig
    from regulab.engine.optimizers import build_optimizer
    gen = torch.Generator().manual_seed(1)
    cfgs = [OptimConfig(name=name, lr=0.05, weight_decay=wd) for wd in (0.0, 0.1, 0.5)]
    own = [[torch.randn(s, generator=gen).requires_grad_() for s in SHAPES] for _ in cfgs]
    opts = [build_optimizer(c, params) for c, params in zip(cfgs, own)]
    assert [len(o.param_groups) for o in opts] == [1, 2, 2]
    assert_stacked_steps_follow(own, opts, gen, lambda params, k: build_optimizer(cfgs[k], params))


SHAPES = [(5,), (5, 3)]      # a bias first: its no-decay group comes second


def assert_stacked_steps_follow(own, opts, gen, fresh):
    """5 steps of random gradients through the members' optimizers ``opts`` and through one
    ``StackedOptimizer``: the same weights, and member k's exported state (into
    ``fresh(params, k)``, a new optimizer like member k's) equal to its own optimizer's."""
    flat = FlatParams(own)
    stacked = flat.params
    sopt = StackedOptimizer(flat, opts)
    for _ in range(5):
        grads = [torch.randn(len(own), *s, generator=gen) for s in SHAPES]
        for k, (params, opt) in enumerate(zip(own, opts)):
            for p, g in zip(params, grads):
                p.grad = g[k].clone()
            opt.step()
        for p, g in zip(stacked, grads):
            p.grad.copy_(g)
        sopt.step()
    for k, params in enumerate(own):
        for p, s in zip(params, stacked):
            torch.testing.assert_close(s[k], p.detach(), atol=1e-6, rtol=1e-5)
        fresh_params = [torch.zeros_like(p) for p in params]
        exported = fresh(fresh_params, k)
        sopt.export(k, exported, fresh_params)
        theirs = opts[k].state_dict()["state"]
        mine = exported.state_dict()["state"]
        assert set(mine) == set(theirs)
        for i in theirs:
            assert set(mine[i]) == set(theirs[i])
            for name, value in theirs[i].items():
                torch.testing.assert_close(mine[i][name], value, atol=1e-6, rtol=1e-5)


def test_stacked_penalty_recomputes_l1_and_l2():
    cfgs = [config(regularization__l1=1e-3), config(regularization__l2=1e-2, train__seed=1), config()]
    pop = population_of([prepare(c) for c in cfgs])
    penalty = pop.penalty.value().detach().numpy()
    for k, t in enumerate(pop.trainers):
        ws = [w.detach().numpy() for name, w in t.model.named_parameters() if name.endswith("weight")]
        r = cfgs[k].regularization
        expected = r.l1 * sum(np.abs(w).sum() for w in ws) + r.l2 * sum((w ** 2).sum() for w in ws)
        assert penalty[k] == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_member_runs_group_consecutive_equal_nonzero_values():
    assert member_runs([0, 1e-3, 1e-3, 0, 2e-3, 2e-3, 1e-3]) == [(1e-3, 1, 3), (2e-3, 4, 6), (1e-3, 6, 7)]
    assert member_runs([0.0, 0.0]) == []


def test_stacked_norm_penalty_gradient_is_autograds():
    """``add_gradient`` adds, per member, the gradient autograd gives for
    ``l1_k sum |w| + l2_k sum w^2`` (members with and without, in runs and alone)."""
    torch.manual_seed(0)
    l1, l2 = [0.0, 1e-2, 1e-2, 0.0, 3e-2, 0.0], [0.5, 0.0, 0.5, 0.5, 0.0, 0.0]
    ws = [torch.randn(6, 4, 3), torch.randn(6, 5)]
    grads = [torch.randn_like(w) for w in ws]
    pen = StackedNormPenalty(ws, [g.clone() for g in grads], l1, l2)
    pen.add_gradient()
    for i, (w, g) in enumerate(zip(ws, grads)):
        for k in range(6):
            wk = w[k].clone().requires_grad_()
            (l1[k] * wk.abs().sum() + l2[k] * wk.square().sum()).backward()
            torch.testing.assert_close(pen.grads[i][k], g[k] + wk.grad, rtol=1e-6, atol=1e-7)
    expected = [l1[k] * sum(w[k].abs().sum() for w in ws) + l2[k] * sum(w[k].square().sum() for w in ws)
                for k in range(6)]
    torch.testing.assert_close(pen.value(), torch.stack([torch.as_tensor(e) for e in expected]).float(),
                               rtol=1e-6, atol=0.0)


def test_population_key_groups_only_member_differences():
    base = population_key(config())
    assert base is not None
    for o in [{"train__seed": 4}, {"model__dropout": 0.5}, {"regularization__l2": 0.1},
              {"regularization__label_smoothing": 0.2}, {"optim__lr": 0.1}, {"name": "other"},
              {"regularization__max_norm": 3.0}, {"model__dropconnect": 0.2}, {"regularization__ema": 0.9},
              {"eval__dropout_inference": "mc_mean"}]:
        assert population_key(config(**o)) == base, o
    for o in [{"model__hidden": [10]}, {"optim__name": "sgd"}, {"train__epochs": 4},
              {"data__train_size": 300}, {"model__dropout_mode": "classic"}, {"model__batchnorm": True},
              {"model__kind": "cnn"}]:
        assert population_key(config(**o)) not in (None, base), o
    for o in [{"data__resident": False}]:
        assert population_key(config(**o)) is None, o
    assert population_key(config(data__bootstrap=True)) == base, "bagging members stack"
    with pytest.raises(ValueError, match="differ only in"):
        train_population([config(), config(optim__name="sgd")])


def test_studies_train_populations_automatically(tmp_path, monkeypatch):
    calls = []
    real = population_module.train_population

    def spy(cfgs, *args, **kwargs):
        calls.append(len(cfgs))
        return real(cfgs, *args, **kwargs)
    from regulab.studies import runner as study_module
    monkeypatch.setattr(study_module, "train_population", spy)
    cfg = config(train__epochs=2)
    variants = {"l2": {"regularization.l2": 1e-3}, "dropout": {"model.dropout": 0.3},
                "bn": {"model.batchnorm": True}}
    pooled = rl.study(cfg, variants=variants, seeds=2, out=tmp_path / "pooled",
                      db=f"sqlite:///{tmp_path}/a.db", progress=False)
    assert calls == [6, 2]      # baseline, l2 and dropout x 2 seeds; batch norm's 2 seeds
    monkeypatch.setattr(study_module, "train_population", real)
    raw = json.loads((tmp_path / "pooled" / "study.json").read_text())
    assert raw["population"] == 64
    alone = rl.run_study(_spec(cfg, variants, population=0),
                         out=tmp_path / "alone", db=f"sqlite:///{tmp_path}/b.db", progress=False)
    for name in ["baseline", "l2", "dropout", "bn"]:
        a, b = pooled.variant(name), alone.variant(name)
        assert a["stats"]["test_acc"]["mean"] == pytest.approx(b["stats"]["test_acc"]["mean"], abs=0.02), name


def _spec(cfg, variants, population):
    from regulab.studies.spec import study_from_dict
    return study_from_dict({"study": {"name": "alone", "seeds": 2, "population": population},
                            "base": cfg.to_dict(), "variants": {"baseline": {}, **variants}})
