"""Stacked forms of DropConnect, batch normalization and the EMA of the weights: members that
differ in them (and one without) each equal their separate run (``assert_same_run``)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import regulab as rl
from regulab.config.core import apply_overrides as _apply
from regulab.engine.population.ema import StackedEMA
from regulab.engine.population.eligibility import population_key
from regulab.engine.population.population import unstackable
from regulab.engine.population.stacked import StackedNet
from regulab.runs.population import population_of, train_population
from regulab.regularize.ema import EMA
from regulab.runs.prepare import prepare
from tests.test_population import (BASE, TRAINING_STEPS, assert_forward_follows_each_network, assert_same_run,
                                   config, member_nets)

MNIST1D = _apply(BASE, {"data.dataset": "mnist1d", "data.preprocess": "none", "data.train_size": 300,
                        "model.hidden": [16, 16]})


def trained_alike(tmp_path, cfgs, **overrides):
    """Train ``cfgs`` (with ``overrides``) as one population and each alone; every member
    equals its run. None trains alone in the population (it would say so on the logger)."""
    cfgs = [config(c.to_dict(), **overrides) for c in cfgs]
    db = f"sqlite:///{tmp_path}/runs.db"
    assert len({population_key(c) for c in cfgs}) == 1 and None not in {population_key(c) for c in cfgs}
    said = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("regulab")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [m for m in said if "trains alone" in m], said
    for k, (c, member) in enumerate(zip(cfgs, members)):
        assert_same_run(member, rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False))
    return members


# -- DropConnect -------------------------------------------------------------------------------

@pytest.mark.parametrize("per_example", [False, True])
def test_stacked_dropconnect_draws_what_each_network_draws(per_example):
    """DropConnect members (one mask per batch, or per example) beside dropout and weight-noise
    members; the masks predrawn for the members whose only draws are uniforms."""
    dc = {"model__dropconnect_per_example": per_example}
    overrides = [{"model__dropconnect": 0.3, "model__dropout": 0.2, **dc}, {},
                 {"model__dropconnect": 0.1, "regularization__weight_noise": 0.1, **dc},
                 {"regularization__weight_noise": 0.1, "model__dropout": 0.3},
                 {"model__dropconnect": 0.5, **dc}]
    stacked, _ = assert_forward_follows_each_network(overrides)
    assert [op.drops for op in stacked.ops if op.kind == "linear"] == [[0, 2, 4], [0, 2, 4], []]
    predrawn = {id(op) for op in stacked.ops if op.kind == "dropout" or op.drops}   # members 0 and 4's
    assert set(stacked._masks or {}) == (set() if per_example else predrawn)


def test_dropconnect_members_equal_their_runs(tmp_path):
    """Members with DropConnect at three probabilities (one also with dropout, one with input
    noise: its masks drawn step by step) and two without (one with weight noise)."""
    cfgs = [config(model__dropconnect=0.1), config(model__dropconnect=0.3, model__dropout=0.2, train__seed=1),
            config(model__dropconnect=0.2, regularization__input_noise=0.1, train__seed=2),
            config(regularization__weight_noise=0.05), config(train__seed=3)]
    ops = population_of([prepare(c) for c in cfgs]).net.ops      # stacked, not trained alone
    assert [op.drops for op in ops if op.kind == "linear"] == [[0, 1, 2], [0, 1, 2], []]
    trained_alike(tmp_path, cfgs)


def test_per_example_dropconnect_members_equal_their_runs(tmp_path):
    cfgs = [config(model__dropconnect=0.2, model__dropconnect_per_example=True, model__hidden=[12]),
            config(model__dropconnect_per_example=True, model__hidden=[12], train__seed=1)]
    trained_alike(tmp_path, cfgs)


# -- batch normalization -----------------------------------------------------------------------

@pytest.mark.parametrize("position", ["before", "after"])
def test_stacked_batchnorm_normalizes_each_members_batch(position):
    """Each member's features normalized over its own batch in training, its running statistics
    updated as its network's and used in evaluation, and written back into its layers."""
    bn = {"model__batchnorm": True, "model__batchnorm_position": position}
    overrides = [{**bn, "model__dropout": 0.2}, bn, {**bn, "model__dropconnect": 0.3}]
    stacked, twins = assert_forward_follows_each_network(overrides, torch.randn(3, 16, 64) * 3 + 1)
    norms = [op.norm for op in stacked.ops if op.kind == "batchnorm"]
    assert len(norms) == 2
    for k, twin in enumerate(twins):
        stacked.write_back(k)
        for norm, theirs in zip(norms, [m for m in twin.modules() if isinstance(m, nn.BatchNorm1d)]):
            mine = norm.modules[k]
            assert int(mine.num_batches_tracked) == int(theirs.num_batches_tracked) == TRAINING_STEPS
            torch.testing.assert_close(mine.running_mean, theirs.running_mean, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(mine.running_var, theirs.running_var, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("position", ["before", "after"])
def test_batchnorm_members_equal_their_runs(tmp_path, position):
    """Batch norm is shared (members with and without it differ in their layers); members with
    it differ in dropout, DropConnect, L2 (which spares gamma and beta, as weight decay does).
    On MNIST-1D: an input constant over a batch (digits' border pixels) gets a gradient that is
    0 up to rounding once batch norm removes the batch's mean, which Adam scales up to lr."""
    bn = {"model__batchnorm": True, "model__batchnorm_position": position}
    cfgs = [config(MNIST1D, **bn), config(MNIST1D, **bn, model__dropout=0.2, train__seed=1),
            config(MNIST1D, **bn, model__dropconnect=0.2, regularization__l2=1e-3, train__seed=2),
            config(MNIST1D, **bn, optim__weight_decay=1e-2, optim__lr=2e-3)]
    assert population_key(cfgs[0]) != population_key(config(MNIST1D))
    trained_alike(tmp_path, cfgs)


# -- the EMA of the weights --------------------------------------------------------------------

def test_stacked_ema_follows_each_members_ema():
    """Members with decays 0.9 and 0.5 (one without bias correction) and one without an EMA:
    after each step the stacked average is each ``EMA``'s, and ``write_back`` gives each its state."""
    nets, _ = member_nets([{}, {}, {}])
    twins, _ = member_nets([{}, {}, {}])
    emas = [EMA(nets[0], 0.9), None, EMA(nets[2], 0.5, bias_correction=False)]
    twin_emas = [EMA(twins[0], 0.9), None, EMA(twins[2], 0.5, bias_correction=False)]
    stacked = StackedNet(nets, [torch.Generator() for _ in nets])
    ema = StackedEMA(stacked.flat, emas)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        with torch.no_grad():
            stacked.flat.data.add_(torch.randn(stacked.flat.data.shape, generator=gen))
            for k, twin in enumerate(twins):
                for p, s in zip(twin.parameters(), stacked.params):
                    p.copy_(s[k])
        ema.update()
        for e in twin_emas:
            if e is not None:
                e.update()
        with ema.swapped():
            for k, twin in enumerate(twins):
                expected = twin_emas[k].averaged() if twin_emas[k] is not None else twin.state_dict()
                for (name, _), s in zip(twin.named_parameters(), stacked.params):
                    torch.testing.assert_close(s[k], expected[name], atol=1e-6, rtol=1e-6, msg=name)
    for k in range(3):
        stacked.write_back(k)
        ema.write_back(k)
    for mine, theirs in [(emas[0], twin_emas[0]), (emas[2], twin_emas[2])]:
        assert mine.t == theirs.t == 4
        for name, value in theirs.shadow.items():
            torch.testing.assert_close(mine.shadow[name], value, atol=1e-6, rtol=1e-6, msg=name)


def test_ema_members_equal_their_runs(tmp_path):
    """Members with decays 0.9 and 0.99 (one with dropout, one with max-norm) and one without:
    validation scored with each member's average, its EMA state, checkpoint and final model
    (the average) its run's."""
    cfgs = [config(regularization__ema=0.9), config(regularization__ema=0.99, model__dropout=0.2, train__seed=1),
            config(train__seed=2), config(regularization__ema=0.9, regularization__max_norm=1.0, train__seed=3)]
    pop = population_of([prepare(c) for c in cfgs])                 # stacked, not trained alone
    assert pop.ema is None and all(unstackable(t) is None for t in pop.trainers)
    members = trained_alike(tmp_path, cfgs, train__eval_train=True)
    assert members[0].history[-1]["val_loss"] != members[2].history[-1]["val_loss"]


def test_ema_members_with_early_stopping_equal_their_runs(tmp_path):
    """Early stopping keeps the averaged weights validation saw; members stop at different
    epochs and the others go on as a smaller population, each EMA continuing from its state."""
    cfgs = [config(optim__name="momentum", optim__lr=lr, regularization__ema=d, train__seed=s, train__epochs=12,
                   train__early_stopping=True, train__patience=2, train__monitor="val_loss")
            for lr, d, s in [(0.3, 0.9, 0), (0.05, 0.0, 1), (0.2, 0.5, 2), (0.1, 0.9, 3)]]
    members = trained_alike(tmp_path, cfgs)
    assert len({m.results["epochs_run"] for m in members}) > 1, "members should stop at different epochs"
