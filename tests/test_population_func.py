"""A user's network (``model.factory``) trained as a functional population (``torch.func``):
``engine.population.functional`` and its routing in ``runs.population``.

Tolerances. A network that draws no random numbers: each member equals its separate run to
float rounding -- final weights within atol 1e-5 and every epoch's train and validation loss
within 1e-5 (the vectorized kernels sum in another order; tanh keeps that at rounding level).
A network that draws (dropout, input and weight noise, DropConnect, augmentation): each member
draws from its own generator what its run alone draws (``engine.population.draws``), so the
same tolerances hold. Where the draws do not split per member (a ``randperm`` in the forward),
the masks come from one population stream: members are their runs' equal in distribution only
-- final validation accuracy within 0.1 and loss within 0.25 of the separate run's.
"""

from __future__ import annotations

import contextlib
import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import regulab as rl
from regulab.config.core import apply_overrides, config_from_dict
from regulab.engine.population.functional import FunctionalNet, layer_difference
from regulab.engine.population.population import Population
from regulab.engine.population.stacked import StackedNet, Unsupported
from regulab.errors import DivergedError
from regulab.runs.population import population_of, train_population
from regulab.runs.prepare import prepare
from regulab.runs.store import RunStore

from .test_population import assert_same_run, assert_stopped_apart, weights

ATOL = 1e-5     # weights and per-epoch losses of a member against its separate run


class MLP(nn.Module):
    """A user's MLP on 8x8 digits, with an optional dropout module."""

    def __init__(self, width: int = 16, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc2(self.drop(torch.tanh(self.fc1(x.flatten(1)))))


class ConvNet(nn.Module):
    """A user's 1-D conv net with batch norm: the digits' 64 pixels as one channel. The conv
    has no bias, as usual before batch norm: its gradient would be exactly 0 and, in floats,
    rounding noise, which Adam normalizes into steps of lr -- a member and its run would then
    walk apart on it (and on the running mean after it), whatever the engine."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv1d(1, channels, kernel_size=5, padding=2, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        self.fc = nn.Linear(channels * 16, 10)

    def forward(self, x):
        h = torch.tanh(self.bn(self.conv(x.reshape(len(x), 1, 64))))
        return self.fc(F.avg_pool1d(h, 4).flatten(1))


class ChannelConv(nn.Module):
    """A user's 1-D conv net with channel dropout (``nn.Dropout1d``, regulab's ``ChannelDropout``
    in the run) on its feature maps."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv1d(1, channels, kernel_size=5, padding=2)
        self.drop = nn.Dropout1d(0.2)
        self.fc1 = nn.Linear(channels * 64, 10)

    def forward(self, x):
        return self.fc1(self.drop(torch.tanh(self.conv(x.reshape(len(x), 1, 64)))).flatten(1))


