"""Learning-rate schedules (``optim.schedule``): the rate of each epoch, set on the optimizer
before the epoch runs.

With ``lr_0`` a parameter group's configured rate (``optim.lr``, or ``transfer.lr`` for the
transferred layers), ``e`` the epoch about to run (0, 1, ...), ``E`` = ``train.epochs``,
``W`` = ``optim.warmup_epochs`` and ``lr_min`` = ``optim.min_lr``:

* warm-up (any schedule, ``W > 0``): ``lr_e = lr_0 (e + 1) / W`` for ``e < W`` -- a linear ramp
  (Goyal et al., 2017, "Accurate, large minibatch SGD"); the schedule below then runs on
  ``e' = e - W`` over ``T = E - W`` epochs;
* ``none``: ``lr_e = lr_0``;
* ``step``: ``lr_e = max(lr_min, lr_0 gamma^floor(e' / step_size))`` -- torch's ``StepLR``;
* ``cosine``: ``lr_e = lr_min + (lr_0 - lr_min) (1 + cos(pi e' / T)) / 2`` -- SGDR without
  restarts (Loshchilov & Hutter, 2017), torch's ``CosineAnnealingLR`` with ``T_max = T``: the
  rate falls from ``lr_0`` towards ``lr_min`` over the run's epochs;
* ``plateau``: ``lr_e = max(lr_min, lr_0 gamma^r)``, ``r`` the reductions so far: one each time
  ``train.monitor`` has not improved for more than ``optim.plateau_patience`` epochs (then the
  count restarts) -- torch's ``ReduceLROnPlateau``, Keras's ``ReduceLROnPlateau``.

Why: with a constant rate, SGD and Adam end in a noisy neighbourhood of a minimum whose size
grows with the rate; decaying it lets the last epochs settle (Bottou, Curtis & Nocedal, 2018,
"Optimization methods for large-scale machine learning", 4.2). On MNIST-1D with augmentation
the cosine schedule is worth several points of test accuracy over the constant rate
(BENCHMARKS.md, "The clinic").

The schedule is a callback (``LRSchedule``): it sets every group's ``lr`` at the start of
fitting and after each epoch, keeping the configured rate as the group's ``initial_lr`` (as
``torch.optim.lr_scheduler`` does), so a checkpoint's optimizer state carries both and a
resumed run continues on the same rates; the plateau count is the callback's state. The
``lr`` column of metrics.csv is the rate the epoch used. In a population each member's
schedule sets its own optimizer's rates at the epoch's end and the population's optimizer
reads them back before the next epoch (``StackedOptimizer.set_rates``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from regulab.callbacks import Callback, improves, monitor_mode, score
from regulab.verify import table, whole

if TYPE_CHECKING:
    from regulab.engine.trainer import Trainer

__all__ = ["SCHEDULES", "LRSchedule", "factor"]

SCHEDULES = ("none", "step", "cosine", "plateau")


def factor(schedule: str, epoch: int, epochs: int, *, warmup_epochs: int = 0, step_size: int = 30,
           gamma: float = 0.1, reductions: int = 0) -> float:
    """The rate of ``epoch`` (0-based) as a fraction of the configured one, before ``min_lr``:
    the warm-up ramp, then ``step`` gamma^floor(e'/step_size), ``cosine`` (1 + cos(pi e'/T)) / 2
    (``min_lr`` is applied by ``rate``), ``plateau`` gamma^reductions, ``none`` 1."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    e, horizon = epoch - warmup_epochs, max(1, epochs - warmup_epochs)
    if schedule == "step":
        return gamma ** (e // step_size)
    if schedule == "cosine":
        return (1.0 + math.cos(math.pi * min(e, horizon) / horizon)) / 2.0
    if schedule == "plateau":
        return gamma ** reductions
    return 1.0


class LRSchedule(Callback):
    """``optim.schedule`` on a trainer's optimizer (module docstring). Example::

        >>> LRSchedule("cosine", epochs=150, warmup_epochs=5, min_lr=1e-4)

    ``monitor`` (plateau only) is the logged metric watched, its direction from its name
    (``callbacks.monitor_mode``)."""

    stackable = True     # sets its member's optimizer's rates at the epoch's end (module docstring)

    def __init__(self, schedule: str, epochs: int, *, warmup_epochs: int = 0, step_size: int = 30,
                 gamma: float = 0.1, min_lr: float = 0.0, patience: int = 10, monitor: str = "val_loss"):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
        self.schedule, self.epochs, self.warmup_epochs = schedule, epochs, warmup_epochs
        self.step_size, self.gamma, self.min_lr = step_size, gamma, min_lr
        self.patience, self.monitor, self.mode = patience, monitor, monitor_mode(monitor)
        self.best: float | None = None
        self.bad_epochs = 0
        self.reductions = 0

    def rate(self, initial: float, epoch: int) -> float:
        """A group's rate at ``epoch`` given its configured rate ``initial``."""
        f = factor(self.schedule, epoch, self.epochs, warmup_epochs=self.warmup_epochs,
                   step_size=self.step_size, gamma=self.gamma, reductions=self.reductions)
        if epoch < self.warmup_epochs or self.schedule == "none":
            return initial * f
        floor = min(self.min_lr, initial)      # a group configured below min_lr keeps its rate
        if self.schedule == "cosine":
            return floor + (initial - floor) * f
        return max(floor, initial * f)

    def _apply(self, trainer: Trainer) -> None:
        for group in trainer.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = self.rate(group["initial_lr"], trainer.epoch)

    def on_fit_start(self, trainer: Trainer) -> None:
        self._apply(trainer)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.schedule == "plateau":
            if self.monitor not in logs:
                raise KeyError(f"the plateau schedule watches '{self.monitor}', which this run does "
                               f"not log (it logs {', '.join(logs)})")
            if improves(float(logs[self.monitor]), self.best, 0.0, self.mode):
                self.best, self.bad_epochs = float(logs[self.monitor]), 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs > self.patience:
                    self.reductions, self.bad_epochs = self.reductions + 1, 0
        self._apply(trainer)

    def state_dict(self) -> dict[str, Any]:
        if self.schedule != "plateau":
            return {}
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def check_state(self, where: str, state: Any, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """The plateau's best score (None or not NaN) and its counters, whole numbers up to
        the checkpoint's epoch; the other schedules keep no state."""
        if self.schedule != "plateau" or state is None:
            super().check_state(where, state, trainer, checkpoint)
            return
        table(where, state, ("best", "bad_epochs", "reductions"))
        score(f"{where}.best", state["best"])
        for key in ("bad_epochs", "reductions"):
            whole(f"{where}.{key}", state[key], 0, checkpoint["epoch"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])
        self.reductions = int(state["reductions"])
