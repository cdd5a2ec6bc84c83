"""Exponential moving average of the weights (Polyak averaging), evaluated in place of the live ones.

The notes' exponentially weighted moving average ("promedio móvil ponderado exponencialmente",
PMPE), applied to every floating-point parameter theta after each optimizer step::

    v_0 = 0
    v_t = beta * v_{t-1} + (1 - beta) * theta_t          # beta = decay, in [0, 1)
    vhat_t = v_t / (1 - beta**t)                           # bias correction

Why the correction: with v_0 = 0, v_t = (1 - beta) * sum_{k<=t} beta**(t-k) theta_k, whose
weights sum to 1 - beta**t, not 1. Early on (t << 1/(1 - beta)) the uncorrected average is
pulled toward 0 -- with beta = 0.999 after 10 steps a constant weight c averages to ~0.01 c.
Dividing by 1 - beta**t makes the weights sum to 1, so a constant weight averages to itself
at every t. This is the same correction the notes apply to Adam's moment estimates ("sesgadas
hacia 0 (se inicializan con 0)"), and at t = 1 it gives vhat_1 = theta_1, the notes' e^[1] = v^[1].
(The notes' expansion of the recurrence has its indices shifted, e.g. "e^[2] = beta e^[2] +
(1 - beta) v^[1]"; the recurrence above is the one on the slide's first line.)

Many libraries (timm's ``ModelEmaV2``, Keras' ``use_ema``) instead start the shadow at the
initial weights, v_0 = theta_0, and do not correct; that keeps theta_0 in the average with
weight beta**t. Here the default follows the notes; ``bias_correction=False`` gives the raw
recurrence from zero (only useful to see the bias).

Buffers (batch norm's running mean and variance, counters) are not averaged: each update
copies them as they are, since they are already running estimates of the live network.

Papers: Polyak & Juditsky (1992), "Acceleration of stochastic approximation by averaging";
Tarvainen & Valpola (2017), "Mean teachers are better role models" (EMA of weights).

Example::

    >>> ema = EMA(model, decay=0.99)
    >>> for xb, yb in loader:
    ...     loss_fn(model(xb), yb).backward(); optimizer.step(); optimizer.zero_grad()
    ...     ema.update()
    >>> with ema.swap():                 # evaluate with the averaged weights
    ...     val_loss = loss_fn(model(Xv), yv)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from regulab.callbacks import Callback
from regulab.checks import number
from regulab.verify import table, tensors_like, whole

if TYPE_CHECKING:
    from regulab.engine.trainer import Trainer

__all__ = ["EMA", "EMACallback"]

_check_decay = number(ge=0.0, lt=1.0)


def _is_averaged(value: Tensor) -> bool:
    """Float parameters are averaged; buffers and integer tensors are copied."""
    return isinstance(value, nn.Parameter) and value.is_floating_point()


class EMA:
    """Shadow copy of ``model``'s weights: ``shadow = decay * shadow + (1 - decay) * param``.

    ``decay`` is beta in [0, 1) (0 keeps just the latest weights); the shadow starts at 0 and
    ``averaged()`` divides by ``1 - decay**t`` when ``bias_correction`` (the default, as in the
    notes). ``t`` counts the updates. Before the first update nothing has been averaged and
    ``averaged()`` returns the live weights. The shadow lives on the model's device and dtype
    at construction time.
    """

    def __init__(self, model: nn.Module, decay: float, bias_correction: bool = True):
        self.decay = _check_decay("regularization.ema", decay)
        self.model = model
        self.bias_correction = bool(bias_correction)
        self.t = 0
        self.shadow: dict[str, Tensor] = {
            k: torch.zeros_like(v.detach()) if _is_averaged(v) else v.detach().clone()
            for k, v in model.state_dict(keep_vars=True).items()
        }

    @torch.no_grad()
    def update(self) -> None:
        """One step of the recurrence, to call after each optimizer step."""
        self.t += 1
        for k, v in self.model.state_dict(keep_vars=True).items():
            if _is_averaged(v):
                self.shadow[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                self.shadow[k].copy_(v.detach())

    @torch.no_grad()
    def averaged(self) -> dict[str, Tensor]:
        """The averaged weights (bias-corrected unless disabled) as a ``state_dict``-like mapping."""
        if self.t == 0:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        correction = 1.0 - self.decay ** self.t if self.bias_correction else 1.0
        params = {k for k, v in self.model.state_dict(keep_vars=True).items() if _is_averaged(v)}
        return {k: s / correction if k in params else s.clone() for k, s in self.shadow.items()}

    @contextlib.contextmanager
    def swap(self) -> Iterator[None]:
        """Load the averaged weights into the model; put the live ones back on exit (also on error)."""
        live = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.averaged())
        try:
            yield
        finally:
            self.model.load_state_dict(live)

    def state_dict(self) -> dict[str, Any]:
        """The shadow tensors and the update count: enough to continue exactly."""
        return {"t": self.t, "shadow": {k: v.detach().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back ``state_dict()``'s output; ``decay`` stays the one this object was built with."""
        shadow = state["shadow"]
        if set(shadow) != set(self.shadow):
            raise ValueError(f"EMA state has tensors {sorted(shadow)}; this model has {sorted(self.shadow)}")
        with torch.no_grad():
            for k, v in shadow.items():
                self.shadow[k].copy_(v)
        self.t = int(state["t"])

    def __repr__(self) -> str:
        return f"EMA(decay={self.decay}, bias_correction={self.bias_correction}, t={self.t})"