class Branchy(nn.Module):
    """A network whose forward reads a value on the host: it cannot run under vmap."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return out if float(out.detach().mean()) < 1e9 else -out


BASE = {"name": "func", "data": {"dataset": "digits", "preprocess": "standardize", "train_size": 300},
        "model": {"factory": MLP},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 3, "batch_size": 64, "early_stopping": False, "progress": False,
                  "device": "cpu"}}

# members differing in seed, learning rate, weight decay, L1/L2, label smoothing, the EMA of
# the weights and the learning-rate schedule
MEMBERS = [{}, {"train.seed": 1, "optim.lr": 3e-3, "optim.schedule": "cosine"},
           {"train.seed": 2, "optim.weight_decay": 1e-2, "regularization.l2": 1e-3},
           {"regularization.label_smoothing": 0.1, "regularization.l1": 1e-4, "optim.lr": 2e-3,
            "regularization.ema": 0.9}]


def config(name: str = "func", **overrides):
    return config_from_dict(apply_overrides(BASE, {"name": name, **overrides}))


def configs(members=MEMBERS, **shared):
    return [config(f"func-{k}", **{**shared, **m}) for k, m in enumerate(members)]


def assert_equal_to_rounding(member, alone):
    """Member and separate run: the same epochs, losses within ATOL per epoch, weights within
    ATOL, and the same files (``assert_same_run``)."""
    assert len(member.history) == len(alone.history)
    for hm, ha in zip(member.history, alone.history):
        for key in ("train_loss", "val_loss"):
            assert abs(hm[key] - ha[key]) <= ATOL, (key, hm["epoch"], hm[key], ha[key])
    wm, wa = weights(member.run_dir), weights(alone.run_dir)
    assert set(wm) == set(wa)
    for name in wm:
        torch.testing.assert_close(wm[name], wa[name], atol=ATOL, rtol=0, msg=name)
    assert_same_run(member, alone, atol=ATOL)


def train_both(tmp_path, cfgs, caplog=None):
    """(population members, separate runs) of ``cfgs``; no run of the population trains alone."""
    db = f"sqlite:///{tmp_path}/runs.db"
    with caplog.at_level(logging.INFO, logger="regulab") if caplog else contextlib.nullcontext():
        members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    alone = [rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False) for k, c in enumerate(cfgs)]
    return members, alone


# -- members equal their separate runs -------------------------------------------------------

@pytest.mark.parametrize("factory", [MLP, ConvNet])
def test_members_equal_their_separate_runs_to_rounding(tmp_path, caplog, factory):
    """K = 4 members of a user's MLP, and of a Conv1d + batch-norm net (its running statistics
    stacked buffers), differing in seed, lr, weight decay, L1/L2, label smoothing, EMA and
    schedule (``MEMBERS``)."""
    cfgs = configs(**{"model.factory": factory})
    assert isinstance(population_of([prepare(c) for c in cfgs]).net, FunctionalNet)
    members, alone = train_both(tmp_path, cfgs, caplog)
    assert "trains alone" not in caplog.text
    for member, run in zip(members, alone):
        assert_equal_to_rounding(member, run)
    if factory is ConvNet:      # batch norm's running statistics came back to each member
        w = weights(members[1].run_dir)
        assert any(name.endswith("bn.running_mean") for name in w)
    assert sum(r["status"] == "completed" for r in RunStore(f"sqlite:///{tmp_path}/runs.db").runs()) == 8


def test_sgd_momentum_and_max_norm_members_equal_their_runs(tmp_path):
    """The optimizer's other rule (SGD with momentum) and max-norm on the user's Linear layers
    (radii per member, one member without)."""
    cfgs = configs([{"regularization.max_norm": 0.5}, {"train.seed": 1, "optim.lr": 0.02},
                    {"regularization.max_norm": 2.0, "optim.weight_decay": 1e-3}],
                   **{"optim.name": "momentum", "optim.lr": 0.05})
    members, alone = train_both(tmp_path, cfgs)
    for member, run in zip(members, alone):
        assert_equal_to_rounding(member, run)
    w = weights(members[0].run_dir)
    norms = [float(torch.linalg.vector_norm(v, dim=1).max()) for n, v in w.items() if n.endswith("weight")]
    assert max(norms) == pytest.approx(0.5, rel=1e-5), "the tight radius should bind"


def test_early_stopping_is_per_member(tmp_path):
    cfgs = configs([{"optim.lr": lr, "train.seed": s} for lr, s in [(0.3, 0), (0.05, 1), (0.2, 2)]],
                   **{"optim.name": "momentum", "train.epochs": 12, "train.early_stopping": True,
                      "train.patience": 2, "train.monitor": "val_loss"})
    members, alone = train_both(tmp_path, cfgs)
    for member, run in zip(members, alone):
        assert_equal_to_rounding(member, run)
    assert_stopped_apart(members)


def test_a_diverging_member_leaves_the_others_finished(tmp_path):
    """Member 1's L2 gradient step, w <- w (1 - 2 lr l2), overshoots a thousandfold per step: inf."""
    db = f"sqlite:///{tmp_path}/runs.db"
    cfgs = configs([{}, {"regularization.l2": 1e4}, {"optim.lr": 0.1}], **{"optim.name": "sgd", "optim.lr": 0.05})
    outs = [tmp_path / f"pop-{k}" for k in range(3)]
    runs = train_population(cfgs, outs, db=db, return_errors=True)
    assert isinstance(runs[1], DivergedError)
    assert [(o / "results.json").exists() for o in outs] == [True, False, True]
    status = {r["run_dir"]: r["status"] for r in RunStore(db).runs()}
    assert status[str(outs[1].resolve())] == "diverged"
    assert_equal_to_rounding(runs[2], rl.train(cfgs[2], out=tmp_path / "alone-2", db=db, progress=False))


