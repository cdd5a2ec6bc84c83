"""The training loop: loss (+ penalties) -> backward -> optimizer step, epoch by epoch.

Each epoch: ``model.train()``, one pass over the shuffled minibatches, then
``model.eval()`` and an evaluation of the validation split under ``torch.no_grad()``.
Training metrics are running averages over the epoch's minibatches (as Keras reports
them), kept as device tensors so the loop never waits on the device mid-epoch (the hits of
``SCORED_TOGETHER`` steps' outputs counted in one pass, not one per step): they are
measured with regularization on (dropout, noise and augmentation active, the weights still
moving). With ``eval_train`` the train split is also scored after each epoch as the
validation split is (eval mode, the callbacks' evaluation weights), as ``clean_train_*``;
that pass draws nothing, so the run's numbers are the same with it or without.

NaN/Inf guard: each step's loss is kept on the device; at the end of the epoch one check
finds the first non-finite one and raises ``DivergedError`` naming the epoch and step
*before* any callback runs, so the last checkpoint written stays the last good one.

Everything a resumed run needs -- weights, optimizer state, generator states, callback
state, history, epoch and step -- is in ``state_dict()``; ``load_state_dict()`` puts it
back, and ``fit`` continues from ``self.epoch`` to give the same result as a run that was
never interrupted. ``check_state()`` verifies a checkpoint against this trainer before
``load_state_dict()`` changes anything (``regulab.verify``): every entry present, tensors of
the network's shapes and dtypes and finite, epoch, step and history consistent, the
optimizer's, generators' and callbacks' states complete and in range.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regulab.callbacks import Callback
from regulab.data.stream import chunks
from regulab.engine.objective import Objective, loss_function
from regulab.engine.optimizers import Steps
from regulab.engine.optimizers import check_state as check_optimizer_state
from regulab.errors import DivergedError
from regulab.nn.layers import set_generator
from regulab.verify import generator_state, short, table, tensors_like, whole

__all__ = ["Trainer", "loss_function", "divergence", "SCORED_TOGETHER"]

SCORED_TOGETHER = 16    # steps whose outputs are scored (hits) in one pass: 3 kernels, not 48
                        # (classes: exact counts; a regression's squared errors stay per step,
                        # as summing them in other blocks would round them otherwise)

Penalty = Callable[[nn.Module], Tensor]
Constraint = Callable[[nn.Module], None]


def _objective(loss_fn: Callable[[Tensor, Tensor], Tensor], task: str, binary: bool,
               tasks: Any) -> Objective:
    """``loss_fn`` as an ``Objective`` scoring outputs as ``task``/``binary`` say: itself when it
    is one of that kind, else a wrapper around the user's function."""
    kind = "mse" if task == "regression" else "bce" if binary else "cross_entropy"
    if isinstance(loss_fn, Objective) and loss_fn.loss == kind and loss_fn.custom is None:
        return loss_fn if tasks is None else Objective(kind, loss_fn.label_smoothing, tasks)
    return Objective(kind, tasks=tasks, custom=loss_fn)


def divergence(total: Tensor, epoch: int, steps_before: int) -> DivergedError | None:
    """The ``DivergedError`` of the first non-finite value in one epoch's per-step objective
    ``total`` (steps numbered from ``steps_before + 1``), or None when all are finite."""
    finite = torch.isfinite(total)
    if bool(finite.all()):
        return None
    bad = int((~finite).nonzero()[0])
    return DivergedError(epoch, steps_before + bad + 1, float(total[bad]))


