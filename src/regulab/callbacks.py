"""Callbacks: small objects the Trainer calls at the start and end of fitting and after each epoch.

A callback that has state (early stopping's best score and patience counter, say) returns
it from ``state_dict()`` and takes it back in ``load_state_dict()``, so a resumed run
continues exactly where the killed one stopped -- patience included.

Before a resume loads anything, ``check_state`` verifies each callback's saved state (a
``ValueError`` naming the entry): the base accepts any table, and no state only from a
callback whose ``state_dict()`` is empty; a callback with state checks its keys and values.

A callback says whether its run may train in a population (``stackable``, a class
attribute). A population member's callbacks run at the epoch's end on the member's own
trainer, after its weights and optimizer state are copied back; a callback that only reads
them, writes logs or sets ``stop_training`` works there exactly as in a run alone; so does
one that sets its optimizer's learning rates at the epoch's end (``engine.schedules``), which
the population reads back before the next epoch. One that acts within an epoch
(``on_step_end``, ``evaluation_weights``) or changes the weights does not: it keeps
``stackable = False``, the default, so an unknown callback makes its run train alone. (The
EMA's ``EMACallback`` is such a callback; populations have a stacked form of it.)
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import TYPE_CHECKING, Any

import torch

from regulab.verify import short, table, tensors_like, whole

if TYPE_CHECKING:
    from regulab.engine.trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "ProgressBar", "improves", "monitor_mode", "task_monitor",
           "TASK_SCORES", "score"]


class Callback:
    """Base class: override the hooks you need. ``logs`` holds the epoch's metrics.

    ``on_step_end`` runs after every optimizer step (and after the constraints); the Trainer
    calls it only on callbacks that override it. ``evaluation_weights`` may return a context
    manager under which the model is evaluated (EMA swaps in its averaged weights there).
    ``stackable``: whether the callback works on a population member (module docstring).
    """

    stackable = False

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer) -> None: ...
    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None: ...
    def on_fit_end(self, trainer: Trainer) -> None: ...

    def evaluation_weights(self, trainer: Trainer) -> ContextManager[None]:
        return contextlib.nullcontext()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def check_state(self, where: str, state: Any, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` unless ``state`` (None: the checkpoint has none for this
        callback; ``where``: its name there) is one ``load_state_dict`` takes, for ``trainer``
        at the checkpoint's ``epoch`` and ``step`` (already verified)."""
        if state is None:
            if self.state_dict():
                raise ValueError(f"'{where}' is missing: the run's {type(self).__name__} has state to resume")
            return
        table(where, state)


def score(where: str, value: Any) -> float | None:
    """A best score as a callback keeps it: None (none yet) or a number that is not NaN
    (``improves`` never takes NaN; a diverging loss may be infinite)."""
    if value is not None and (type(value) not in (int, float) or math.isnan(value)):
        raise ValueError(f"'{where}' must be a number (not NaN) or null; got {short(value)}")
    return value


def monitor_mode(monitor: str) -> str:
    """'max' for accuracy and R^2, 'min' for losses and errors."""
    return "max" if monitor.endswith(("acc", "r2")) else "min"


# the score a run of each task is judged by, and so what ``train.monitor = "auto"`` watches
TASK_SCORES = {"classification": "val_acc", "regression": "val_r2"}


def task_monitor(monitor: str, task: str) -> str:
    """``monitor`` as early stopping watches it: "auto" is the task's score (validation accuracy
    for classification, R^2 for regression; a multi-task run's main head), any other name itself.

    The score, not the loss, by default: a classifier's validation loss turns up while its
    accuracy still climbs (it grows confident on the examples it gets wrong), so a stopper on
    the loss stops early and restores a worse classifier (BENCHMARKS.md, "Defaults against
    published baselines")."""
    return TASK_SCORES[task] if monitor == "auto" else monitor