# -- one step by hand ------------------------------------------------------------------------

def test_one_adam_step_of_a_member_recomputed_by_hand():
    """One full-batch step (batch_size >= the training split) of member 1 -- label smoothing,
    L2 in the loss, coupled weight decay, its own lr -- against Adam's formulas written out:
    g = dL/dw + 2 l2 w + wd w, m = (1 - b1) g, v = (1 - b2) g^2,
    w' = w - lr / (1 - b1) * m / (sqrt(v / (1 - b2)) + eps)."""
    over = {"train.epochs": 1, "train.batch_size": 512}
    cfgs = configs([{}, {"train.seed": 1, "optim.lr": 3e-3, "optim.weight_decay": 1e-2,
                         "regularization.l2": 1e-2, "regularization.label_smoothing": 0.2}], **over)
    preps = [prepare(c) for c in cfgs]
    net = copy.deepcopy(preps[1].trainer.model)        # member 1 before the step
    pop = population_of(preps)
    pop.fit(1)
    X, y = preps[1].splits["train"]
    lr, wd, l2, eps_ls = 3e-3, 1e-2, 1e-2, 0.2
    (b1, b2), eps = cfgs[1].optim.betas, cfgs[1].optim.eps
    logp = net(X).log_softmax(1)
    loss = (1 - eps_ls) * -logp[torch.arange(len(y)), y].mean() + eps_ls * -logp.mean()
    decayed = {id(net.fc1.weight), id(net.fc2.weight)}       # L2 and weight decay: weights only
    loss = loss + l2 * sum(p.pow(2).sum() for p in net.parameters() if id(p) in decayed)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    got = dict(preps[1].trainer.model.named_parameters())
    for (name, w), g in zip(net.named_parameters(), grads):
        g = g + wd * w.detach() if id(w) in decayed else g
        m, v = (1 - b1) * g, (1 - b2) * g * g
        expected = w.detach() - lr / (1 - b1) * m / ((v / (1 - b2)).sqrt() + eps)
        torch.testing.assert_close(got[name].detach(), expected, atol=1e-6, rtol=1e-5, msg=name)
        if id(w) in decayed:     # the wrong formula (no L2, no decay) does not pass
            g0 = g - wd * w.detach() - 2 * l2 * w.detach()
            wrong = w.detach() - lr * g0 / (g0.abs() + eps)
            assert not torch.allclose(got[name].detach(), wrong, atol=1e-6, rtol=1e-5), name


# -- randomness ------------------------------------------------------------------------------

@pytest.mark.parametrize("draws", [
    {"model.args": {"drop": 0.2}, "regularization.input_noise": 0.3, "regularization.weight_noise": 0.05},
    {"model.dropconnect": 0.2, "image.translate": 0.2, "image.scale": [0.8, 1.2]},
    {"model.factory": ChannelConv, "model.dropout": 0.3},
], ids=["dropout-and-noise", "dropconnect-and-augmentation", "channel-dropout"])
def test_members_that_draw_equal_their_separate_runs_to_rounding(tmp_path, caplog, draws):
    """Dropout, channel dropout, input and weight noise, DropConnect and image augmentation in a user's network:
    each member's masks, noise and augmentations are its run's (its own generator, in its
    run's order), so K = 4 members differing in seed, lr, decay, L1/L2, label smoothing, EMA
    and schedule end within the tolerance of members that draw nothing."""
    cfgs = configs(**{**draws, "train.epochs": 4})
    net = population_of([prepare(c) for c in cfgs]).net
    assert isinstance(net, FunctionalNet) and net.randomness == "different" and net.exact and not net.global_rng
    members, alone = train_both(tmp_path, cfgs, caplog)
    assert "trains alone" not in caplog.text
    for member, run in zip(members, alone):
        assert_equal_to_rounding(member, run)
    w = [next(v for n, v in weights(m.run_dir).items() if "fc1" in n and n.endswith("weight")) for m in members]
    assert not torch.allclose(w[0], w[1], atol=1e-3), "members of other seeds draw other masks"


