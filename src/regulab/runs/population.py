"""``train_population(cfgs)``: K runs trained at once as one population, each into its own run.

Studies and sweeps train many small networks that differ only in a seed or a regularization
strength (``engine.population.eligibility.MEMBER_KEYS``). Each config is prepared as for
``train`` (its data split, initial weights, generators, callbacks and run directory), the
members are trained together by a ``Population`` (``regulab.engine.population``), and each
then gets the same run directory, store rows, metrics.csv, checkpoint and final evaluation as
a separate run -- and, because it draws from the same generators in the same order, the same
numbers up to float rounding.

A run that cannot stack trains alone, with the same results, and the reason is logged at INFO
on the "regulab" logger (``run NAME trains alone: data.resident = false blocks stacking``):
its config (a blocking key, ``eligibility.ineligible``), its trainer (a callback whose
``stackable`` is False, say), its network or optimizer (no stacked form), or its data, which
streams (``data.resident``). Early stopping is
per member: a member that stops is frozen while the others go on.

A user's network (``model.factory``) and regulab's CNN (``model.kind = "cnn"``) train as a
functional population
(``engine.population.functional``: ``torch.func`` over the user's module), which shares one
module among its members: runs that differ in a key that sets a layer (a drop probability,
a noise std, an augmentation) train as one population per layout of their layers, and a run
whose layout no other run has trains alone, saying so. A network that draws random numbers
(dropout, noise, augmentation) gets each member's masks from that member's own generator, as
its run alone would (``engine.population.draws``), so its numbers equal its separate run's to
float rounding; a forward whose draws do not split per member (a ``randperm``) draws from one
population stream instead, its members then their runs' equal in distribution only
(``FunctionalNet``'s docstring).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regulab.callbacks import Callback
from regulab.config.core import Config
from regulab.engine import threads
from regulab.engine.population.eligibility import MEMBER_KEYS, ineligible, population_key
from regulab.engine.population.functional import layer_difference, layer_signature
from regulab.engine.population.population import Population, unstackable
from regulab.engine.population.stacked import Unsupported
from regulab.errors import DivergedError
from regulab.runs.evaluate import Run, finish
from regulab.runs.prepare import Prepared, prepare
from regulab.runs.run import run_log, train
from regulab.runs.rundir import open_run
from regulab.runs.store import RunStore
from regulab.runs.viewers import end, viewers

__all__ = ["train_population", "population_of", "functional"]

log = logging.getLogger("regulab")


def functional(cfg: Config) -> bool:
    """Whether runs of ``cfg`` stack as a functional population (``FunctionalNet``: a user's
    network, or regulab's CNN) rather than layer by layer (``StackedNet``: regulab's MLPs)."""
    return cfg.model.factory is not None or cfg.model.kind == "cnn"


def population_of(preps: Sequence[Prepared]) -> Population:
    """The ``Population`` of prepared runs: their trainers, loaders (one data set, or each
    member's own bootstrap resample) and validation splits; a user's networks and regulab's
    CNNs as a functional one (``functional``)."""
    return Population([p.trainer for p in preps], [p.loader for p in preps], [p.splits.get("val") for p in preps],
                      functional=functional(preps[0].cfg))


def _groups(preps: Sequence[Prepared | None], reasons: list[str | None]) -> list[list[int]]:
    """The populations to train: the runs that may stack (``reasons[k]`` None), all as one --
    or, for a user's network, one per layout of its layers (``layer_signature``: a functional
    population shares one module). A run whose layers no other run has trains alone, its
    reason put in ``reasons``."""
    members = [k for k, why in enumerate(reasons) if why is None]
    if not members or not functional(preps[members[0]].cfg):
        return [members] if members else []
    groups: dict[tuple, list[int]] = {}
    for k in members:
        groups.setdefault(layer_signature(preps[k].trainer.model), []).append(k)
    if len(groups) == 1:
        return [members]
    for group in groups.values():
        if len(group) == 1:
            k = group[0]
            other = next(j for j in members if j != k)
            diff = layer_difference(preps[other].trainer.model, preps[k].trainer.model)
            reasons[k] = (f"its layers differ from run {preps[other].cfg.name}'s ({diff}); the members "
                          "of a user network's population share its layers")
    return [g for g in groups.values() if len(g) > 1]


class _EpochRows:
    """Collects the members' epoch rows for the run store (what each member's ``RunLog``
    flushes), written in one transaction at the population's epoch's end."""

    def __init__(self, store: RunStore):
        self.store, self.rows = store, []

    def log_epochs(self, rows: list[tuple[int, int, dict[str, float]]]) -> None:
        self.rows.extend(rows)

    def flush(self) -> None:
        self.store.log_epochs(self.rows)
        self.rows = []


def train_population(cfgs: Sequence[Config], outs: Sequence[str | Path | None] | None = None,
                     db: str | None = None, progress: bool | None = None, on_epoch=None,
                     callbacks: Sequence[Sequence[Callback]] | None = None,
                     return_errors: bool = False) -> list[Run]:
    """Train ``cfgs`` (equal ``population_key`` where they have one) as one population, each
    into its own run directory (``outs[k]`` or a new one), and return their ``Run``s in order.
    A run that cannot stack trains alone (same results; the reason logged, module docstring).
    ``callbacks[k]`` run after member k's own (a sweep's pruning). A run whose loss turns
    NaN/Inf is marked diverged and its ``DivergedError`` raised once the others are finished
    -- or, with ``return_errors``, returned in its place."""
    outs = list(outs) if outs is not None else [None] * len(cfgs)
    extra = [list(c) for c in callbacks] if callbacks is not None else [[] for _ in cfgs]
    reasons = [ineligible(c) for c in cfgs]
    keys = {population_key(c) for c, why in zip(cfgs, reasons) if why is None}
    if len(keys) > 1:
        raise ValueError(f"train_population needs configs that differ only in {', '.join(MEMBER_KEYS)}")
    preps: list[Prepared | None] = [prepare(c) if why is None else None for c, why in zip(cfgs, reasons)]
    for k, (p, more) in enumerate(zip(preps, extra)):
        if p is not None:
            p.trainer.callbacks += more
            reasons[k] = (f"its data streams ({p.streamed}); a population needs resident data"
                          if p.streamed else unstackable(p.trainer))
    done: list[Any] = [None] * len(cfgs)
    for members in _groups(preps, reasons):
        try:
            pop = population_of([preps[k] for k in members])
        except Unsupported as e:
            for k in members:
                reasons[k] = str(e)
            continue
        for k, run in zip(members, _fit_population(pop, [preps[k] for k in members],
                                                   [outs[k] for k in members], db, progress, on_epoch)):
            done[k] = run
    for k, (cfg, why) in enumerate(zip(cfgs, reasons)):
        if why is not None:
            log.info("run %s trains alone: %s", cfg.name, why)
            done[k] = _alone(cfg, outs[k], db, progress, extra[k])
    first_error = next((e for e in done if isinstance(e, DivergedError)), None)
    if first_error is not None and not return_errors:
        raise first_error
    return done


def _alone(cfg: Config, out, db: str | None, progress: bool | None,
           callbacks: list[Callback]) -> Run | DivergedError:
    """A run trained alone, or the ``DivergedError`` that ended it."""
    try:
        return train(cfg, out, db, progress, callbacks=callbacks)
    except DivergedError as e:
        return e


def _fit_population(pop: Population, preps: Sequence[Prepared], outs: Sequence[str | Path | None],
                    db: str | None, progress: bool | None, on_epoch) -> list[Run | DivergedError]:
    """Open the members' runs, fit the population with one progress bar and finish each member
    (or mark it diverged)."""
    cfgs = [p.cfg for p in preps]
    store = RunStore(db)
    runs = [open_run(c, out, store) for c, out in zip(cfgs, outs)]
    epochs = _EpochRows(store)
    writers = [run_log(p, run_dir, epochs, run_id) for p, (run_dir, run_id) in zip(preps, runs)]
    views = [viewers(p.cfg, run_dir) for p, (run_dir, _) in zip(preps, runs)]
    for p, writer, own in zip(preps, writers, views):
        p.trainer.callbacks += [writer, *own]

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
    n = threads.for_fit(cfgs[0].train.threads, preps[0].trainer.model, cfgs[0].train.batch_size, len(preps))
    try:
        for p, own in zip(preps, views):
            for view in own:
                view.on_run_start(p.trainer.history)
        start = time.perf_counter()
        with threads.using(n):
            errors = pop.fit(cfgs[0].train.epochs, flush)
    except BaseException as e:
        for p, (_, run_id), own in zip(preps, runs, views):
            store.set_status(run_id, "failed")
            end(own, history=p.trainer.history, error=e)
        raise
    finally:
        for writer in writers:      # a diverged member's rows before its last epoch, too
            writer.flush()
        epochs.flush()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    done: list[Run | DivergedError] = []
    for p, (run_dir, run_id), error, own in zip(preps, runs, errors, views):
        if error is not None:
            store.set_status(run_id, "diverged")
            end(own, history=p.trainer.history, error=error)
            done.append(error)
        else:
            done.append(finish(p, run_dir, store, run_id, seconds))
    for run, own in zip(done, views):   # every member finished first: a viewer's error stops none
        if not isinstance(run, DivergedError):
            end(own, run.results, run.history)
    return done
