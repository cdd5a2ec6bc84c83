"""Learning-rate schedules (``optim.schedule``): the rates against torch.optim.lr_scheduler and
the closed forms, metrics.csv's lr column, populations and resume, and bad input."""

from __future__ import annotations

import csv
import math

import pytest
import torch

import regulab as rl
from regulab.cli import main
from regulab.engine.schedules import LRSchedule, factor
from regulab.runs.population import train_population

from .test_population import assert_same_run, config


class _Trainer:
    """What LRSchedule touches: an optimizer and the count of epochs done."""

    def __init__(self, lrs=(0.1,)):
        params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
        self.optimizer = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
        self.epoch = 0


def _rates(schedule: LRSchedule, epochs: int, values=None, lrs=(0.1,)) -> list[float]:
    """The rates each epoch trains with, group after group, as Trainer.fit drives the callback."""
    t = _Trainer(lrs)
    schedule.on_fit_start(t)
    out = []
    for e in range(epochs):
        out += [g["lr"] for g in t.optimizer.param_groups]
        t.epoch += 1
        schedule.on_epoch_end(t, {"val_acc": values[e]} if values is not None else {})
    return out


def _torch_rates(make, epochs: int, values=None, lrs=(0.1,)) -> list[float]:
    t = _Trainer(lrs)
    sched = make(t.optimizer)
    out = []
    for e in range(epochs):
        out += [g["lr"] for g in t.optimizer.param_groups]
        t.optimizer.step()      # no gradients: changes nothing; torch wants it before sched.step
        sched.step(values[e]) if values is not None else sched.step()
    return out


def test_step_and_cosine_follow_torch():
    lrs = (0.1, 0.02)       # two groups, as transfer.lr gives: each scaled from its own rate
    got = _rates(LRSchedule("step", 40, step_size=7, gamma=0.5), 40, lrs=lrs)
    ref = _torch_rates(lambda o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5), 40, lrs=lrs)
    assert got == pytest.approx(ref, rel=1e-12)
    got = _rates(LRSchedule("cosine", 30, min_lr=1e-3), 30, lrs=lrs)
    ref = _torch_rates(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 30, eta_min=1e-3), 30, lrs=lrs)
    assert got == pytest.approx(ref, rel=1e-9)


def test_plateau_follows_torch():
    torch.manual_seed(0)
    values = [0.5 + 0.1 * math.tanh(e / 5) + 0.02 * float(torch.rand(())) for e in range(60)]
    got = _rates(LRSchedule("plateau", 60, gamma=0.5, patience=3, min_lr=1e-3, monitor="val_acc"), 60, values)
    ref = _torch_rates(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, "max", factor=0.5, patience=3, threshold=0.0, min_lr=1e-3), 60, values)
    assert got == pytest.approx(ref, rel=1e-12)
    assert len(set(got)) > 2, "the series should cut the rate more than once"


def test_warmup_then_cosine_is_the_closed_form():
    E, W, lr, low = 20, 4, 0.1, 0.01
    got = _rates(LRSchedule("cosine", E, warmup_epochs=W, min_lr=low), E)
    want = [lr * (e + 1) / W if e < W else low + (lr - low) * (1 + math.cos(math.pi * (e - W) / (E - W))) / 2
            for e in range(E)]
    assert got == pytest.approx(want, rel=1e-12)
    assert factor("none", 5, 10, warmup_epochs=3) == 1.0
    assert factor("step", 2, 10, warmup_epochs=3) == pytest.approx(1.0)      # the ramp's last epoch


def _lr_column(run_dir) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["lr"]) for r in csv.DictReader(f)]


def test_a_run_logs_the_rate_each_epoch_used(tmp_path):
    run = rl.train(config(optim__schedule="cosine", optim__warmup_epochs=2, train__epochs=6, optim__lr=0.01),
                   out=tmp_path / "run", progress=False)
    want = [0.005, 0.01] + [0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert _lr_column(run.run_dir) == pytest.approx(want, rel=1e-9)


def test_members_with_their_own_schedules_equal_their_runs_and_resume(tmp_path):
    """Members differ in schedule, rate and warm-up (member keys); killed after 3 epochs,
    each resumes alone and ends as its uninterrupted run."""
    db = f"sqlite:///{tmp_path}/runs.db"
    common = {"train__epochs": 8, "data__split": [0.6, 0.4, 0.0], "optim__name": "momentum", "optim__lr": 0.05}
    cfgs = [config(**{**common, "optim__schedule": "cosine", "optim__warmup_epochs": 2}),
            config(**{**common, "optim__schedule": "step", "optim__step_size": 2, "optim__gamma": 0.5,
                      "train__seed": 1}),
            config(**{**common, "optim__schedule": "plateau", "optim__plateau_patience": 0,
                      "optim__gamma": 0.3, "optim__lr": 0.2, "model__dropout": 0.2}),
            config(**common)]
    members = train_population(cfgs, [tmp_path / f"pop-{k}" for k in range(len(cfgs))], db=db)
    alone = [rl.train(c, out=tmp_path / f"alone-{k}", db=db, progress=False) for k, c in enumerate(cfgs)]
    for member, run in zip(members, alone):
        assert_same_run(member, run)
    assert len(set(_lr_column(alone[2].run_dir))) > 1, "the plateau schedule should cut the rate"

    def kill(epoch):
        if epoch == 3:
            raise KeyboardInterrupt
    outs = [tmp_path / f"killed-{k}" for k in range(len(cfgs))]
    with pytest.raises(KeyboardInterrupt):
        train_population(cfgs, outs, db=db, on_epoch=kill)
    for out, run in zip(outs, alone):
        assert_same_run(rl.resume(out, progress=False), run)


@pytest.mark.parametrize("args, field", [
    (["optim.schedule=linear"], "optim.schedule"),
    (["optim.schedule=cosine", "optim.warmup_epochs=5", "train.epochs=5"], "optim.warmup_epochs"),
    (["optim.schedule=cosine", "optim.min_lr=0.5", "optim.lr=0.1"], "optim.min_lr"),
    (["optim.gamma=0"], "optim.gamma"),
    (["optim.schedule=plateau", "data.split=[1,0,0]", "train.early_stopping=false"], "optim.schedule"),
])
def test_bad_schedules_are_one_line_errors_and_write_nothing(tmp_path, capsys, args, field):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[data]\ndataset = "digits"\n[train]\nprogress = false\n')
    sets = [a for kv in args for a in ("--set", kv)]
    code = main(["train", str(cfg), *sets, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and field in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()
