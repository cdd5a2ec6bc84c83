"""The runs of a study: ``Runner`` trains each variant's runs (as populations where their keys
allow, a run identical to one trained already reused), remembers what the analysis needs, and
in a study shared by several workers does each unit of work under its claim
(``regulab.studies.shared``); ``Progress`` is the study's one progress bar.

A unit of work is a population of runs, a run alone or a deep ensemble (``_Unit``): alone, a
worker trains populations first (``train_populations``) and every other run when its results
are needed (``run_variant``); shared, it trains every free unit ahead and takes the others'
results when they are needed, so each worker walks the same plan and records the same numbers.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regulab.engine.population.eligibility import ineligible, population_key
from regulab.io import finite_json
from regulab.runs.claims import Claims
from regulab.runs.evaluate import add_test
from regulab.runs.population import train_population
from regulab.runs.run import train
from regulab.runs.store import RunStore
from regulab.studies import aggregate, kinds, shared, tune
from regulab.studies import workers as local_workers
from regulab.studies.spec import StudySpec, Variant

log = logging.getLogger("regulab")

__all__ = ["Runner", "Progress"]


class Progress:
    """One bar over the whole study's runs (off when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool | None, desc: str):
        enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="run", dynamic_ncols=True)

    def start(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=True)

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def done(self, runs: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(runs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class _Trained:
    """A run as ``_one`` records it: its results and history, and its model (None when another
    worker trained it: loaded from ``model_dir``, relative to the study, when the analysis needs it)."""
    results: dict[str, Any]
    history: list[dict[str, Any]]
    model_dir: str
    factory: Any = None             # the user's model.factory, to load the model with
    model: Any = None


@dataclass
class _Unit:
    """Runs trained at once (a population, a run alone, a deep ensemble): ``jobs`` are their
    ((variant, seed, fold), config, run directory), ``fit`` trains them; ``roots`` the
    directories it makes, ``run_dirs`` its runs', ``model_dirs`` where each job's model is."""
    what: str
    jobs: list[tuple]
    fit: Callable[[], list[_Trained]]
    roots: list[str]
    run_dirs: list[str]
    model_dirs: list[str]

    @property
    def key(self) -> str:
        """The unit's claim in a shared study: its directories."""
        return f"{self.roots[0]}#{hashlib.sha256(' '.join(self.roots).encode()).hexdigest()[:16]}"


class Runner:
    """Trains the runs of one study into its directory and remembers what analysis needs; with
    ``claims``, one of the workers of a shared study (``regulab.studies.shared``)."""

    def __init__(self, spec: StudySpec, study_dir: Path, db: str | None, progress: Progress,
                 claims: Claims | None = None, split: int = 1):
        self.spec, self.dir, self.db, self.progress = spec, study_dir, db, progress
        self.claims = claims
        self.split = split          # workers on this machine: a population's members split among them
        self.jobs = kinds.KINDS[spec.kind].jobs(spec)      # the runs of each variant
        self.models: dict[str, Any] = {}        # variant -> first run's model (for the analysis)
        self.configs: dict[str, Any] = {}       # variant -> first run's resolved config
        self.params: dict[str, int] = {}
        self.sources: dict[int, Path] = {}      # transfer: seed -> source run directory
        self.trained: dict[tuple, tuple[Any, _Trained]] = {}   # (variant, seed, fold) -> (config, run)
        self.pending: dict[tuple, _Unit] = {}   # (variant, seed, fold) -> its unit, held by another worker
        self.entries: dict[str, dict[str, Any]] = {}    # variant -> its entry, chosen on validation
        self.count = 0                          # runs trained (candidates and trials too)
        self.done: dict[str, tuple] = {}        # config fingerprint -> (record, run, config)

    def _job(self, v: Variant, job: kinds.Job, where: str) -> tuple[dict, str]:
        """(config overrides beyond the variant's, run directory relative to the study's)."""
        extra: dict[str, Any] = dict(job.overrides)
        if "transfer.source" in v.overrides and job.seed in self.sources:
            # a transfer study: the source run of the same seed (elsewhere: the run the variant names)
            extra["transfer.source"] = str(self.sources[job.seed].resolve())
        rel = "/".join(p for p in (where, v.name) if p) + f"/seed-{job.seed}{job.suffix}"
        return extra, rel

    def train_populations(self, variants: list[Variant], where: str = "runs",
                          jobs: list[kinds.Job] | None = None, pool: bool = True) -> None:
        """Train the runs of ``variants`` (on ``jobs``, default all the study's) that differ only
        in population member keys (seeds, regularization strengths) as populations of up to
        ``[study] population`` members (when ``pool``); in a shared study every other run is a
        unit too, all trained now unless another worker holds them. ``run_variant`` then takes
        their results instead of training them again."""
        groups: dict[str, list[tuple]] = {}
        units: list[_Unit] = []
        seen: set[str] = set()
        for v in variants:
            stack = pool and self.spec.population >= 2 and v.members == 1 \
                and "transfer.source" not in v.overrides
            if not stack and self.claims is None:
                continue
            for job in self.jobs if jobs is None else jobs:
                extra, rel = self._job(v, job, where)
                name = (v.name, job.seed, job.fold)
                if name in self.trained or name in self.pending:
                    continue
                if v.members > 1:
                    units.append(self._ensemble(v, name, extra, rel))
                    continue
                cfg = self.spec.config(v, job.seed, extra)
                fp = _fingerprint(cfg)
                if fp in self.done or fp in seen:
                    continue        # trained already (or alone before in this list): reused
                key = population_key(cfg) if stack else None
                if key is not None:
                    groups.setdefault(key, []).append((name, cfg, rel))
                    continue
                if stack:
                    log.info("run %s trains alone: %s", cfg.name, ineligible(cfg))
                if self.claims is not None:
                    units.append(self._alone(name, cfg, rel))
                    seen.add(fp)
        pops = []
        for group in groups.values():
            size = local_workers.chunk(len(group), self.split, self.spec.population)
            if len(group) == 1:
                log.info("run %s trains alone: no other run of the study differs from it only in "
                         "member keys", group[0][1].name)
                units += [self._alone(*group[0])] if self.claims is not None else []
            for i in range(0, len(group) if len(group) > 1 else 0, size):
                pops.append(self._population(group[i:i + size]))
        for unit in pops + units:
            self._run(unit, wait=False)

    def _population(self, chunk: list[tuple]) -> _Unit:
        names = sorted({job[0][0] for job in chunk})
        what = f"population of {len(chunk)} ({', '.join(names)})"
        epochs, rels = chunk[0][1].train.epochs, [rel for *_, rel in chunk]

        def fit() -> list[_Trained]:
            runs = train_population([c for _, c, _ in chunk], [self.dir / r for r in rels],
                                    db=self.db, progress=False,
                                    on_epoch=lambda e: self.progress.start(f"{what}: epoch {e}/{epochs}"))
            return [_trained(run, rel) for run, rel in zip(runs, rels)]
        return _Unit(what, chunk, fit, rels, rels, rels)

    def _alone(self, name: tuple, cfg: Any, rel: str) -> _Unit:
        what = f"{name[0]} seed {name[1]}" + ("" if name[2] is None else f" fold {name[2]}")
        return _Unit(what, [(name, cfg, rel)],
                     lambda: [_trained(train(cfg, out=self.dir / rel, db=self.db, progress=False), rel)],
                     [rel], [rel], [rel])

    def _ensemble(self, v: Variant, name: tuple, extra: dict, rel: str) -> _Unit:
        """A deep ensemble per seed; member seeds do not overlap across seeds."""
        from regulab.runs.ensemble import train_ensemble
        cfg = self.spec.config(v, name[1] * v.members, extra)

        def fit() -> list[_Trained]:
            ens = train_ensemble(cfg, v.members, out=self.dir / rel, db=self.db, progress=False)
            first = ens.members[0]
            return [_trained(first, f"{rel}/member-0", {**first.results, **ens.results})]
        unit = self._alone(name, cfg, rel)
        return _Unit(unit.what, unit.jobs, fit, [rel], [f"{rel}/member-{k}" for k in range(v.members)],
                     [f"{rel}/member-0"])

    def _claimed(self, key: str, what: str, fit: Callable[[], Any], wait: bool,
                 takeover: Callable[[], None] = lambda: None) -> tuple[bool, Any, bool]:
        """``shared.claimed`` in a shared study; else ``fit()`` now."""
        if self.claims is None:
            return True, fit(), True
        return shared.claimed(self.claims, key, what, fit, wait=wait, takeover=takeover,
                              waiting=lambda w: self.progress.start(f"waiting for {what} ({w})"))

    def _run(self, unit: _Unit, wait: bool) -> None:
        """Train ``unit`` into ``trained`` -- in a shared study under its claim, or take what
        another worker trained; not ``wait``: left in ``pending`` while a live worker holds it."""
        here: list[_Trained] = []

        def fit() -> list[dict[str, Any]]:
            self.progress.start(unit.what)
            here.extend(unit.fit())
            return [{"results": t.results, "history": t.history} for t in here]
        done, outcome, _ = self._claimed(unit.key, unit.what, fit, wait, lambda: shared.clean(
            self.dir, unit.roots, unit.run_dirs, RunStore(self.db)))
        for name, *_ in unit.jobs:
            self.pending.pop(name, None)
            if not done:
                self.pending[name] = unit
        if done:
            outs = here or [_Trained(o["results"], o["history"], d, cfg.model.factory)
                            for o, d, (_, cfg, _) in zip(outcome, unit.model_dirs, unit.jobs)]
            self.trained.update({name: (cfg, out) for (name, cfg, _), out in zip(unit.jobs, outs)})
            self.progress.done(len(unit.jobs))

    def tuned(self, v: Variant) -> Variant:
        """Train ``v`` at each strength of its ``tune`` (the candidates' runs, populations
        already trained), keep the one with the best mean validation score, score its runs on
        the test split once (``regulab.studies.tune``); its entry goes to ``entries``, and
        the variant at the chosen strength is returned."""
        cands = tune.candidates(v)
        runs = [self.run_variant(c) for c in cands]
        score = aggregate.score_name(runs[0][0]["results"])
        i = tune.choose(runs, score)
        chosen = Variant(v.name, tune.without_test(cands[i]), v.label, v.group, v.x, v.members,
                         v.combine, v.tune)
        self.entries[v.name] = self.scored(chosen, cands[i], runs[i])
        self.entries[v.name]["tuned"] = tune.curve(v.tune, runs, i, score)
        return chosen

    def scored(self, v: Variant, trained: Variant, runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The entry of ``v`` whose runs were trained as ``trained`` without the test split:
        each scored on test now, once (``runs.evaluate.add_test``; in a shared study under its
        claim); the model, config and parameter count kept for the analysis under ``v``'s
        name, the other candidates' dropped."""
        base = self.spec.config(v, self.spec.seeds[0])      # the user's objects, when given
        for r in runs:
            rel = r["run_dir"]
            r["results"].update(self._claimed(
                f"test {rel}", f"test scores of {rel}", wait=True,
                fit=lambda rel=rel: finite_json(add_test(self.dir / rel, model=base.model.factory,
                                                         data=base.data.dataset, db=self.db)))[1])
        for name in [n for n in self.models if n.startswith(f"{v.name}@")]:
            model, config, params = (self.models.pop(name), self.configs.pop(name),
                                     self.params.pop(name))
            if name == trained.name:
                self.models[v.name], self.configs[v.name], self.params[v.name] = model, config, params
        self.configs[v.name] = {**self.configs[v.name], "eval": {**self.configs[v.name]["eval"],
                                                                 "test": True}}
        return aggregate.summarize(v, runs, 0)

    def run_variant(self, v: Variant, where: str = "runs",
                    jobs: list[kinds.Job] | None = None) -> list[dict[str, Any]]:
        """The runs of ``v`` on ``jobs`` (default: all the study's), trained now unless a
        population or an identical run of the study trained them already (in a shared study:
        each free run first, then the others as their workers finish them)."""
        if self.claims is not None:
            self.train_populations([v], where, jobs, pool=False)
        return [self._one(v, job.seed, job.fold, *self._job(v, job, where))
                for job in (self.jobs if jobs is None else jobs)]

    def _one(self, v: Variant, seed: int, fold: int | None, extra: dict, rel: str) -> dict[str, Any]:
        name = (v.name, seed, fold)
        if name not in self.trained:     # not trained in a population (or ahead, when shared)
            cfg = self.spec.config(v, seed, extra) if v.members == 1 else None
            if cfg is not None and (done := self.done.get(_fingerprint(cfg))) is not None:
                record, run, config = done    # trained already: the same keys and seed, the same run
                self._remember(v, run, config)
                self.progress.done()
                return copy.deepcopy(record)    # as it was before anything scored it on test
            self._run(self.pending.get(name) or (self._alone(name, cfg, rel) if cfg is not None
                                                 else self._ensemble(v, name, extra, rel)), wait=True)
        self.count += 1
        cfg, run = self.trained.pop(name)
        config = cfg.to_dict()
        self._remember(v, run, config)
        record = {"seed": seed, "fold": fold, "run_dir": rel, "results": finite_json(run.results),
                  "history": [finite_json(h) for h in run.history]}
        if v.members == 1:
            self.done[_fingerprint(cfg)] = (copy.deepcopy(record), run, config)
        return record

    def _remember(self, v: Variant, run: _Trained, config: dict[str, Any]) -> None:
        """The first run's model, config and parameter count of ``v``, for the analysis."""
        if v.name not in self.models:
            if run.model is None:       # trained by another worker: its saved network
                from regulab.runs.predict import load_model
                run.model = load_model(self.dir / run.model_dir, model=run.factory)
            self.models[v.name], self.configs[v.name] = run.model, config
            self.params[v.name] = _params(run.model)


def _trained(run: Any, model_dir: str, results: dict[str, Any] | None = None) -> _Trained:
    """A ``Run`` trained here as ``_one`` records it (``results``: instead of its own)."""
    return _Trained(finite_json(run.results if results is None else results),
                    [finite_json(h) for h in run.history], model_dir, run.config.model.factory, run.model)


def _fingerprint(cfg) -> str:
    """What makes two runs of a study the same run: their configs without the name."""
    return json.dumps({**cfg.to_dict(), "name": None}, sort_keys=True, default=repr)
