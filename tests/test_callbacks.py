"""Early stopping and the progress bar, driven by a fake trainer.

The early-stopping cases are a table in the style of Lightning's tests: a sequence of
monitored values -> the epoch at which training stops and the best epoch. Each expected
row was worked out by hand from the rule "improves = beats the best by more than
min_delta; NaN never improves; stop once ``patience`` epochs in a row did not improve".
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from regulab.callbacks import Callback, EarlyStopping, ProgressBar, improves, monitor_mode
from regulab.io import load_state, save_state

NAN, INF = float("nan"), float("inf")


def fake_trainer(**kw) -> SimpleNamespace:
    torch_gen = torch.Generator().manual_seed(0)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 2, generator=torch_gen))
        model.bias.zero_()
    # evaluation_mode: the Trainer's context for evaluation weights (none here)
    return SimpleNamespace(epoch=0, model=model, stop_training=False, max_epochs=0,
                           evaluation_mode=contextlib.nullcontext, **kw)


def feed(stopper: EarlyStopping, values, trainer=None, first_epoch: int = 1, key=None):
    """Call ``on_epoch_end`` once per value (epochs numbered from ``first_epoch``) until the
    stopper asks to stop; returns (trainer, stop epoch or None). Before each call the model's
    weights are set to the epoch number, so restored weights tell which epoch they came from."""
    trainer = trainer or fake_trainer()
    key = key or stopper.monitor
    for epoch, value in enumerate(values, first_epoch):
        trainer.epoch = epoch
        with torch.no_grad():
            trainer.model.weight.fill_(float(epoch))
            trainer.model.bias.fill_(-float(epoch))
        stopper.on_epoch_end(trainer, {"epoch": epoch, key: value})
        if trainer.stop_training:
            return trainer, epoch
    return trainer, None


# (monitor, patience, min_delta, values, stop epoch (None: never), best epoch)
CASES = [
    # mode min (val_loss)
    ("val_loss", 1, 0.0, [1.0, 0.9, 0.95], 3, 2),
    ("val_loss", 1, 0.0, [3.0, 2.0, 1.0], None, 3),
    ("val_loss", 1, 0.0, [1.0, 1.0], 2, 1),                        # equal is not better
    ("val_loss", 2, 0.0, [1.0, 0.9, 0.95, 0.92, 0.8], 4, 2),
    ("val_loss", 2, 0.0, [1.0, 1.1, 0.9, 1.0, 1.0, 0.5], 5, 3),    # an improvement resets wait
    ("val_loss", 3, 0.0, [5.0, 4.0, 3.0, 3.0, 3.0, 3.0], 6, 3),
    ("val_loss", 3, 0.0, [5.0, 6.0, 7.0, 8.0], 4, 1),
    ("val_loss", 3, 0.0, [5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 7.0], 7, 4),
    ("val_loss", 3, 0.0, [5.0, 6.0, 7.0, 4.9, 5.0, 6.0, 4.0], None, 7),
    # min_delta: improvements of at most min_delta do not count
    ("val_loss", 2, 0.1, [1.0, 0.95, 0.92, 0.85], 3, 1),
    ("val_loss", 1, 0.1, [1.0, 0.5, 0.45, 0.3], 3, 2),
    ("val_loss", 2, 0.1, [1.0, 0.95, 0.85, 0.8, 0.7], None, 5),    # 0.85 beats 1.0 - 0.1
    # NaN never improves, not even as the first value
    ("val_loss", 2, 0.0, [1.0, NAN, NAN], 3, 1),
    ("val_loss", 1, 0.0, [NAN, 1.0], 1, 0),
    ("val_loss", 2, 0.0, [NAN, 1.0, NAN, NAN], 4, 2),
    ("val_loss", 2, 0.0, [1.0, NAN, 0.5, NAN, 0.7], 5, 3),
    ("val_loss", 1, 0.0, [1.0, INF], 2, 1),
    # mode max (val_acc)
    ("val_acc", 1, 0.0, [0.5, 0.6, 0.55], 3, 2),
    ("val_acc", 2, 0.0, [0.5, 0.6, 0.6, 0.55], 4, 2),
    ("val_acc", 2, 0.0, [0.5, 0.4, 0.6, 0.5, 0.7, 0.6], None, 5),
    ("val_acc", 3, 0.0, [0.9, 0.8, 0.7, 0.6], 4, 1),
    ("val_acc", 2, 0.05, [0.5, 0.54, 0.56, 0.6], None, 3),
    ("val_acc", 2, 0.05, [0.5, 0.54, 0.53, 0.9], 3, 1),
    ("val_acc", 1, 0.0, [0.5, NAN], 2, 1),
    # other monitors take their mode from the name
    ("val_r2", 1, 0.0, [0.1, 0.2, 0.15], 3, 2),
    ("val_mse", 1, 0.0, [0.3, 0.2, 0.25], 3, 2),
]


@pytest.mark.parametrize("monitor, patience, min_delta, values, stop, best", CASES)
def test_early_stopping_table(monitor, patience, min_delta, values, stop, best):
    stopper = EarlyStopping(monitor, patience=patience, min_delta=min_delta)
    trainer, stopped = feed(stopper, values)
    assert stopped == stop
    assert stopper.best_epoch == best
    assert stopper.stopped_epoch == (stop or 0)
    assert trainer.stop_training == (stop is not None)
    finite = [v for v in values[:best] if not math.isnan(v)]
    if best:
        assert stopper.best == values[best - 1]
        assert stopper.best == (min(finite) if monitor_mode(monitor) == "min" else max(finite))
    else:
        assert stopper.best is None


def _keras_early_stopping(values, patience, min_delta, mode, baseline, start_from_epoch):
    """Keras 3's EarlyStopping.on_epoch_end, written out (0-based epochs): (stopped epoch or
    None, best epoch, best value), epochs given 1-based as regulab counts them."""
    better = (lambda a, b: a - min_delta > b) if mode == "max" else (lambda a, b: a + min_delta < b)
    best, best_epoch, wait = (-math.inf if mode == "max" else math.inf), 0, 0
    for epoch, current in enumerate(values):
        if epoch < start_from_epoch:
            continue
        wait += 1
        if better(current, best):
            best, best_epoch = current, epoch + 1
            if baseline is None or better(current, baseline):
                wait = 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1, best_epoch, best
    return None, best_epoch, best


@pytest.mark.parametrize("seed", range(40))
def test_baseline_and_start_from_epoch_follow_keras(seed):
    rng = np.random.default_rng(seed)
    values = list(np.round(0.5 + np.cumsum(rng.normal(0.0, 0.05, 30)), 2))
    monitor = "val_acc" if seed % 2 else "val_loss"
    patience, start = int(rng.integers(1, 5)), int(rng.integers(0, 6))
    baseline = None if seed % 3 == 0 else float(np.round(values[0] + rng.normal(0.0, 0.1), 2))
    min_delta = 0.0 if seed % 4 else 0.01
    stopper = EarlyStopping(monitor, patience=patience, min_delta=min_delta, baseline=baseline,
                            start_from_epoch=start)
    _, stopped = feed(stopper, values)
    stop, best_epoch, best = _keras_early_stopping(values, patience, min_delta, monitor_mode(monitor),
                                                   baseline, start)
    assert stopped == stop
    assert stopper.best_epoch == best_epoch
    if best_epoch:
        assert stopper.best == best


def test_a_run_that_never_beats_the_baseline_stops_after_patience():
    values = [0.5, 0.6, 0.55, 0.58, 0.59, 0.95]
    _, stopped = feed(EarlyStopping("val_acc", patience=3, baseline=0.9), values)
    assert stopped == 3         # epochs 1 and 2 improve, but not past 0.9: they count
    _, stopped = feed(EarlyStopping("val_acc", patience=3), values)
    assert stopped == 5
    stopper = EarlyStopping("val_acc", patience=2, start_from_epoch=3)
    trainer, stopped = feed(stopper, [0.9, 0.1, 0.1, 0.5, 0.4, 0.3])
    assert stopped == 6 and stopper.best_epoch == 4      # epochs 1-3 not watched


def test_explicit_mode_overrides_the_name():
    stopper = EarlyStopping("val_loss", patience=1, mode="max")
    _, stopped = feed(stopper, [1.0, 2.0, 1.5])
    assert (stopped, stopper.best_epoch) == (3, 2)


def test_missing_monitor_names_what_is_logged():
    stopper = EarlyStopping("val_acc", patience=1)
    with pytest.raises(KeyError, match="val_acc.*val_loss"):
        feed(stopper, [1.0], key="val_loss")


# -- restore_best --------------------------------------------------------------------------------

@pytest.mark.parametrize("values, best", [
    ([1.0, 0.5, 0.7, 0.8], 2),
    ([1.0, 0.9, 0.8, 0.9], 3),
    ([0.5, 0.9, 0.8, 0.7], 1),
])
@pytest.mark.parametrize("restore_best", [True, False])
def test_restore_best_puts_back_the_best_epochs_weights(values, best, restore_best):
    stopper = EarlyStopping("val_loss", patience=len(values) + 1, restore_best=restore_best)
    stopper.on_fit_start(SimpleNamespace())
    trainer, stopped = feed(stopper, values)
    assert stopped is None and stopper.best_epoch == best
    stopper.on_fit_end(trainer)
    # feed() set every weight to the epoch number and every bias to minus it
    expected = best if restore_best else len(values)
    assert torch.equal(trainer.model.weight, torch.full((1, 2), float(expected)))
    assert torch.equal(trainer.model.bias, torch.full((1,), -float(expected)))
    if not restore_best:
        assert stopper.best_weights is None


def test_restore_best_without_any_improvement_keeps_weights():
    stopper = EarlyStopping("val_loss", patience=5)
    trainer, _ = feed(stopper, [NAN, NAN])
    stopper.on_fit_end(trainer)
    assert torch.equal(trainer.model.weight, torch.full((1, 2), 2.0))


# -- state round-trip ------------------------------------------------------------------------------

RESUME_CASES = [
    # (monitor, patience, min_delta, values)
    ("val_loss", 3, 0.0, [1.0, 0.8, 0.9, 0.95, 0.85, 0.7, 0.9, 0.9, 0.9]),
    ("val_loss", 2, 0.05, [1.0, 0.97, 0.9, 0.88, 0.87, 0.8]),
    ("val_loss", 2, 0.0, [NAN, 1.0, NAN, 0.9, NAN, NAN, 0.1]),
    ("val_acc", 4, 0.0, [0.5, 0.6, 0.55, 0.58, 0.59, 0.61, 0.6, 0.6, 0.6, 0.6]),
]


@pytest.mark.parametrize("through_file", [False, True])
@pytest.mark.parametrize("monitor, patience, min_delta, values", RESUME_CASES)
def test_state_round_trip_continues_patience(monitor, patience, min_delta, values, through_file,
                                             tmp_path):
    whole = EarlyStopping(monitor, patience=patience, min_delta=min_delta)
    trainer, stop = feed(whole, values)
    whole.on_fit_end(trainer)
    assert stop is not None   # every row stops; otherwise the resume has nothing to continue
    for cut in range(1, stop):
        first = EarlyStopping(monitor, patience=patience, min_delta=min_delta)
        t1, stopped = feed(first, values[:cut])
        assert stopped is None
        state = first.state_dict()
        if through_file:
            save_state(tmp_path / "es.safetensors", {"es": state})
            state = load_state(tmp_path / "es.safetensors")["es"]
        second = EarlyStopping(monitor, patience=patience, min_delta=min_delta)
        second.load_state_dict(state)
        t2, resumed_stop = feed(second, values[cut:], first_epoch=cut + 1)
        second.on_fit_end(t2)
        assert resumed_stop == stop, f"cut after epoch {cut}"
        assert second.best_epoch == whole.best_epoch
        assert second.wait == whole.wait
        assert second.stopped_epoch == whole.stopped_epoch
        assert torch.equal(t2.model.weight, trainer.model.weight)   # restored from loaded state


def test_state_dict_is_empty_for_plain_callbacks():
    assert Callback().state_dict() == {}


# -- improves / monitor_mode -----------------------------------------------------------------------

@pytest.mark.parametrize("value, best, min_delta, mode, expected", [
    (1.0, None, 0.0, "min", True),
    (1.0, None, 0.5, "max", True),
    (0.9, 1.0, 0.0, "min", True),
    (1.0, 1.0, 0.0, "min", False),
    (1.1, 1.0, 0.0, "min", False),
    (0.95, 1.0, 0.05, "min", False),      # by exactly min_delta: not more than min_delta
    (0.94, 1.0, 0.05, "min", True),
    (1.1, 1.0, 0.0, "max", True),
    (1.0, 1.0, 0.0, "max", False),
    (0.9, 1.0, 0.0, "max", False),
    (1.04, 1.0, 0.05, "max", False),
    (1.06, 1.0, 0.05, "max", True),
    (NAN, None, 0.0, "min", False),
    (NAN, 1.0, 0.0, "min", False),
    (NAN, 1.0, 0.0, "max", False),
    (-INF, 1.0, 0.0, "min", True),
    (INF, 1.0, 0.0, "min", False),
    (INF, 1.0, 0.0, "max", True),
])
def test_improves(value, best, min_delta, mode, expected):
    assert improves(value, best, min_delta, mode) is expected


@pytest.mark.parametrize("monitor, mode", [
    ("val_loss", "min"), ("train_loss", "min"), ("val_mse", "min"), ("penalty", "min"),
    ("val_acc", "max"), ("train_acc", "max"), ("val_r2", "max"), ("test_r2", "max"),
])
def test_monitor_mode(monitor, mode):
    assert monitor_mode(monitor) == mode
    assert EarlyStopping(monitor).mode == mode


# -- progress bar --------------------------------------------------------------------------------

def _drive(bar: ProgressBar, epochs: int = 3) -> None:
    trainer = fake_trainer()
    trainer.max_epochs = epochs
    bar.on_fit_start(trainer)
    for epoch in range(1, epochs + 1):
        trainer.epoch = epoch
        bar.on_epoch_end(trainer, {"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": 0.5,
                                   "lr": 0.1})
    bar.on_fit_end(trainer)


def test_progress_bar_disabled_is_silent(capsys):
    bar = ProgressBar(enabled=False)
    _drive(bar)
    assert bar.bar is None
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_bar_enabled_writes_to_stderr(capsys):
    bar = ProgressBar(enabled=True, desc="moons-run")
    _drive(bar)
    assert bar.bar is None     # closed at the end of fitting
    out, err = capsys.readouterr()
    assert out == ""
    assert "moons-run" in err


def test_start_from_epoch_and_baseline_as_config_keys(tmp_path):
    import regulab as rl
    from regulab.errors import ConfigError

    from .test_population import config
    from regulab.runs.prepare import prepare
    cfg = config(train__epochs=8, train__early_stopping=True, train__patience=1,
                 train__start_from_epoch=4, train__baseline=0.99, train__monitor="val_acc")
    stopper = next(cb for cb in prepare(cfg).trainer.callbacks if isinstance(cb, EarlyStopping))
    assert (stopper.baseline, stopper.start_from_epoch, stopper.patience) == (0.99, 4, 1)
    run = rl.train(cfg, out=tmp_path / "run", progress=False)
    assert run.results["epochs_run"] >= 5 and run.results["best_epoch"] >= 5   # 1-4 unwatched
    with pytest.raises(ConfigError, match="train.start_from_epoch"):
        config(train__epochs=6, train__early_stopping=True, train__start_from_epoch=6)
