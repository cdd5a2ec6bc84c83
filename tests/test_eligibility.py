"""Which runs stack into a population, derived from the config keys' population tags
(``regulab.engine.population.eligibility``), and what makes a run train alone: a blocking key,
a callback that cannot be stacked -- each logged with its reason, each run's results those of
a separate run.

The expected sets are recomputed here from the sections' dataclass fields, independently of
the module's walker; a new config key without a population tag fails
``test_every_config_key_has_a_population_tag``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import regulab as rl
from regulab.callbacks import Callback, EarlyStopping, ProgressBar
from regulab.checks import IGNORED, MEMBER, SHARED, Section, Stack, key, number, string
from regulab.config.core import Config, apply_overrides, config_from_dict
from regulab.config.sections import SECTIONS
from regulab.engine.population import eligibility
from regulab.engine.population.eligibility import (BLOCKING_KEYS, IGNORED_KEYS, MEMBER_KEYS, config_tags,
                                                   ineligible, population_key, section_tags)
from regulab.engine.population.population import Population, unstackable
from regulab.engine.population.stacked import Unsupported
from regulab.regularize.ema import EMACallback
from regulab.runs.population import train_population
from regulab.runs.prepare import RegularizationMonitor, prepare
from regulab.runs.run import RunLog

BASE = {"name": "pop", "data": {"dataset": "digits", "preprocess": "standardize", "train_size": 300},
        "model": {"kind": "mlp", "hidden": [16], "activation": "tanh"},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 64, "early_stopping": False, "progress": False,
                  "device": "cpu"}}


def config(**overrides) -> Config:
    return config_from_dict(apply_overrides(BASE, overrides))


def all_keys() -> dict[str, dataclasses.Field]:
    """Every key of every section of Config, by its dotted name (read from the dataclasses)."""
    return {f"{name}.{f.name}": f for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


# -- the tags --------------------------------------------------------------------------------------

def test_every_config_key_has_a_population_tag():
    tags = config_tags()
    assert set(tags) == set(all_keys()) | {"name"}
    assert all(isinstance(tag, Stack) for tag, _ in tags.values())
    for dotted, f in all_keys().items():
        assert tags[dotted][0] is f.metadata["population"], dotted


@dataclass
class Untagged(Section):
    SECTION = "untagged"
    ok: float = key(0.0, number(), "a tagged key", population=SHARED)
    new: float = key(0.0, number(), "a key someone forgot to tag")


@dataclass
class ConfigWithUntagged:
    name: str = key("run", string, "the run's name", population=IGNORED)
    untagged: Untagged = dataclasses.field(default_factory=Untagged)


def test_a_new_key_without_a_population_tag_fails():
    with pytest.raises(TypeError, match="'untagged.new' has no population tag"):
        section_tags(Untagged)
    with pytest.raises(TypeError, match="'untagged.new' has no population tag"):
        config_tags(ConfigWithUntagged)

    @dataclass
    class Stray:
        extra: Any = None
    with pytest.raises(TypeError, match="config key 'extra' has no population tag"):
        config_tags(Stray)


def test_member_ignored_and_blocking_keys_are_read_off_the_tags():
    roles = {dotted: f.metadata["population"].role for dotted, f in all_keys().items()}
    assert set(MEMBER_KEYS) == {k for k, r in roles.items() if r == "member"}
    assert set(IGNORED_KEYS) == {k for k, r in roles.items() if r == "ignored"} | {"name"}
    assert set(BLOCKING_KEYS) == {k for k, r in roles.items() if r == "blocks"}
    # the keys a study or sweep varies in a population are members
    assert {"train.seed", "model.dropout", "regularization.l2", "optim.lr", "optim.weight_decay",
            "regularization.label_smoothing"} <= set(MEMBER_KEYS)
    # augmentation strengths too: each member draws its own (tests/test_population.py)
    assert {"image.translate", "image.scale", "image.rotation", "image.shear", "image.hflip",
            "image.vflip"} <= set(MEMBER_KEYS)
    assert eligibility.TAGS["model.dropout"][0] is MEMBER


# a value at which each blocking key keeps a run out of populations
BLOCKING = {"data.resident": False,
            "regularization.penalty_layers": ["fc1"],
            "multitask.tasks": ["parity"], "transfer.source": "some/run",
            "train.loss": "bce", "train.nproc": 2, "image.resize": 8, "image.aspect": "pad",
            "image.random_crop": 6, "image.crop_padding": 2, "image.mean": [0.5], "image.std": [0.5]}


def test_each_blocking_key_at_a_blocking_value_trains_alone_and_says_why():
    assert set(BLOCKING) == set(BLOCKING_KEYS), "add a blocking value for each new blocking key"
    assert ineligible(config()) is None and population_key(config()) is not None
    for dotted, value in BLOCKING.items():
        cfg = config(**{dotted: value})
        assert population_key(cfg) is None, dotted
        why = ineligible(cfg)
        assert why is not None and why.startswith(f"{dotted} = ") and why.endswith("blocks stacking"), why
    assert ineligible(config(**{"data.resident": False})) == 'data.resident = false blocks stacking'


def test_a_user_network_stacks_with_its_like():
    """``model.factory`` is shared: runs of one user network stack (with torch.func,
    tests/test_population_func.py), never with regulab's own networks or another factory's."""
    assert eligibility.TAGS["model.factory"][0] is SHARED
    # a user's network takes none of the keys of regulab's own (USER_NETWORK_KEYS)
    own = {"model.hidden": [100, 100], "model.activation": "relu"}
    net = config(**{"model.factory": "net.py:Net", **own})
    assert ineligible(net) is None
    assert population_key(net) == population_key(config(**{"model.factory": "net.py:Net", "train.seed": 3, **own}))
    assert population_key(net) not in (None, population_key(config()),
                                       population_key(config(**{"model.factory": "net.py:Other", **own})))


def test_blocking_keys_at_allowed_values_stack_but_only_with_their_like():
    base = population_key(config())
    linear = population_key(config(**{"model.kind": "linear"}))
    assert linear is not None and linear != base
    assert population_key(config(**{"train.loss": "cross_entropy"})) is not None


def test_member_and_ignored_keys_leave_the_key_alone_shared_keys_change_it():
    base = population_key(config())
    for dotted in MEMBER_KEYS + IGNORED_KEYS:
        tag, default = eligibility.TAGS[dotted]
        assert population_key(config(**{dotted: _other(dotted, default)})) == base, dotted
    for dotted, value in [("model.hidden", [8]), ("optim.name", "sgd"), ("train.epochs", 3),
                          ("regularization.penalty_bias", True), ("model.dropout_mode", "classic")]:
        assert population_key(config(**{dotted: value})) not in (None, base), dotted


def _other(dotted: str, default: Any) -> Any:
    """A valid value of a member or ignored key other than its default."""
    special = {"name": "other", "eval.dropout_inference": "mc_mean", "eval.noise_snr": 10.0,
               "eval.test": False, "train.progress": False, "train.seed": 7, "data.workers": 1,
               "train.eval_train": True, "image.scale": [0.9, 1.1], "optim.schedule": "cosine",
               "regularization.max_norm": 3.0, "train.threads": 1, "train.checkpoint_every": 2,
               "log.tensorboard": True, "log.mlflow": "sqlite:///mlflow.db", "log.mlflow_experiment": "other",
               "data.bootstrap": True}
    if dotted in special:
        return special[dotted]
    return default + 1 if isinstance(default, int) and not isinstance(default, bool) else default + 0.1


# -- callbacks -------------------------------------------------------------------------------------

def test_which_callbacks_stack():
    assert not Callback.stackable       # an unknown callback trains alone
    from regulab.runs.viewers import MLflowLog, TensorBoardLog
    for cls in (EarlyStopping, ProgressBar, RunLog, RegularizationMonitor, TensorBoardLog, MLflowLog):
        assert cls.stackable, cls.__name__
    assert not EMACallback.stackable
    from regulab.engine.schedules import LRSchedule
    assert LRSchedule.stackable         # the population reads its rates back (engine.schedules)
    from regulab.sweeps.worker import Pruning
    assert Pruning.stackable


def test_the_ema_callback_trains_in_its_stacked_form():
    """``EMACallback`` acts after every step (not ``stackable``): the population runs its stacked
    form (tests/test_population_forms.py), for one EMA per member."""
    prep = prepare(config(**{"regularization.ema": 0.9}))
    assert unstackable(prep.trainer) is None
    prep.trainer.callbacks.append(EMACallback(0.5))
    assert unstackable(prep.trainer) == "only one EMACallback has a stacked form"


class HalveLr(Callback):
    """A user's schedule: halves the learning rate after every epoch (not stackable)."""

    def on_epoch_end(self, trainer, logs):
        for group in trainer.optimizer.param_groups:
            group["lr"] *= 0.5