def improves(value: float, best: float | None, min_delta: float, mode: str) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never improves)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    As Keras's ``EarlyStopping``: ``start_from_epoch`` epochs are not watched at all (a warm-up
    whose scores say little); with a ``baseline``, an epoch restarts the patience only when it
    beats both the best so far and the baseline, so a run that never reaches the baseline
    stops after ``patience`` watched epochs (its best epoch is still the one restored).

    With ``restore_best`` (the default) the weights of the best epoch are put back at the end
    of fitting, so the final model is the one validation liked most (Prechelt, 1998, "Early
    stopping -- but when?"). Example::

        >>> stopper = EarlyStopping(monitor="val_loss", patience=10, min_delta=0.0)
    """

    stackable = True     # reads the epoch's logs, sets stop_training, restores weights at the end

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0,
                 restore_best: bool = True, mode: str | None = None, *, baseline: float | None = None,
                 start_from_epoch: int = 0):
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.restore_best = restore_best
        self.baseline, self.start_from_epoch = baseline, start_from_epoch
        self.mode = mode or monitor_mode(monitor)
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.stopped_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.trained_weights: dict[str, torch.Tensor] | None = None  # set while best is restored

    def on_fit_start(self, trainer: Trainer) -> None:
        # fitting again after a restore continues from the weights training reached
        if self.trained_weights is not None:
            trainer.model.load_state_dict(self.trained_weights)
            self.trained_weights = None

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise KeyError(f"early stopping monitors '{self.monitor}', which this run does not log "
                           f"(it logs {', '.join(logs)})")
        if trainer.epoch <= self.start_from_epoch:     # not watched yet (Keras's start_from_epoch)
            return
        value = float(logs[self.monitor])
        improved = improves(value, self.best, self.min_delta, self.mode)
        if improved:
            self.best, self.best_epoch = value, trainer.epoch
            if self.restore_best:   # the weights validation saw (an EMA's average, say)
                with trainer.evaluation_mode():
                    self.best_weights = {k: v.detach().clone()
                                         for k, v in trainer.model.state_dict().items()}
        # patience restarts only on an epoch that beats both the best so far and the baseline
        if improved and (self.baseline is None or improves(value, self.baseline, self.min_delta, self.mode)):
            self.wait = 0
        else:
            self.wait += 1
            if not improved and self.wait >= self.patience:
                self.stopped_epoch = trainer.epoch
                trainer.stop_training = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_weights is not None:
            self.trained_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights,
                "trained_weights": self.trained_weights}

    KEYS = ("best", "best_epoch", "wait", "stopped_epoch", "best_weights", "trained_weights")

    def check_state(self, where: str, state: Any, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """Every key present; the best score None exactly when no epoch was best yet; the
        epochs and the patience counter whole numbers up to the checkpoint's epoch; the
        weights kept, when any, tensors like the network's, finite."""
        if state is None:
            raise ValueError(f"'{where}' is missing: early stopping's best score and patience cannot resume")
        table(where, state, self.KEYS)
        epoch = checkpoint["epoch"]
        for key in ("best_epoch", "wait", "stopped_epoch"):
            whole(f"{where}.{key}", state[key], 0, epoch)
        if (score(f"{where}.best", state["best"]) is None) != (state["best_epoch"] == 0):
            raise ValueError(f"'{where}.best' must be null exactly when '{where}.best_epoch' is 0; "
                             f"got {short(state['best'])} and {state['best_epoch']}")
        for key in ("best_weights", "trained_weights"):
            if state[key] is not None:
                tensors_like(f"{where}.{key}", state[key], trainer.model.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best_weights = state["best_weights"]
        self.trained_weights = state.get("trained_weights")


class ProgressBar(Callback):
    """One tqdm bar over the epochs with the latest losses and accuracies; silent off a terminal."""

    KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_r2")
    stackable = True

    def __init__(self, enabled: bool | None = None, desc: str = "train"):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.desc = desc
        self.bar = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=trainer.max_epochs, initial=trainer.epoch, desc=self.desc,
                            unit="epoch", leave=False, dynamic_ncols=True)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{logs[k]:.4g}" for k in self.KEYS if k in logs}, refresh=False)
            self.bar.update(1)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