def test_members_of_one_seed_draw_its_masks_and_others_differ():
    """In one training forward, members on one seed draw one mask (their runs are one run),
    members on another seed another one; each member's generator advanced as its run's."""
    cfgs = configs([{}, {}, {"train.seed": 1}], **{"model.args": {"drop": 0.5}})
    preps = [prepare(c) for c in cfgs]
    net = population_of(preps).net
    assert net.randomness == "different" and not net.global_rng and net.exact
    x = torch.ones(3, 8, 1, 8, 8)
    before = [g.get_state() for g in net.member_generators]
    out = net.forward(x, True)                              # equal weights but seed 1's: masks differ
    assert torch.equal(out[0], out[1]) and not torch.allclose(out[0], out[2])
    evaluated = net.forward(x, False)                       # no dropout in evaluation
    assert torch.equal(evaluated[0], evaluated[1])
    own = torch.Generator().set_state(before[2])           # member 2's run draws its mask alone
    keep = torch.rand((8, 16), generator=own) >= 0.5
    assert torch.equal(own.get_state(), net.member_generators[2].get_state())
    hidden = torch.tanh(preps[2].trainer.model.fc1(x[2].flatten(1)))
    expected = preps[2].trainer.model.fc2(hidden * keep / 0.5)
    torch.testing.assert_close(out[2], expected, atol=1e-6, rtol=1e-5)


class Permuting(MLP):
    """A forward that draws a permutation of its hidden units' order: ``randperm`` has no size
    with the members in front, so its draws do not split per member."""

    def __init__(self, generator=None):
        super().__init__(drop=0.2)
        self.generator = generator

    def forward(self, x):
        h = self.drop(torch.tanh(self.fc1(x.flatten(1))))
        if not self.training:
            return self.fc2(h)
        order = torch.randperm(h.shape[1], generator=self.generator)
        return self.fc2(h[:, order][:, order.argsort()])


def test_draws_that_do_not_split_fall_back_to_a_population_stream(tmp_path):
    """Where the draws do not split per member, they come from one stream seeded from the
    members' generators: each member within 0.1 accuracy and 0.25 loss of its separate run,
    members of one config end apart, and the same population twice is the same."""
    cfgs = configs([{}, {}, {}], **{"model.factory": Permuting, "train.epochs": 6})
    net = population_of([prepare(c) for c in cfgs]).net
    assert net.randomness == "different" and not net.exact
    members, alone = train_both(tmp_path, cfgs)
    for member, run in zip(members, alone):
        assert abs(member.results["val_acc"] - run.results["val_acc"]) <= 0.1
        assert abs(member.results["val_loss"] - run.results["val_loss"]) <= 0.25
    w = [weights(m.run_dir)["net.fc1.weight"] for m in members]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2]), "masks should differ"
    # separate runs of one config are the same run: the difference is the masks'
    assert torch.equal(weights(alone[0].run_dir)["net.fc1.weight"], weights(alone[1].run_dir)["net.fc1.weight"])
    again = train_population(cfgs, [tmp_path / f"again-{k}" for k in range(3)], db=f"sqlite:///{tmp_path}/r.db")
    assert torch.equal(weights(again[1].run_dir)["net.fc1.weight"], w[1]), "a population is reproducible"


# -- routing ---------------------------------------------------------------------------------

def test_regulab_networks_keep_the_stacked_path():
    cfgs = [config_from_dict(apply_overrides(BASE, {"model.factory": None, "model.hidden": [16],
                                                    "train.seed": s})) for s in (0, 1)]
    assert isinstance(population_of([prepare(c) for c in cfgs]).net, StackedNet)