def test_a_population_refuses_a_callback_that_cannot_stack():
    preps = [prepare(config(**{"train.seed": s})) for s in (0, 1)]
    preps[1].trainer.callbacks.append(HalveLr())
    assert unstackable(preps[1].trainer) == "callback HalveLr cannot be stacked (its stackable is False)"
    with pytest.raises(Unsupported, match="member 1: callback HalveLr cannot be stacked"):
        Population([p.trainer for p in preps], [p.loader for p in preps], preps[0].splits["val"])


def test_an_lr_changing_callback_trains_its_run_alone(workdir, caplog):
    db = f"sqlite:///{workdir}/runs.db"
    cfgs = [config(**{"name": f"pop-{k}", "train.seed": k}) for k in range(3)]
    with caplog.at_level(logging.INFO, logger="regulab"):
        runs = train_population(cfgs, [workdir / f"pop-{k}" for k in range(3)], db=db,
                                callbacks=[[HalveLr()], [], []])
    alone = [r.getMessage() for r in caplog.records if "trains alone" in r.getMessage()]
    assert alone == ["run pop-0 trains alone: callback HalveLr cannot be stacked (its stackable is False)"]
    separate = rl.train(cfgs[0], out=workdir / "separate", db=db, progress=False, callbacks=[HalveLr()])
    assert [h["lr"] for h in runs[0].history] == [1e-3, 5e-4]     # logged before the callback
    assert _numbers(runs[0]) == _numbers(separate)
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (runs[0], separate))
    assert all(torch.equal(a[k], b[k]) for k in b)
    for k in (1, 2):        # the others still train together, each as its own run would
        member, own = runs[k], rl.train(cfgs[k], out=workdir / f"own-{k}", db=db, progress=False)
        assert member.results["val_loss"] == pytest.approx(own.results["val_loss"], rel=1e-4)


