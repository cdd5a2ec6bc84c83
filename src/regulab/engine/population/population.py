"""Population training: K runs of one architecture trained at once, as one batched model.

Studies and sweeps train many small networks that differ only in a seed or a regularization
strength. A ``Population`` takes their ``Trainer``s (network, optimizer, objective, penalties,
callbacks, generators), their ``TensorLoader``s and validation splits (one data set, or each
member's own bootstrap resample: ``engine.population.rows``), stacks the
networks into one ``StackedNet`` and the optimizers into one ``StackedOptimizer``, and trains
all members with a few batched kernels per step. Each member draws from its own generators in
the order its run alone would (its shuffling, its dropout masks and noise), so it ends with the
numbers of a separate run up to float rounding; its own trainer gets the epochs' logs, history,
weights and optimizer state, so its callbacks, checkpoint and final evaluation are a separate
run's. A member that stops (early stopping, divergence) leaves the stack at the next epoch
(``_compact``): the others are stacked again from their own networks and optimizers, so a
long-training member does not pay for the stopped ones.

Max-norm (``regularize.constraints``) is applied after each step to its members' weights at
once: member k's unit norms ``||W_k[i]||`` (the rows of each linear weight) scaled by
``c_k / max(||W_k[i]||, c_k)``; the members without it are left out (their rows untouched).

The EMA of the weights (``regularize.ema``'s ``EMACallback``) is stacked too
(``engine.population.ema``): after each step (and max-norm) every member's average is updated
at once, ``v_k <- d_k v_k + (1 - d_k) w_k``; the members are scored on validation (and
``eval_train``'s train split) with their averages, as ``Trainer.evaluate`` does under the
callback's ``evaluation_weights``; and at each epoch's end a member's average and count go back
to its own ``EMA``, so its early stopping, checkpoint and final model are its run's.

Per member k, the objective of a step is its own mean loss (``engine.objective``: its label
smoothing eps_k) plus its norm penalty ``l1_k * sum |w| + l2_k * sum w^2`` over the weights the
penalty selects (``regularize.penalties.selected_parameters``); the penalty's gradient
``l1_k sign(w) + 2 l2_k w`` is added by the optimizer, without a backward pass through it.

What has no stacked form raises ``Unsupported`` saying why (``unstackable`` for a trainer):
multi-task heads, the BCE loss, a custom loss, constraints other than max-norm on every layer,
penalties other than ``NormPenalty``, a callback whose ``stackable`` is False, and -- found when
stacking -- layers other than linear (with weight noise or DropConnect), activation, batch norm,
dropout and noise, or optimizers that differ beyond the learning rate and weight decay. Which configs may
stack at all is ``eligibility``'s question.

``functional=True`` trains a user's networks (any ``nn.Module``, ``model.factory``) instead of
regulab's: the same loop, objective, penalties, optimizer, max-norm, EMA and write-back, with
the members' networks run as one by ``torch.func`` (``engine.population.functional``:
``FunctionalNet``, whose module docstring says what that means for randomness).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from regulab.callbacks import Callback
from regulab.data.loader import TensorLoader
from regulab.engine.objective import Objective
from regulab.engine.population.ema import StackedEMA
from regulab.engine.population.functional import FunctionalNet
from regulab.engine.population.optimizer import StackedOptimizer
from regulab.engine.population.penalty import StackedNormPenalty
from regulab.engine.population.rows import MemberRows
from regulab.engine.population.stacked import StackedNet, Unsupported
from regulab.engine.schedules import LRSchedule
from regulab.engine.trainer import Trainer, divergence
from regulab.errors import DivergedError
from regulab.regularize.constraints import MaxNorm, max_norm_layers
from regulab.regularize.ema import EMACallback
from regulab.regularize.penalties import NormPenalty, selected_parameters

__all__ = ["Population", "unstackable"]

_PREDRAW_STEPS = 32     # dropout masks drawn ahead, per block of full steps


def unstackable(trainer: Trainer) -> str | None:
    """Why ``trainer`` cannot be a population member, as far as the trainer shows (None: it
    can); its network and optimizer are checked when they are stacked."""
    objective = trainer.objective
    if objective.tasks is not None:
        return "multi-task heads have no stacked form"
    if objective.custom is not None:
        return "a custom loss function has no stacked form"
    if objective.loss == "bce":
        return "the bce loss has no stacked form"
    if any(not isinstance(c, MaxNorm) or c.layers is not None for c in trainer.constraints):
        return "only max-norm on every layer has a stacked form among constraints"
    if trainer.data_parallel is not None:
        return "a data-parallel rank cannot be stacked"
    if len(trainer.penalties) > 1 or any(not isinstance(p, NormPenalty) for p in trainer.penalties):
        return "only one NormPenalty (l1, l2) has a stacked form"
    if sum(isinstance(cb, EMACallback) for cb in trainer.callbacks) > 1:
        return "only one EMACallback has a stacked form"
    for cb in trainer.callbacks:
        name = type(cb).__name__
        if type(cb) is EMACallback:     # stacked by the population (module docstring)
            continue
        if not cb.stackable:
            return f"callback {name} cannot be stacked (its stackable is False)"
        if type(cb).on_step_end is not Callback.on_step_end \
                or type(cb).evaluation_weights is not Callback.evaluation_weights:
            return f"callback {name} acts within epochs (on_step_end, evaluation_weights)"
    return None


class Population:
    """Trains ``trainers`` (on ``loaders``, validated on ``val``) at once; module docstring.

    At each epoch's end a member's weights and optimizer state are copied into its own network
    and optimizer, and its own callbacks run (early stopping, its run log, a sweep's pruning),
    as ``Trainer.fit`` would run them; a member they stop is frozen. Each epoch's ``seconds``
    is the whole population's time. ``fit`` returns, per member, None or the
    ``DivergedError`` that ended it. ``functional``: the networks are a user's, run with
    ``torch.func`` (``FunctionalNet``) rather than stacked layer by layer (``StackedNet``).
    """

    def __init__(self, trainers: Sequence[Trainer], loaders: Sequence[TensorLoader],
                 val: tuple[Tensor, Tensor] | list[tuple[Tensor, Tensor] | None] | None,
                 functional: bool = False):
        self.functional = functional
        self.trainers, self.loaders = list(trainers), list(loaders)
        if not self.trainers or len(self.trainers) != len(self.loaders):
            raise ValueError(f"a population needs one loader per trainer; got {len(self.trainers)} "
                             f"trainers and {len(self.loaders)} loaders")
        for k, t in enumerate(self.trainers):
            why = unstackable(t)
            if why is not None:
                raise Unsupported(f"member {k}: {why}")
        self.batch_size = self.loaders[0].batch_size
        for k, loader in enumerate(self.loaders):
            if not loader.shuffle or loader.drop_last or loader.batch_size != self.batch_size:
                raise Unsupported(f"member {k}'s loader differs in batch size, shuffling or drop_last")
        self.train = MemberRows([(loader.X, loader.y) for loader in self.loaders], "training")
        vals = list(val) if isinstance(val, list) else [val] * len(self.trainers)
        if len(vals) != len(self.trainers):
            raise ValueError(f"a population needs one validation split per trainer; got {len(vals)} "
                             f"for {len(self.trainers)} trainers")
        if any(v is None for v in vals) and any(v is not None for v in vals):
            raise Unsupported("some members have a validation split and others none")
        self.val = MemberRows(vals, "validation") if vals[0] is not None else None
        losses = {t.objective.loss for t in self.trainers}
        if len(losses) != 1:
            raise Unsupported(f"members' losses differ: {sorted(losses)}")
        self.members = list(range(len(self.trainers)))     # who is stacked: all, until some stop
        self.scheduled = any(isinstance(cb, LRSchedule) for t in self.trainers for cb in t.callbacks)
        self._stack(losses.pop())

    def _stack(self, loss: str) -> None:
        """Stack the networks, objectives, penalties and optimizers of ``self.trainers`` (each
        network from its current weights, each optimizer from its current state)."""
        dev = self.train.device
        nets, generators = [t.model for t in self.trainers], [t.generators.get("noise") for t in self.trainers]
        self.net = FunctionalNet(nets, generators, self.train.member(0)[0][:2]) if self.functional \
            else StackedNet(nets, generators)
        self.objective = Objective(loss, [t.objective.label_smoothing for t in self.trainers],
                                   members=self.net.K).to(dev)
        flat = self.net.flat
        l1, l2, chosen = self._norm_penalties()
        self.penalty = StackedNormPenalty([p for p, c in zip(self.net.params, chosen) if c],
                                          [p.grad for p, c in zip(self.net.params, chosen) if c], l1, l2)
        self.opt = StackedOptimizer(flat, [t.optimizer for t in self.trainers], self.penalty)
        for k, t in enumerate(self.trainers):
            self.opt.load(k, t.optimizer, self.net.member_params[k])
        bound = [k for k, t in enumerate(self.trainers) if t.constraints]             # members with one
        self.max_norm = torch.tensor([self.trainers[k].constraints[0].max_norm for k in bound],
                                     device=dev)[:, None] if bound else None           # (K', 1) their radii
        self.bound = None if len(bound) == len(self.trainers) else torch.tensor(bound, device=dev)
        units = {id(layer.weight) for layer in max_norm_layers(self.trainers[0].model)}
        self.constrained = [p for p, own in zip(self.net.params, self.net.member_params[0])
                            if id(own) in units]                                       # (K, out, in, *k)
        self.ema = self._stacked_ema()

    def _stacked_ema(self) -> StackedEMA | None:
        """The members' EMAs as one, from their current state; None when no member has one, or
        before the fit has begun (an ``EMACallback`` builds its ``EMA`` at ``on_fit_start``)."""
        callbacks = [next((cb for cb in t.callbacks if isinstance(cb, EMACallback)), None) for t in self.trainers]
        if all(cb is None for cb in callbacks) or any(cb is not None and cb.ema is None for cb in callbacks):
            return None
        try:
            return StackedEMA(self.net.flat, [cb.ema if cb is not None else None for cb in callbacks])
        except ValueError as e:
            raise Unsupported(str(e)) from None

    @torch.no_grad()
    def _constrain(self) -> None:
        """Max-norm on the linear weights of the members that have it (module docstring;
        ``max_norm_`` per member): their rows ``bound`` only, when some members have none."""
        for w in self.constrained:
            rows = w if self.bound is None else w.index_select(0, self.bound)
            norms = torch.linalg.vector_norm(rows.flatten(2), dim=2)                   # (K', out)
            scale = (self.max_norm / norms.clamp(min=self.max_norm)).view(*norms.shape, *[1] * (w.dim() - 2))
            if self.bound is None:
                w.mul_(scale)
            else:
                w.index_copy_(0, self.bound, rows * scale)

    def _compact(self) -> None:
        """Unstack the members that stopped (early stopping, divergence, their last epoch):
        the others go on as a smaller population from their own networks and optimizers,
        which every epoch's end brought up to date, so each continues exactly; a stopped
        member's work is no longer computed."""
        keep = [k for k in range(self.net.K) if self.net.active[k]]
        if not keep or len(keep) == self.net.K:
            return
        self.members = [self.members[k] for k in keep]
        self.trainers = [self.trainers[k] for k in keep]
        self.loaders = [self.loaders[k] for k in keep]
        self.train = self.train.select(keep)
        self.val = self.val.select(keep) if self.val is not None else None
        self._stack(self.objective.loss)

    def _norm_penalties(self) -> tuple[list[float], list[float], list[bool]]:
        """(each member's l1, each member's l2, per parameter whether the penalty acts on it)."""
        pens = [t.penalties[0] if t.penalties else None for t in self.trainers]
        l1, l2 = ([float(getattr(p, k)) if p is not None else 0.0 for p in pens] for k in ("l1", "l2"))
        selections = {(tuple(p.layers or ()), p.include_bias) for p in pens if p is not None}
        if len(selections) > 1:
            raise Unsupported("members' penalties act on different parameters")
        if not selections:
            return l1, l2, [False] * len(self.net.params)
        layers, bias = selections.pop()
        chosen = {id(w) for _, w in selected_parameters(self.trainers[0].model, list(layers) or None, bias)}
        return l1, l2, [id(p) in chosen for p in self.net.member_params[0]]

    # -- the loop ---------------------------------------------------------------------------

    def _epoch(self) -> tuple[Tensor, ...]:
        """One epoch of every active member: per step (K,) losses, penalties and hits, and the
        steps' batch sizes."""
        n, dev, batch = self.train.n, self.train.device, self.batch_size
        orders = torch.stack([torch.randperm(n, generator=loader.generator, device=dev)
                              if self.net.active[k] else torch.arange(n, device=dev)
                              for k, loader in enumerate(self.loaders)])                # (K, n)
        steps, full = -(-n // batch), n // batch
        losses, pens, hits, sizes = [], [], [], []
        active = torch.tensor(self.net.active, device=dev)
        everyone = all(self.net.active)
        block = _PREDRAW_STEPS
        for s in range(steps):
            if s % block == 0 and s < full:
                self.net.predraw(batch, min(block, full - s))
            idx = orders[:, s * batch:(s + 1) * batch]                             # (K, B)
            xb, yb = self.train.batch(idx)
            out = self.net.forward(xb, True, s % block if s < full else None)
            loss = self.objective(out, yb)                                          # (K,)
            pen = self.penalty.value()
            self.opt.zero_grad()
            (loss if everyone else torch.where(active, loss, 0.0)).sum().backward()
            self.opt.step()
            if self.max_norm is not None:
                self._constrain()
            if self.ema is not None:
                self.ema.update()
            losses.append(loss.detach())
            pens.append(pen)
            hits.append(self.objective.hits(out.detach(), yb))
            sizes.append(idx.shape[1])
        self.net.drop_predrawn()
        w = torch.tensor(sizes, dtype=torch.float32, device=dev)
        return torch.stack(losses), torch.stack(pens), torch.stack(hits), w

    @torch.no_grad()
    def _score(self, rows: MemberRows) -> tuple[Tensor, Tensor]:
        """(K,) summed losses and (K, ...) hits of every member in eval mode on ``rows`` (the
        validation split; the train split for ``eval_train``), in evaluation-sized batches."""
        K, batch = self.net.K, self.trainers[0].eval_batch_size
        loss_sum = torch.zeros(K, device=rows.device)
        hits = torch.zeros((), device=rows.device)
        for i in range(0, rows.n, batch):
            xk, yk = rows.chunk(i, i + batch)
            out = self.net.forward(xk, False)
            loss_sum += self.objective(out, yk) * xk.shape[1]
            hits = hits + self.objective.hits(out, yk)
        return loss_sum, hits

    def fit(self, epochs: int, on_epoch: Callable[[int], None] | None = None) -> list[DivergedError | None]:
        """Train every member until it stops or ``epochs`` are done; ``on_epoch(epoch)`` after each."""
        errors: list[DivergedError | None] = [None] * self.net.K
        everyone = list(self.trainers)
        for t in everyone:
            t.begin_fit(epochs)
        self.ema = self._stacked_ema()
        try:
            epoch = 0
            while epoch < epochs and any(self.net.active):
                self._compact()
                if self.scheduled:      # the rates the members' schedules set (engine.schedules)
                    self.opt.set_rates([t.optimizer for t in self.trainers])
                start = time.perf_counter()
                losses, pens, hits, w = self._epoch()
                with self.ema.swapped() if self.ema is not None else contextlib.nullcontext():
                    val = self._score(self.val) if self.val is not None else None
                    clean = self._score(self.train) if any(t.eval_train for t in self.trainers) else None
                epoch += 1
                seconds = time.perf_counter() - start
                for k in range(self.net.K):
                    if self.net.active[k]:
                        errors[self.members[k]] = self._member_epoch(
                            k, losses[:, k], pens[:, k], hits[:, k], w,
                            None if val is None else (val[0][k], val[1][k]),
                            None if clean is None else (clean[0][k], clean[1][k]), seconds)
                if on_epoch is not None:
                    on_epoch(epoch)
        finally:
            for t, error in zip(everyone, errors):
                if error is None:
                    t.end_fit()
        return errors

    def _member_epoch(self, k: int, loss: Tensor, pen: Tensor, hits: Tensor, w: Tensor,
                      val: tuple[Tensor, Tensor] | None, clean: tuple[Tensor, Tensor] | None,
                      seconds: float) -> DivergedError | None:
        """Member k's epoch end, as ``Trainer.fit`` does it: logs, history, callbacks; ``val``
        and ``clean`` its (summed loss, hits) on the validation and (eval mode) train splits."""
        t = self.trainers[k]
        error = divergence(loss + pen, t.epoch + 1, t.step)
        if error is not None:
            self.net.active[k] = False
            return error
        n, y = self.train.n, self.train.member(k)[1]
        logs = t.objective.summary("train", loss @ w, hits.sum(0), n, y)
        logs["penalty"] = float(pen.mean()) if t.penalties else 0.0
        if val is not None:     # None: no validation split (data.split = [1, 0, 0])
            logs.update(t.objective.summary("val", *val, self.val.n, self.val.member(k)[1]))
        if clean is not None and t.eval_train:
            logs.update(t.objective.summary("clean_train", *clean, n, y))
        t.step += len(w)
        self.net.write_back(k)
        self.opt.export(k, t.optimizer, self.net.member_params[k])
        if self.ema is not None:
            self.ema.write_back(k)
        t.end_epoch(logs, seconds)
        if t.stop_training or t.epoch >= t.max_epochs:
            self.net.active[k] = False
        return None