def test_a_run_whose_layers_differ_trains_alone_and_says_why(tmp_path, caplog):
    """A drop probability per member would change the one module they share: the two runs
    at 0.1 train together, the one at 0.3 alone."""
    cfgs = configs([{"model.dropout": 0.1}, {"model.dropout": 0.3}, {"model.dropout": 0.1, "train.seed": 1}],
                   **{"model.args": {"drop": 0.5}})
    db = f"sqlite:///{tmp_path}/runs.db"
    with caplog.at_level(logging.INFO, logger="regulab"):
        runs = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(3)], db=db)
    alone = [m for m in caplog.messages if "trains alone" in m]
    assert alone == ["run func-1 trains alone: its layers differ from run func-0's (layer 'drop': "
                     "Dropout(drop_prob=0.3, mode='inverted') vs Dropout(drop_prob=0.1, mode='inverted')); "
                     "the members of a user network's population share its layers"], alone
    separate = rl.train(cfgs[1], out=tmp_path / "alone-1", db=db, progress=False)
    assert torch.equal(weights(runs[1].run_dir)["net.fc1.weight"], weights(separate.run_dir)["net.fc1.weight"])


def test_a_forward_that_cannot_be_vectorized_trains_alone(tmp_path, caplog):
    cfgs = configs([{}, {"train.seed": 1}], **{"model.factory": Branchy})
    with pytest.raises(Unsupported, match="its forward cannot run under torch.vmap"):
        population_of([prepare(c) for c in cfgs])
    with caplog.at_level(logging.INFO, logger="regulab"):
        runs = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(2)], db=f"sqlite:///{tmp_path}/r.db")
    alone = [m for m in caplog.messages if "trains alone" in m]
    assert len(alone) == 2 and all("its forward cannot run under torch.vmap" in m for m in alone), alone
    assert all(r.results["epochs_run"] == 3 for r in runs)


def test_networks_of_another_layout_are_refused():
    a, b = MLP(), MLP(width=8)
    assert layer_difference(a, a) is None
    assert layer_difference(a, b) == "layer 'fc1': Linear(in_features=64, out_features=8, bias=True) " \
                                     "vs Linear(in_features=64, out_features=16, bias=True)"
    with pytest.raises(Unsupported, match="member 1's network differs from member 0's"):
        FunctionalNet([a, b], [None, None], torch.zeros(2, 64))
    with pytest.raises(Unsupported, match="ConvNet vs MLP"):
        FunctionalNet([a, ConvNet()], [None, None], torch.zeros(2, 64))


def test_the_population_class_takes_either_network():
    """``Population(functional=True)`` runs the user's forward; ``StackedNet`` would read only
    the module's children (this MLP's tanh is in its forward), so a user's network never goes there."""
    preps = [prepare(c) for c in configs([{}, {"train.seed": 1}])]
    pop = Population([p.trainer for p in preps], [p.loader for p in preps], preps[0].splits["val"],
                     functional=True)
    assert isinstance(pop.net, FunctionalNet) and pop.net.K == 2
    x = preps[0].splits["val"][0][:5]
    torch.testing.assert_close(pop.net.forward(x.expand(2, *x.shape), False)[1],
                               preps[1].trainer.model.eval()(x))


def test_regulab_cnn_members_equal_their_separate_runs(tmp_path, caplog):
    """regulab's own CNN (``model.kind = "cnn"``, conv + pooling + a hidden layer) stacks the
    same way, members differing in seed, lr, weight decay, L2 and label smoothing."""
    cnn = {"model.factory": None, "model.kind": "cnn", "model.channels": [4, 8], "model.kernel_size": 3,
           "model.hidden": [16]}
    cfgs = configs(MEMBERS[:3] + [{"regularization.label_smoothing": 0.1, "optim.lr": 2e-3}], **cnn)
    assert isinstance(population_of([prepare(c) for c in cfgs]).net, FunctionalNet)
    members, alone = train_both(tmp_path, cfgs, caplog)
    assert "trains alone" not in caplog.text
    for member, run in zip(members, alone):
        assert_equal_to_rounding(member, run)