def test_a_blocking_config_trains_alone_with_the_reason_logged(workdir, caplog):
    cfgs = [config(**{"name": "stream", "data.resident": False}), config(**{"name": "plain"})]
    with caplog.at_level(logging.INFO, logger="regulab"):
        runs = train_population(cfgs, [workdir / "stream", workdir / "plain"], db=f"sqlite:///{workdir}/r.db")
    assert "run stream trains alone: data.resident = false blocks stacking" in caplog.messages
    assert not any(m.startswith("run plain") for m in caplog.messages)
    assert [r.run_dir.name for r in runs] == ["stream", "plain"]
    assert all((r.run_dir / "results.json").is_file() for r in runs)


def _numbers(run) -> tuple:
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in run.history]
    return history, {k: v for k, v in run.results.items() if k != "fit_seconds"}


def test_a_study_says_why_a_run_trains_alone(workdir, caplog):
    cfg = config(**{"train.epochs": 1})
    with caplog.at_level(logging.INFO, logger="regulab"):
        rl.study(cfg, variants={"stream": {"data.resident": False}}, seeds=2, out="study", progress=False)
    alone = [r.getMessage() for r in caplog.records if "trains alone" in r.getMessage()]
    assert alone == ["run pop-stream trains alone: data.resident = false blocks stacking"] * 2, alone