class Trainer:
    """Fit ``model`` with ``optimizer`` on a ``TensorLoader`` or a ``StreamLoader`` (any loader of
    ``(xb, yb)`` batches on the device with the split's ``X`` and targets ``y``); the splits it
    scores are tensors or streamed splits (``regulab.data.stream``); see the module docstring.

    ``loss_fn`` is an ``Objective`` (``loss_function("cross_entropy", label_smoothing=0.1)``) or
    any ``(out, y) -> mean loss``; either way ``self.objective`` (``regulab.engine.objective``)
    scores the outputs. ``task`` is "classification" (logs loss and accuracy; ``binary``: one
    logit per example) or "regression" (loss, MSE, R^2).
    ``penalties`` are callables ``model -> scalar`` added to the data loss and logged
    separately. ``constraints`` are callables ``model -> None`` applied, without gradient,
    after every optimizer step (max-norm). ``generators`` names every ``torch.Generator`` the run draws from (the
    loader's shuffling, the dropout masks under "noise"); their states are checkpointed.
    ``tasks`` (a ``regulab.regularize.multitask.Tasks``) makes it a multi-task trainer: the
    model's output holds the heads side by side, targets are ``(N, heads)``, the loss is their
    weighted sum (which replaces ``loss_fn``), and each head's loss and accuracy is logged.
    ``data_parallel`` (a ``regulab.engine.distributed.DataParallel``, set after construction)
    makes this process one rank of a data-parallel run: it trains on its shard of each batch.
    ``eval_train``: after each epoch also score the loader's split in eval mode, as
    ``clean_train_loss`` and ``clean_train_acc`` (or ``_mse``, ``_r2``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], *, task: str = "classification",
                 binary: bool = False, penalties: Sequence[Penalty] = (),
                 constraints: Sequence[Constraint] = (), callbacks: Sequence[Callback] = (),
                 generators: Mapping[str, torch.Generator] | None = None,
                 eval_batch_size: int = 1024, tasks: Any = None, eval_train: bool = False):
        self.tasks = tasks
        self.objective = _objective(loss_fn, task, binary, tasks)    # loss, hits, summary
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.task, self.binary = task, binary
        self.penalties = list(penalties)
        self.constraints = list(constraints)
        self.callbacks = list(callbacks)
        self.generators = dict(generators or {})
        if "noise" in self.generators:
            set_generator(model, self.generators["noise"])
        self.eval_batch_size = eval_batch_size
        self.eval_train = eval_train
        self.data_parallel: Any = None
        self.epoch = 0          # epochs completed
        self.step = 0           # optimizer steps taken
        self.max_epochs = 0
        self.stop_training = False
        self.history: list[dict[str, float]] = []

    # -- metrics -----------------------------------------------------------------------------

    def scores(self, out: Tensor, y: Tensor, prefix: str, log_probs: bool = False) -> dict[str, float]:
        """Loss and accuracy (or MSE and R^2) of outputs ``out`` for targets ``y``; with
        ``log_probs`` the outputs are log-probabilities and the loss their negative log-likelihood."""
        obj = self.objective
        _, loss = obj.losses(out, y, log_probs)
        return obj.summary(prefix, loss * len(y), obj.hits(out, y), len(y), y)

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[None]:
        """``model.eval()`` under the callbacks' evaluation weights; the previous mode after."""
        was_training = self.model.training
        with contextlib.ExitStack() as stack:
            for cb in self.callbacks:
                stack.enter_context(cb.evaluation_weights(self))
            self.model.eval()
            try:
                yield
            finally:
                self.model.train(was_training)

    @torch.no_grad()
    def evaluate(self, X: Tensor, y: Tensor, prefix: str = "val") -> dict[str, float]:
        """Loss and accuracy (or MSE and R^2) of the model in eval mode on ``X``, ``y``."""
        with self.evaluation_mode():
            return self._evaluate(X, y, prefix)

    def _evaluate(self, X: Tensor, y: Tensor, prefix: str) -> dict[str, float]:
        obj = self.objective
        loss_sum = torch.zeros((), device=X.device)
        hits = torch.zeros((), device=X.device)
        for xb, yb in zip(chunks(X, self.eval_batch_size), chunks(y, self.eval_batch_size)):
            out = self.model(xb)
            loss_sum = loss_sum + obj.losses(out, yb)[1] * len(xb)
            hits = hits + obj.hits(out, yb)
        return obj.summary(prefix, loss_sum, hits, len(X), y)

    @torch.no_grad()
    def predict(self, X: Tensor) -> Tensor:
        """The model's outputs on ``X`` in eval mode, in evaluation-sized batches."""
        with self.evaluation_mode():
            return torch.cat([self.model(xb) for xb in chunks(X, self.eval_batch_size)])

    # -- the loop ----------------------------------------------------------------------------

    def _train_epoch(self, loader) -> dict[str, float]:
        self.model.train()
        device = loader.X.device
        dp = self.data_parallel
        if dp is not None:
            dp.start_epoch(self.epoch)
        # per-step values stay on the device; they are reduced once, after the last step
        losses: list[Tensor] = []       # the objective
        parts: list[Tensor] = []        # multi-task: each head's loss
        penalties: list[Tensor] = []
        hits: list[Tensor] = []
        outs: list[tuple[Tensor, Tensor]] = []      # outputs not yet scored, with their targets
        sizes: list[int] = []
        step_callbacks = [cb for cb in self.callbacks
                          if type(cb).on_step_end is not Callback.on_step_end]
        steps = Steps(self.optimizer)
        together = 1 if self.objective.loss == "mse" and self.objective.tasks is None else SCORED_TOGETHER
        for xb, yb in loader:
            if dp is not None:      # this rank's rows of the global batch (a sharded loader reads only those)
                xb, yb, share = (xb, yb, loader.share) if getattr(loader, "sharded", False) else dp.shard(xb, yb)
            out = self.model(xb)
            loss, logged = self.objective.losses(out, yb)
            penalty = sum(p(self.model) for p in self.penalties) if self.penalties else None
            steps.zero_grad()
            if dp is None:
                (loss if penalty is None else loss + penalty).backward()
            else:
                dp.backward(self.model, loss, share, penalty)
            steps.step()
            self.step += 1
            if self.constraints:
                with torch.no_grad():
                    for constrain in self.constraints:
                        constrain(self.model)
            for cb in step_callbacks:
                cb.on_step_end(self)
            losses.append(loss.detach())
            if logged is not loss:
                parts.append(logged.detach())
            if penalty is not None:
                penalties.append(penalty.detach())
            outs.append((out.detach(), yb))
            if len(outs) == together:
                hits.append(self._hits(outs))
            sizes.append(len(xb))
        if outs:
            hits.append(self._hits(outs))
        loss_t = torch.stack(losses)
        parts_t = torch.stack(parts) if parts else None     # (steps, heads)
        hits_t = torch.stack(hits).sum(0)
        if dp is not None:      # the global batches', the same on every rank
            loss_t, parts_t, hits_t, sizes = dp.gather_epoch(loss_t, parts_t, hits_t, sizes)
        penalty_t = torch.stack(penalties) if penalties else torch.zeros_like(loss_t)
        total = loss_t + penalty_t
        error = divergence(total, self.epoch + 1, self.step - len(losses))
        if error is not None:
            raise error
        weights = torch.tensor(sizes, dtype=loss_t.dtype, device=device)
        loss_sum = (parts_t.T if parts_t is not None else loss_t) @ weights
        logs = self.objective.summary("train", loss_sum, hits_t, sum(sizes), loader.y)
        logs["penalty"] = float(penalty_t.mean())
        return logs

    def _hits(self, outs: list[tuple[Tensor, Tensor]]) -> Tensor:
        """The objective's hits of the batches in ``outs``, scored as one batch (hits are sums
        over the batch), and ``outs`` emptied."""
        out, y = outs[0] if len(outs) == 1 else (torch.cat([o for o, _ in outs]), torch.cat([y for _, y in outs]))
        outs.clear()
        return self.objective.hits(out, y)

    def fit(self, train_loader, val: tuple[Tensor, Tensor] | None = None,
            epochs: int = 1) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are done (counting those before a resume) or a callback
        stops it; returns the history, one dict of metrics per epoch."""
        self.begin_fit(epochs)
        try:
            while self.epoch < epochs and not self.stop_training:
                start = time.perf_counter()
                logs = self._train_epoch(train_loader)
                if val is not None:
                    logs.update(self.evaluate(*val, prefix="val"))
                if self.eval_train:     # the train split as validation is scored (module docstring)
                    logs.update(self.evaluate(train_loader.X, train_loader.y, prefix="clean_train"))
                self.end_epoch(logs, time.perf_counter() - start)
        finally:
            self.end_fit()
        return self.history

    # the epoch bookkeeping of ``fit``, also driven from outside by a population's members

    def begin_fit(self, epochs: int) -> None:
        self.max_epochs = epochs
        for cb in self.callbacks:
            cb.on_fit_start(self)

    def end_epoch(self, logs: dict[str, float], seconds: float) -> dict[str, float]:
        """Count the epoch, complete ``logs`` (epoch, lr, seconds), add them to the history and
        run the callbacks' ``on_epoch_end``; returns the completed logs."""
        self.epoch += 1
        logs = {"epoch": self.epoch, **logs, "lr": float(self.optimizer.param_groups[0]["lr"]),
                "seconds": seconds}
        self.history.append(logs)
        for cb in self.callbacks:
            cb.on_epoch_end(self, logs)
        return logs

    def end_fit(self) -> None:
        # in reverse, like nested context managers: the EMA's final average is in place
        # before early stopping (listed before it) restores its best snapshot
        for cb in reversed(self.callbacks):
            cb.on_fit_end(self)

    # -- resume ------------------------------------------------------------------------------

    def _callback_keys(self) -> list[str]:
        """A stable name per callback: its class name, numbered from the second of a kind."""
        seen: dict[str, int] = {}
        keys = []
        for cb in self.callbacks:
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
        return keys

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: weights, optimizer, generators, callbacks with state."""
        return {
            "epoch": self.epoch, "step": self.step, "stop_training": self.stop_training,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
            "callbacks": {k: s for k, s in zip(self._callback_keys(), (cb.state_dict() for cb in self.callbacks)) if s},
            "history": self.history,
        }

    STATE_KEYS = ("epoch", "step", "stop_training", "model", "optimizer", "generators", "callbacks", "history")

    def check_state(self, state: Any, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Raise ``ValueError`` (one line naming the entry) unless ``state`` is one this trainer
        may load: ``0 <= epoch <= epochs``, ``step == epoch * steps_per_epoch`` (when given),
        one history row per epoch numbered 1..epoch, the weights ``tensors_like`` the network's,
        the optimizer's state its config's (``engine.optimizers.check_state``), a valid state
        for each generator, and each callback's verified by its ``check_state``."""
        table("state", state, self.STATE_KEYS)
        epoch = whole("epoch", state["epoch"], 0, epochs)
        step = whole("step", state["step"], 0)
        if steps_per_epoch is not None and step != epoch * steps_per_epoch:
            raise ValueError(f"'step' must be epoch * steps per epoch = {epoch} * {steps_per_epoch}; got {step}")
        if type(state["stop_training"]) is not bool:
            raise ValueError(f"'stop_training' must be true or false; got {short(state['stop_training'])}")
        history = state["history"]
        if not isinstance(history, list) or len(history) != epoch:
            raise ValueError(f"'history' must be a list of one row per epoch ({epoch}); got {short(history)}")
        for i, row in enumerate(history):
            table(f"history.{i}", row)
            whole(f"history.{i}.epoch", row.get("epoch"), i + 1, i + 1)
            missing = [k for k in ("lr", "seconds") if k not in row]     # end_epoch adds both
            if missing:
                raise ValueError(f"'history.{i}' must hold epoch, lr and seconds; it lacks {', '.join(missing)}")
            for key, value in row.items():
                if not isinstance(key, str) or type(value) not in (int, float):
                    raise ValueError(f"'history.{i}' must map metric names to numbers; got {short(key)}: "
                                     f"{short(value)}")
        tensors_like("model", state["model"], self.model.state_dict())
        check_optimizer_state(self.optimizer, state["optimizer"], step)
        table("generators", state["generators"], self.generators)
        for name, g in self.generators.items():
            generator_state(f"generators.{name}", state["generators"][name], g)
        keys = self._callback_keys()
        saved = table("callbacks", state["callbacks"])
        unknown = set(saved) - set(keys)
        if unknown:
            raise ValueError(f"checkpoint has state for callbacks {sorted(unknown)} that this trainer "
                             f"does not have ({', '.join(keys) or 'none'})")
        for key, cb in zip(keys, self.callbacks):
            cb.check_state(f"callbacks.{key}", saved.get(key), self, state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state_dict()``'s output, verified first by ``check_state`` (without
        the run's epochs and loader, which ``regulab.runs`` passes when it resumes a run)."""
        self.check_state(state)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.stop_training = bool(state["stop_training"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for k, g in self.generators.items():
            g.set_state(state["generators"][k])
        for key, cb in zip(self._callback_keys(), self.callbacks):
            if key in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][key])
        self.history = [dict(h) for h in state["history"]]
