"""Population training: K runs of one architecture trained at once, as one batched model.

Studies and sweeps train many small networks that differ only in a seed or a regularization
strength. ``train_population(cfgs)`` trains them together: each config is prepared as for
``train`` (its data split, initial weights, generators, callbacks and run directory), the
networks are stacked into one ``StackedNet`` and their optimizers into one
``StackedOptimizer`` (``regulab.train.stacked``), and every step trains all members in a few
batched kernels. Each member then gets the same run directory, store rows, metrics.csv,
checkpoint and final evaluation as a separate run -- and, because it draws from the same
generators in the same order, the same numbers up to float rounding.

Members may differ in ``MEMBER_KEYS``: the seed, dropout probabilities (input and hidden), L1
and L2 strengths, input and weight noise, label smoothing, learning rate and weight decay --
and in nothing else that affects training (``population_key``). Early stopping is per member: a
member that stops is frozen while the others go on. MLPs and softmax regressions with the
dropout family's dropout and noise layers have a stacked form; batch norm, DropConnect, CNNs,
augmentation, EMA, max-norm, multi-task heads and transfer do not, and train one by one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from regulab.config.core import Config
from regulab.errors import DivergedError
from regulab.runs.store import RunStore
from regulab.callbacks import Callback
from regulab.runs.prepare import Prepared, prepare
from regulab.runs.evaluate import Run, finish
from regulab.runs.run import open_run, run_log
from regulab.engine.population.stacked import StackedNet, StackedOptimizer, Unsupported
from regulab.engine.objective import Objective
from regulab.engine.trainer import divergence

__all__ = ["MEMBER_KEYS", "population_key", "train_population", "Population"]

MEMBER_KEYS = ("train.seed", "model.dropout", "model.input_dropout", "regularization.l1",
               "regularization.l2", "regularization.input_noise", "regularization.weight_noise",
               "regularization.label_smoothing", "optim.lr", "optim.weight_decay")
# what does not change training: the run's name, the final evaluation, logging
_IGNORED = ("name", "eval", "train.progress", "train.checkpoint_every")


def _ineligible(cfg: Config) -> str | None:
    """Why ``cfg`` cannot be a population member (None: it can), from the config alone."""
    m, r = cfg.model, cfg.regularization
    checks = [(m.kind not in ("mlp", "linear"), f"model.kind '{m.kind}'"),
              (m.batchnorm, "model.batchnorm"), (m.dropconnect > 0, "model.dropconnect"),
              (r.ema > 0, "regularization.ema"), (r.max_norm is not None, "regularization.max_norm"),
              (r.penalty_layers is not None, "regularization.penalty_layers"),
              (bool(cfg.multitask.tasks), "multitask.tasks"),
              (cfg.transfer.source is not None, "transfer.source"),
              (cfg.data.bootstrap, "data.bootstrap"), (cfg.train.loss == "bce", "train.loss 'bce'"),
              (cfg.train.nproc > 1, "train.nproc > 1")]
    return next((why for bad, why in checks if bad), None)


def population_key(cfg: Config) -> str | None:
    """Configs with equal keys can train as one population; None: ``cfg`` cannot at all."""
    if _ineligible(cfg) is not None:
        return None
    d = cfg.to_dict()
    for key in MEMBER_KEYS + _IGNORED:
        section, _, name = key.partition(".")
        (d.get(section) if name else d).pop(name or section, None)
    return json.dumps(d, sort_keys=True, default=str)


class Population:
    """Trains prepared runs ``preps`` (same population key) at once; see the module docstring.

    At each epoch's end a member's weights and optimizer state are copied into its own network
    and optimizer, and its own callbacks run (early stopping, its RunLog, a sweep's pruning),
    as ``Trainer.fit`` would run them; a member they stop is frozen. Each epoch's ``seconds``
    is the whole population's time. ``fit`` returns, per member, None or the
    ``DivergedError`` that ended it.
    """

    def __init__(self, preps: Sequence[Prepared]):
        self.preps = list(preps)
        for p in self.preps:
            if p.trainer.tasks is not None or p.trainer.binary or p.trainer.constraints:
                raise Unsupported("multi-task, binary or constrained runs")
            for cb in p.trainer.callbacks:
                if type(cb).on_step_end is not Callback.on_step_end \
                        or type(cb).evaluation_weights is not Callback.evaluation_weights:
                    raise Unsupported(f"callback {type(cb).__name__} acts within epochs")
        first = self.preps[0]
        self.X, self.y = first.splits["train"]
        self.val = first.splits["val"]
        for p in self.preps[1:]:
            if not (torch.equal(p.splits["train"][0], self.X) and torch.equal(p.splits["val"][0], self.val[0])):
                raise Unsupported("members were prepared on different data")
        self.net = StackedNet([p.trainer.model for p in self.preps], [p.noise for p in self.preps])
        dev = self.X.device
        cfgs = [p.cfg for p in self.preps]
        self.objective = Objective("mse" if first.task == "regression" else "cross_entropy",
                                   [c.regularization.label_smoothing for c in cfgs], members=len(cfgs)).to(dev)
        self.l1, self.l2 = (torch.tensor([getattr(c.regularization, k) for c in cfgs], device=dev)
                            for k in ("l1", "l2"))
        bias = first.cfg.regularization.penalty_bias     # NormPenalty: weights, maybe biases
        chosen = [p.dim() >= 3 or (bias and p.dim() == 2) for p in self.net.params]
        self.penalized = [p for p, c in zip(self.net.params, chosen) if c]
        mask = torch.cat([torch.full((p.numel(),), float(c), device=dev)
                          for p, c in zip(self.net.params, chosen)])
        flat = self.net.flat
        self.opt = StackedOptimizer(flat, [p.trainer.optimizer for p in self.preps],
                                    l1=flat.per_element(self.l1) * mask if self.l1.any() else None,
                                    l2=flat.per_element(self.l2) * mask if self.l2.any() else None)

    # -- per-member losses ------------------------------------------------------------------

    @torch.no_grad()
    def _penalty(self) -> torch.Tensor:
        """(K,) ``l1_k * sum |w| + l2_k * sum w^2`` over each member's weights (NormPenalty), the
        value logged; its gradient ``l1_k sign(w) + 2 l2_k w`` the optimizer adds."""
        zero = torch.zeros(self.net.K, device=self.X.device)
        norm = torch.linalg.vector_norm
        a = sum((norm(w.flatten(1), 1, dim=1) for w in self.penalized), zero) if self.opt.l1 is not None else zero
        q = sum((norm(w.flatten(1), 2, dim=1).square() for w in self.penalized), zero) \
            if self.opt.l2 is not None else zero
        return self.l1 * a + self.l2 * q

    # -- the loop ---------------------------------------------------------------------------

    def _epoch(self, batch: int) -> tuple[torch.Tensor, ...]:
        K, n, dev = self.net.K, len(self.X), self.X.device
        orders = torch.stack([torch.randperm(n, generator=p.loader.generator, device=dev)
                              if self.net.active[k] else torch.arange(n, device=dev)
                              for k, p in enumerate(self.preps)])                  # (K, n)
        steps = -(-n // batch)
        full = n // batch
        losses, pens, hits, sizes = [], [], [], []
        active = torch.tensor(self.net.active, device=dev)
        everyone = all(self.net.active)
        block = 32
        for s in range(steps):
            if s % block == 0 and s < full:
                self.net.predraw(batch, min(block, full - s))
            idx = orders[:, s * batch:(s + 1) * batch]                             # (K, B)
            xb = self.X.index_select(0, idx.reshape(-1)).view(*idx.shape, *self.X.shape[1:])
            yb = self.y.index_select(0, idx.reshape(-1)).view(*idx.shape, *self.y.shape[1:])
            out = self.net.forward(xb, True, s % block if s < full else None)
            loss = self.objective(out, yb)
            pen = self._penalty()
            self.opt.zero_grad()
            (loss if everyone else torch.where(active, loss, 0.0)).sum().backward()
            self.opt.step()
            losses.append(loss.detach())
            pens.append(pen)
            hits.append(self.objective.hits(out.detach(), yb))
            sizes.append(idx.shape[1])
        self.net._masks = None
        w = torch.tensor(sizes, dtype=torch.float32, device=dev)
        return torch.stack(losses), torch.stack(pens), torch.stack(hits), w

    @torch.no_grad()
    def _validate(self, eval_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.val
        loss_sum = torch.zeros(self.net.K, device=X.device)
        hits = torch.zeros((), device=X.device)
        for i in range(0, len(X), eval_batch):
            xb, yb = X[i:i + eval_batch], y[i:i + eval_batch]
            out = self.net.forward(xb.unsqueeze(0).expand(self.net.K, *xb.shape), False)
            yk = yb.unsqueeze(0).expand(self.net.K, *yb.shape)
            loss_sum += self.objective(out, yk) * len(xb)
            hits = hits + self.objective.hits(out, yk)
        return loss_sum, hits

    def fit(self, epochs: int, on_epoch=None) -> list[DivergedError | None]:
        """Train every member until it stops or ``epochs`` are done; ``on_epoch(epoch)`` after each."""
        errors: list[DivergedError | None] = [None] * self.net.K
        for p in self.preps:
            p.trainer.begin_fit(epochs)
        try:
            epoch = 0
            while epoch < epochs and any(self.net.active):
                start = time.perf_counter()
                losses, pens, hits, w = self._epoch(self.preps[0].cfg.train.batch_size)
                val_loss, val_hits = self._validate(self.preps[0].cfg.eval.batch_size)
                epoch += 1
                seconds = time.perf_counter() - start
                for k, p in enumerate(self.preps):
                    if self.net.active[k]:
                        errors[k] = self._member_epoch(k, p, losses[:, k], pens[:, k], hits[:, k], w,
                                                       val_loss[k], val_hits[k], seconds)
                if on_epoch is not None:
                    on_epoch(epoch)
        finally:
            for k, p in enumerate(self.preps):
                if errors[k] is None:
                    p.trainer.end_fit()
        return errors

    def _member_epoch(self, k: int, p: Prepared, loss, pen, hits, w, val_loss, val_hits,
                      seconds: float) -> DivergedError | None:
        """Member k's epoch end, as ``Trainer.fit`` does it: logs, history, callbacks."""
        t = p.trainer
        error = divergence(loss + pen, t.epoch + 1, t.step)
        if error is not None:
            self.net.active[k] = False
            return error
        logs = t.objective.summary("train", loss @ w, hits.sum(0), len(self.X), self.y)
        logs["penalty"] = float(pen.mean()) if t.penalties else 0.0
        logs.update(t.objective.summary("val", val_loss, val_hits, len(self.val[0]), self.val[1]))
        t.step += len(w)
        self.net.write_back(k)
        self.opt.export(k, t.optimizer, self.net.member_params[k])
        t.end_epoch(logs, seconds)
        if t.stop_training or t.epoch >= t.max_epochs:
            self.net.active[k] = False
        return None


class _EpochRows:
    """Collects the members' epoch rows for the run store, written in one transaction per
    epoch (``RunLog`` calls ``log_epoch``)."""

    def __init__(self, store: RunStore):
        self.store, self.rows = store, []

    def log_epoch(self, run_id: int, epoch: int, metrics: dict[str, float]) -> None:
        self.rows.append((run_id, epoch, dict(metrics)))

    def flush(self) -> None:
        self.store.log_epochs(self.rows)
        self.rows = []


def train_population(cfgs: Sequence[Config], outs: Sequence[str | Path | None] | None = None,
                     db: str | None = None, progress: bool | None = None, on_epoch=None,
                     callbacks: Sequence[Sequence[Callback]] | None = None,
                     return_errors: bool = False) -> list[Run]:
    """Train ``cfgs`` (equal ``population_key``) as one population, each into its own run
    directory (``outs[k]`` or a new one), and return their ``Run``s in order. If the networks
    turn out to have no stacked form, they train one by one instead (same results).
    ``callbacks[k]`` run after member k's own (a sweep's pruning). A member whose loss turns
    NaN/Inf is marked diverged and its ``DivergedError`` raised once the others are finished
    -- or, with ``return_errors``, returned in its place."""
    from regulab.runs.run import train
    outs = list(outs) if outs is not None else [None] * len(cfgs)
    extra = [list(c) for c in callbacks] if callbacks is not None else [[] for _ in cfgs]
    keys = {population_key(c) for c in cfgs}
    if None in keys or len(keys) != 1:
        raise ValueError("train_population needs configs that differ only in "
                         f"{', '.join(MEMBER_KEYS)}")
    preps = [prepare(c) for c in cfgs]
    for p, more in zip(preps, extra):
        p.trainer.callbacks += more
    try:
        pop = Population(preps)
    except Unsupported:
        return [train(c, out, db, progress, callbacks=more) for c, out, more in zip(cfgs, outs, extra)]
    store = RunStore(db)
    runs = [open_run(c, out, store) for c, out in zip(cfgs, outs)]
    epochs = _EpochRows(store)
    for p, (run_dir, run_id) in zip(preps, runs):
        p.trainer.callbacks.append(run_log(p, run_dir, epochs, run_id))

    show = (sys.stderr.isatty() if progress is None else progress) and cfgs[0].train.progress
    bar = None
    if show:    # one bar over the population's epochs
        from tqdm.auto import tqdm
        bar = tqdm(total=cfgs[0].train.epochs, desc=f"population of {len(cfgs)}", unit="epoch",
                   leave=False, dynamic_ncols=True)

    def flush(epoch: int) -> None:
        epochs.flush()
        if bar is not None:
            bar.set_postfix_str(f"{sum(pop.net.active)} training", refresh=False)
            bar.update(1)
        if on_epoch is not None:
            on_epoch(epoch)
    start = time.perf_counter()
    try:
        errors = pop.fit(cfgs[0].train.epochs, flush)
    except BaseException:
        for _, run_id in runs:
            store.set_status(run_id, "failed")
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    done: list[Any] = []
    for p, (run_dir, run_id), error in zip(preps, runs, errors):
        if error is not None:
            store.set_status(run_id, "diverged")
            done.append(error)
        else:
            done.append(finish(p, run_dir, store, run_id, seconds))
    first_error = next((e for e in errors if e is not None), None)
    if first_error is not None and not return_errors:
        raise first_error
    return done
