"""``run_study(spec)``: train every variant over every seed, aggregate, write the report.

A study directory (``--out DIR``, default ``runs/study-<name>-<timestamp>``)::

    study.json        the study as run (base config, variants, seeds, kind options)
    runs/<variant>/seed-<s>[-fold-<f>]/   one ordinary run directory per run
    source/seed-<s>/  a transfer study's source runs
    results.json      per-variant aggregates, every run's results and history, the analysis
    report.html       the report (``regulab report DIR`` renders it again from the run store)

Every run goes to the run store as usual, and the study itself gets a row of kind "study"
whose results are ``results.json``. Each run's test split is evaluated once, at its end;
variants are ranked on validation only (``studies.aggregate``); each change against the
baseline carries its 95% interval (``studies.intervals``: ``delta_test_ci95``, ``delta_val_ci95``,
``ci_method``, ``ci_n``, ``ci_seeds_to_halve``) and each variant its verdict (``studies.verdicts``:
``fit``, ``verdict``, ``advice``), its epochs (``epochs_mean``, ``best_epoch_mean``) and, when
tuned, its curve over the strengths (``tuned``, ``studies.tune``); the study's
``search`` holds the combination's Optuna trials (``studies.search``), ``confusion`` the best
variant's test confusion matrix summed over its runs, ``budget`` how runs were given epochs and
``runs_trained`` every run trained (candidates and trials included); the study's kind
(``studies.kinds``) says which runs a variant has, checks the data first, and adds its
measurements (``analysis``).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regulab.engine.population.eligibility import ineligible, population_key
from regulab.errors import CheckpointError
from regulab.io import atomic_write, finite_json, new_dir
from regulab.nn.user import check_callable
from regulab.runs.population import train_population
from regulab.runs.prepare import resolve_device
from regulab.runs.run import train
from regulab.runs.store import RunStore
from regulab.runs.evaluate import add_test
from regulab.studies import aggregate, kinds, search, tune, verdicts
from regulab.studies.spec import StudySection, StudySpec, Variant, expanded
from regulab.user_code import portable

log = logging.getLogger("regulab")

__all__ = ["StudyResult", "run_study", "study", "load_results"]


@dataclass
class StudyResult:
    """What a finished study returns: its results (the ``results.json`` dict) and where it lives."""
    results: dict[str, Any]
    study_dir: Path

    @property
    def report(self) -> Path:
        return self.study_dir / "report.html"

    def variant(self, name: str) -> dict[str, Any]:
        return next(v for v in self.results["variants"] if v["name"] == name)


class _Progress:
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


class _Runner:
    """Trains the runs of one study into its directory and remembers what analysis needs."""

    def __init__(self, spec: StudySpec, study_dir: Path, db: str | None, progress: _Progress):
        self.spec, self.dir, self.db, self.progress = spec, study_dir, db, progress
        self.jobs = kinds.KINDS[spec.kind].jobs(spec)      # the runs of each variant
        self.models: dict[str, Any] = {}        # variant -> first run's model (for the analysis)
        self.configs: dict[str, Any] = {}       # variant -> first run's resolved config
        self.params: dict[str, int] = {}
        self.sources: dict[int, Path] = {}      # transfer: seed -> source run directory
        self.trained: dict[tuple, tuple[Any, Any]] = {}   # (variant, seed, fold) -> (config, Run)
        self.entries: dict[str, dict[str, Any]] = {}    # variant -> its entry, chosen on validation
        self.count = 0                          # runs trained (candidates and trials too)
        self.done: dict[str, tuple] = {}        # config fingerprint -> (run, model, config)

    def _job(self, v: Variant, job: kinds.Job, where: str) -> tuple[dict, str]:
        """(config overrides beyond the variant's, run directory relative to the study's)."""
        extra: dict[str, Any] = dict(job.overrides)
        if "transfer.source" in v.overrides and job.seed in self.sources:
            # a transfer study: the source run of the same seed (elsewhere: the run the variant names)
            extra["transfer.source"] = str(self.sources[job.seed].resolve())
        rel = "/".join(p for p in (where, v.name) if p) + f"/seed-{job.seed}{job.suffix}"
        return extra, rel

    def train_populations(self, variants: list[Variant], where: str = "runs",
                          jobs: list[kinds.Job] | None = None) -> None:
        """Train the runs of ``variants`` (on ``jobs``, default all the study's) that differ only
        in population member keys (seeds, regularization strengths) as populations of up to
        ``[study] population`` members; ``run_variant`` then takes their results instead of
        training them again."""
        if self.spec.population < 2:
            return
        groups: dict[str, list[tuple]] = {}
        for v in variants:
            if v.members > 1 or "transfer.source" in v.overrides:
                continue
            for job in self.jobs if jobs is None else jobs:
                extra, rel = self._job(v, job, where)
                cfg = self.spec.config(v, job.seed, extra)
                if _fingerprint(cfg) in self.done:      # trained already: run_variant reuses it
                    continue
                key = population_key(cfg)
                if key is None:
                    log.info("run %s trains alone: %s", cfg.name, ineligible(cfg))
                else:
                    groups.setdefault(key, []).append(((v.name, job.seed, job.fold), cfg, rel))
        size = self.spec.population
        for jobs in groups.values():
            if len(jobs) == 1:
                log.info("run %s trains alone: no other run of the study differs from it only in "
                         "member keys", jobs[0][1].name)
            for i in range(0, len(jobs) if len(jobs) > 1 else 0, size):
                chunk = jobs[i:i + size]
                names = sorted({job[0][0] for job in chunk})
                what = f"population of {len(chunk)} ({', '.join(names)})"
                epochs = chunk[0][1].train.epochs
                self.progress.start(what)
                runs = train_population([c for _, c, _ in chunk], [self.dir / r for _, _, r in chunk],
                                        db=self.db, progress=False,
                                        on_epoch=lambda e, what=what, epochs=epochs:
                                        self.progress.start(f"{what}: epoch {e}/{epochs}"))
                for (job, cfg, _), run in zip(chunk, runs):
                    self.trained[job] = (cfg, run)
                self.progress.done(len(chunk))

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
        each scored on test now, once (``runs.evaluate.add_test``); the model, config and
        parameter count kept for the analysis under ``v``'s name, the other candidates' dropped."""
        base = self.spec.config(v, self.spec.seeds[0])      # the user's objects, when given
        for r in runs:
            test = add_test(self.dir / r["run_dir"], model=base.model.factory,
                            data=base.data.dataset, db=self.db)
            r["results"].update(finite_json(test))
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
        population or an identical run of the study trained them already."""
        runs = []
        for job in self.jobs if jobs is None else jobs:
            seed, fold = job.seed, job.fold
            extra, rel = self._job(v, job, where)
            pooled = (v.name, seed, fold) in self.trained      # trained in a population
            if not pooled:
                self.progress.start(f"{v.name} seed {seed}" + ("" if fold is None else f" fold {fold}"))
            runs.append(self._one(v, seed, fold, extra, rel))
            if not pooled:
                self.progress.done()
        return runs

    def _one(self, v: Variant, seed: int, fold: int | None, extra: dict, rel: str) -> dict[str, Any]:
        pooled = (v.name, seed, fold) in self.trained
        cfg = self.spec.config(v, seed, extra) if not pooled and v.members == 1 else None
        if cfg is not None and (done := self.done.get(_fingerprint(cfg))) is not None:
            record, model, config = done    # trained already: the same keys and seed, the same run
            self._remember(v, model, config)
            return copy.deepcopy(record)    # as it was before anything scored it on test
        self.count += 1
        if pooled:
            cfg, run = self.trained.pop((v.name, seed, fold))
            results, model, history = run.results, run.model, run.history
        elif v.members > 1:    # a deep ensemble per seed; member seeds do not overlap across seeds
            from regulab.runs.ensemble import train_ensemble
            cfg = self.spec.config(v, seed * v.members, extra)
            ens = train_ensemble(cfg, v.members, out=self.dir / rel, db=self.db, progress=False)
            first = ens.members[0]
            results = {**first.results, **ens.results}
            model, history = first.model, first.history
        else:
            run = train(cfg, out=self.dir / rel, db=self.db, progress=False)
            results, model, history = run.results, run.model, run.history
        config = cfg.to_dict()
        self._remember(v, model, config)
        record = {"seed": seed, "fold": fold, "run_dir": rel, "results": finite_json(results),
                  "history": [finite_json(h) for h in history]}
        if v.members == 1:
            self.done[_fingerprint(cfg)] = (copy.deepcopy(record), model, config)
        return record

    def _remember(self, v: Variant, model: Any, config: dict[str, Any]) -> None:
        """The first run's model, config and parameter count of ``v``, for the analysis."""
        if v.name not in self.models:
            self.models[v.name], self.configs[v.name] = model, config
            self.params[v.name] = _params(model)


def _fingerprint(cfg) -> str:
    """What makes two runs of a study the same run: their configs without the name."""
    return json.dumps({**cfg.to_dict(), "name": None}, sort_keys=True, default=repr)


def run_study(spec: StudySpec, out: str | Path | None = None, db: str | None = None, *,
              quick: bool = False, progress: bool | None = None,
              render: bool = True) -> StudyResult:
    """Run ``spec`` (its ``--quick`` version when ``quick``) into a new study directory."""
    if quick:
        spec = spec.for_quick()
    store = RunStore(db)
    kind = kinds.KINDS[spec.kind]
    kind.check_data(spec)      # bad data or layer names fail before the study directory exists
    study_dir = new_dir(f"study-{spec.name}", out)
    study_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{study_dir.name}.", dir=study_dir.parent))
    atomic_write(tmp / "study.json", json.dumps({**spec.to_dict(), "db": store.url}, indent=1,
                                                 default=str))
    if study_dir.exists():
        study_dir.rmdir()
    tmp.rename(study_dir)
    study_id = store.create_run(spec.name, str(study_dir.resolve()), spec.to_dict(), kind="study")
    start = time.perf_counter()
    try:
        results = _execute(spec, kind, study_dir, db, progress)
    except BaseException:
        store.set_status(study_id, "failed")
        raise
    results.update(quick=quick, seconds=round(time.perf_counter() - start, 1))
    atomic_write(study_dir / "results.json", json.dumps(portable(results), indent=1))
    store.finish(study_id, "completed", portable(results))
    if render:
        from regulab.studies.report import render_report
        render_report(results, study_dir / "report.html")
    return StudyResult(results, study_dir)


def bar_total(runner: _Runner, sources: list[Variant], spec: StudySpec, combined: bool,
              pairs: int | None = None) -> int:
    """The runs of a study: sources, every candidate of every variant, and when ``combined``
    the forward step's ``pairs`` (default: every variant that may combine, but one) and the
    combination's runs (one per seed, or one per seed for each trial of its search)."""
    trials = (spec.search or 1) if combined else 0
    if pairs is None:
        pairs = max(0, sum(v.combine and v.members == 1 for v in spec.variants) - 2) if combined else 0
    forward = len(search.forward_jobs(runner.jobs))
    return len(runner.jobs) * (len(sources) + len(expanded(spec.variants)) + trials) + forward * pairs


def _execute(spec: StudySpec, kind: kinds.Kind, study_dir: Path, db: str | None,
             progress: bool | None) -> dict:
    device = resolve_device(spec.config(spec.variants[0], 0).train.device).type \
        if spec.variants else "cpu"
    sources = kind.sources(spec)
    bar = _Progress(0, progress, spec.name)
    runner = _Runner(spec, study_dir, db, bar)
    bar.set_total(bar_total(runner, sources, spec, bool(spec.combine)))
    try:
        source_runs = []
        for v in sources:
            source_runs = runner.run_variant(v, where="")     # source/seed-<s>
            runner.sources = {r["seed"]: study_dir / r["run_dir"] for r in source_runs}
        runner.train_populations(expanded(spec.variants))
        chosen = [runner.tuned(v) if v.tune is not None else v for v in spec.variants]
        entries = [runner.entries.pop(v.name) if v.name in runner.entries
                   else aggregate.summarize(v, runner.run_variant(v), 0) for v in chosen]
        score = aggregate.score_name(entries[0]["runs"][0]["results"]) if entries else "acc"
        combination, found, steps = None, None, None
        candidates = aggregate.combination_candidates(entries, chosen, spec.baseline, score) \
            if spec.combine >= 2 else []
        parts: list[Variant] = []
        if len(candidates) >= 2:
            bar.set_total(bar_total(runner, sources, spec, True, len(candidates) - 1))
            best_runs = next(e["runs"] for e in entries if e["name"] == candidates[0].name)
            ranked, steps = search.forward(runner, candidates[0], candidates[1:], score, best_runs)
            parts, keys = [candidates[0]], set(candidates[0].overrides)
            for v in ranked:
                if len(parts) < spec.combine and not keys & set(v.overrides):
                    parts.append(v)
                    keys |= set(v.overrides)
            parts = parts if len(parts) >= 2 else []
        if parts:
            label = "combination: " + " + ".join(p.label for p in parts)
            merged = Variant("combination", {k: x for p in parts for k, x in p.overrides.items()},
                             label)
            if spec.search:
                merged, found = search.combination(runner, merged, parts, spec.search, score)
                entries.append(runner.entries.pop(merged.name))
            else:
                runner.train_populations([merged])
                entries.append(aggregate.summarize(merged, runner.run_variant(merged), 0))
            combination = {"name": merged.name, "overrides": merged.overrides,
                           "parts": found["best"]["parts"] if found else [p.name for p in parts]}
        elif spec.combine:        # no combination: its runs leave the bar's total
            bar.set_total(bar_total(runner, sources, spec, False, len(candidates) - 1 if steps else 0))
    finally:
        bar.close()
    for e in entries:
        e["params"] = runner.params.get(e["name"], 0)
        e["x"] = kind.x(e)
    aggregate.rank(entries, score)
    aggregate.against_baseline(entries, spec.baseline, score)
    verdicts.verdicts(entries, spec.baseline, score, spec.reference,
                      combination["name"] if combination else None, steps)
    best = min(entries, key=lambda e: e["rank"])["name"] if entries else None
    return {"name": spec.name, "kind": spec.kind, "description": spec.description,
            "metric": score, "seeds": spec.seeds, "baseline": spec.baseline,
            "machine": aggregate.machine_info(device), "variants": entries, "best": best,
            "combination": combination, "forward": steps, "search": found, "budget": spec.budget,
            "runs_trained": runner.count,
            "confusion": aggregate.confusion(entries, study_dir, best) if best else None,
            "analysis": kind.analysis(spec, runner.models, runner.configs, source_runs),
            "configs": runner.configs}



def study(cfg, variants: dict[str, dict[str, Any]] | None = None, seeds: int | list[int] = 3, *,
          kind: str = "compare", name: str | None = None, baseline: str | None = "baseline",
          options: dict[str, Any] | None = None, combine: int = 0, search: int = 0,
          budget: str = "config", out: str | Path | None = None,
          db: str | None = None, progress: bool | None = None, model: Any = None,
          data: Any = None) -> StudyResult:
    """A study from Python: ``cfg`` is the base, ``variants`` maps names to config overrides
    (a "baseline" with none is added first unless given), e.g.::

        rl.study(cfg, variants={"l2": {"regularization.l2": 1e-3}}, seeds=3)
        rl.study(cfg, variants={"l2": {"tune": {"regularization.l2": [1e-4, 1e-3, 1e-2]}},
                                "drop": {"tune": {"model.dropout": [0.1, 0.3]}}},
                 combine=2, search=8, budget="score")

    ``combine``, ``search`` and ``budget`` are the ``[study]`` keys of the same names
    (``regulab.studies.spec``); a variant's ``tune`` its meta key (``regulab.studies.tune``).

    ``model``: the user's network as a class or a function returning one (each run builds a
    fresh one); ``data``: the user's data (``rl.train``'s ``data``), shared by every run.

    Other kinds take their table as ``options`` (``kind="grid", options={"key": ..., "values": [...]}``).
    """
    from regulab.studies.spec import study_from_dict
    variants = dict(variants or {})
    raw_variants = {} if kinds.KINDS[StudySection.check("kind", kind)].generates \
        else ({"baseline": {}} if baseline == "baseline" and "baseline" not in variants else {})
    raw_variants.update(variants)
    study_table = {"name": name or cfg.name, "kind": kind, "seeds": seeds, "combine": combine,
                   "search": search, "budget": budget}
    if raw_variants and baseline is not None:
        study_table["baseline"] = baseline
    cfg = cfg.with_code(None if model is None else check_callable(model), data)
    raw = {"study": study_table, "base": cfg.to_dict(), "variants": raw_variants}
    if options is not None:
        raw[kind] = options
    return run_study(study_from_dict(raw), out=out, db=db, progress=progress)


def load_results(study_dir: str | Path, db: str | None = None) -> dict[str, Any]:
    """A finished study's results read back from the run store (``study.json`` names the store
    it was written to; ``db`` overrides), each run's history from the store's epoch rows."""
    study_dir = Path(study_dir)
    meta_path = study_dir / "study.json"
    if not meta_path.is_file():
        raise CheckpointError(f"'{study_dir}' is not a study directory (no study.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"'{meta_path}' is corrupted ({e})") from None
    store = RunStore(db or meta.get("db"))
    study_id = store.find_run(str(study_dir))
    row = store.get_run(study_id) if study_id is not None else None
    if row is None or row["results"] is None:
        raise CheckpointError(f"the run store {store.url} holds no finished study for "
                              f"'{study_dir}'; pass --db with the store it was run with")
    results = row["results"]
    for v in results["variants"]:
        for r in v["runs"]:
            run_id = store.find_run(str(study_dir / r["run_dir"]))
            if run_id is not None:
                r["history"] = store.get_run(run_id)["history"]
    return results