class EMACallback(Callback):
    """Keep an ``EMA`` of the trainer's model and evaluate with the averaged weights.

    ``on_step_end`` updates the average after every optimizer step; ``evaluation_weights``
    swaps the averaged weights in while the Trainer validates, tests or predicts, so the
    history's ``val_*`` metrics are those of the averaged model, while training continues on
    the live weights. Pass an ``EMA`` or just the decay; with a decay the ``EMA`` is created at
    ``on_fit_start`` (after the model has moved to its device), and state loaded before that
    (a resume) is applied then.
    """

    # it acts after every step, which a population member cannot: a population runs its stacked
    # form instead (regulab.engine.population.ema) and hands each member's EMA its state
    stackable = False

    def __init__(self, ema: EMA | float, bias_correction: bool = True):
        if isinstance(ema, EMA):
            self.ema: EMA | None = ema
            self.decay, self.bias_correction = ema.decay, ema.bias_correction
        else:
            self.ema = None
            self.decay = _check_decay("regularization.ema", ema)
            self.bias_correction = bias_correction
        self._pending: dict[str, Any] | None = None
        self.trained_weights: dict[str, Tensor] | None = None   # set once fit has ended

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.ema is None:
            self.ema = EMA(trainer.model, self.decay, self.bias_correction)
        if self._pending is not None:
            self.ema.load_state_dict(self._pending)
            self._pending = None
        if self.trained_weights is not None:   # fitting again: continue from the live weights
            trainer.model.load_state_dict(self.trained_weights)
            self.trained_weights = None

    def on_step_end(self, trainer: Trainer) -> None:
        self.ema.update()

    def on_fit_end(self, trainer: Trainer) -> None:
        """Leave the averaged weights in the model, as Keras does at the end of ``fit``: the
        final model is the one validation measured. The live weights are kept for a later fit."""
        if self.ema is not None and self.ema.t > 0:
            self.trained_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            trainer.model.load_state_dict(self.ema.averaged())

    def evaluation_weights(self, trainer: Trainer) -> ContextManager[None]:
        if self.ema is None or self.trained_weights is not None:   # none yet, or already in place
            return contextlib.nullcontext()
        return self.ema.swap()

    def state_dict(self) -> dict[str, Any]:
        state = dict(self._pending or {}) if self.ema is None else self.ema.state_dict()
        if self.trained_weights is not None:
            state["trained_weights"] = self.trained_weights
        return state

    def check_state(self, where: str, state: Any, trainer: Trainer, checkpoint: Mapping[str, Any]) -> None:
        """Once a step was taken the state is required: the update count ``t`` a whole number
        up to the checkpoint's step, the shadow (and the live weights kept after a fit) tensors
        like the network's, finite."""
        if state is None and checkpoint["step"] == 0:
            return
        if state is None:
            raise ValueError(f"'{where}' is missing: the average of the weights cannot resume")
        like = trainer.model.state_dict()
        table(where, state, ("t", "shadow") + (("trained_weights",) if "trained_weights" in state else ()))
        whole(f"{where}.t", state["t"], 0, checkpoint["step"])
        tensors_like(f"{where}.shadow", state["shadow"], like)
        if "trained_weights" in state:
            tensors_like(f"{where}.trained_weights", state["trained_weights"], like)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.trained_weights = state.pop("trained_weights", None)
        if self.ema is None:
            self._pending = state
        else:
            self.ema.load_state_dict(state)
