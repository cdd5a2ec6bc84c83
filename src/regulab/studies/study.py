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
measurements (``analysis``). The runs themselves are trained by ``studies.runner``; on a
PostgreSQL store by several workers that share the study directory (``studies.shared``).

A study killed (kill -9, Ctrl-C, a machine lost) continues when the same command runs again
with the same ``--out``: each unit of work (a population, a run alone, a deep ensemble, a
chosen run's test scores, the report) is done under its claim in the run store, as workers
sharing a study do theirs (``studies.shared``), so the units done are taken as they were
recorded and the unit the kill interrupted is taken over -- its partial run directories
removed, trained again into the same directories and store rows -- at once when its worker
was a process of this machine that has ended (``runs.claims.gone``). The study ends as the
uninterrupted one would have: the same runs bit for bit, each run once in the store,
completed, the same results.json, and report.html (``tests/test_kill_jobs.py`` kills one at
each moment). A finished study run again prints its
summary and trains nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regulab.engine import threads
from regulab.errors import CheckpointError
from regulab.io import atomic_write, check_out_dir, new_dir
from regulab.nn.user import check_callable
from regulab.runs.claims import Claims
from regulab.runs.prepare import resolve_device
from regulab.runs.store import RunStore
from regulab.studies import aggregate, kinds, search, shared, verdicts
from regulab.studies import workers as local_workers
from regulab.studies.runner import Progress, Runner
from regulab.studies.spec import StudySection, StudySpec, Variant, expanded
from regulab.user_code import portable

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


def run_study(spec: StudySpec, out: str | Path | None = None, db: str | None = None, *,
              quick: bool = False, progress: bool | None = None,
              render: bool = True, workers: int | str | None = None) -> StudyResult:
    """Run ``spec`` (its ``--quick`` version when ``quick``) into a new study directory -- or
    into ``out`` holding the same study, which continues it (killed, interrupted: the units
    done are reused, the others trained again) or, on a PostgreSQL store, joins the workers
    that share it (``regulab.studies.shared``); with ``workers`` (default ``[study] workers``)
    processes on this machine (``regulab.studies.workers``)."""
    if quick:
        spec = spec.for_quick()
    if workers is not None:
        spec = dataclasses.replace(spec, workers=StudySection.check("workers", workers))
    store = RunStore(db)
    across = shared.shares(store.url)       # a store workers on other machines may share
    joins = across or store.sqlite_path is not None     # not an in-memory store: units claimed
    if across:
        shared.require_out(out)     # an argument missing, before the store is asked
    store.check()       # before any work: a store that cannot be written
    kind = kinds.KINDS[spec.kind]
    kind.check_data(spec)      # bad data or layer names fail before the study directory exists
    # processes here (an in-memory store cannot be shared: one); the populations split among
    # them -- one plan for every worker, so recorded in study.json (a study continued with
    # another count is refused), and none on a store shared across machines, whose workers may
    # count other cores
    here = local_workers.count(spec.workers, _device(spec)) if joins else 1
    split = 1 if across else here
    meta = _meta(spec, store.url, split)
    claims = None
    if joins:
        # joined, or continued where a killed worker stopped: a directory of the same study
        study_dir, made, claims = shared.join(new_dir(f"study-{spec.name}", None) if out is None else out,
                                              meta, spec.heartbeat, spec.grace)
    else:       # an in-memory store: nothing to continue
        study_dir = new_dir(f"study-{spec.name}", out)
        made = shared.make_dir(study_dir, {"study.json": json.dumps(meta, indent=1, default=str)})
        if not made:    # made meanwhile by another process
            check_out_dir(study_dir)
    if made:
        store.create_run(spec.name, str(study_dir.resolve()), spec.to_dict(), kind="study")
    helpers: list = []
    try:
        with claims or contextlib.nullcontext(), threads.worker():   # workers here split the cores
            if here > 1:
                helpers = local_workers.start(spec, study_dir, store.url, (quick, render, split), here - 1)
            return _work(spec, kind, study_dir, db, store, progress, claims, quick, render, split)
    finally:
        local_workers.stop(helpers)


def join_local(spec: StudySpec, study_dir: Path, db: str, quick: bool, render: bool, split: int,
               ready: Callable[[], None]) -> None:
    """A helper's share of a study another process on this machine started in ``study_dir``
    (``regulab.studies.workers``): it joins, registers, calls ``ready()``, then walks the plan."""
    study_dir, _, claims = shared.join(study_dir, _meta(spec, db, split), spec.heartbeat, spec.grace)
    with claims, threads.worker():
        ready()
        _work(spec, kinds.KINDS[spec.kind], study_dir, db, RunStore(db), False, claims, quick, render,
              split)


def _meta(spec: StudySpec, db: str, split: int) -> dict[str, Any]:
    """``study.json``: the study, its store and how its populations are split; every worker
    that joins the study must hold the same."""
    return {**spec.to_dict(), "db": db, "split": split}


def _device(spec: StudySpec) -> str:
    """The device type the study's runs train on."""
    return resolve_device(spec.config(spec.variants[0], 0).train.device).type if spec.variants else "cpu"


def _work(spec: StudySpec, kind: kinds.Kind, study_dir: Path, db: str | None, store: RunStore,
          progress: bool | None, claims: Claims | None, quick: bool, render: bool,
          split: int = 1) -> StudyResult:
    """The study's runs, results and report (those of every worker, under the claim "report",
    when the study is shared; populations split for ``split`` workers); the store's study row
    failed on an error."""
    start = time.perf_counter()
    try:
        results = _execute(spec, kind, study_dir, db, progress, claims, split)
        results.update(quick=quick, seconds=round(time.perf_counter() - start, 1))
        write = lambda: _write(results, study_dir, store, spec, render)  # noqa: E731
        if claims is None:
            write()
            return StudyResult(results, study_dir)
        shared.claimed(claims, "report", "results.json and report.html", write, wait=True)
    except BaseException:
        store.set_status(_study_row(store, study_dir, spec), "failed")
        raise
    return StudyResult(json.loads((study_dir / "results.json").read_text()), study_dir)


def _study_row(store: RunStore, study_dir: Path, spec: StudySpec) -> int:
    """The study's row in the store (made again when its maker died before making it)."""
    found = store.find_run(str(study_dir))
    return found if found is not None else \
        store.create_run(spec.name, str(study_dir.resolve()), spec.to_dict(), kind="study")


def _write(results: dict[str, Any], study_dir: Path, store: RunStore, spec: StudySpec,
           render: bool) -> None:
    """``results.json``, the study's store row completed, and ``report.html`` when ``render``."""
    atomic_write(study_dir / "results.json", json.dumps(portable(results), indent=1))
    store.finish(_study_row(store, study_dir, spec), "completed", portable(results))
    if render:
        from regulab.studies.report import render_report
        render_report(results, study_dir / "report.html")


def bar_total(runner: Runner, sources: list[Variant], spec: StudySpec, combined: bool,
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
             progress: bool | None, claims: Claims | None = None, split: int = 1) -> dict:
    device = _device(spec)
    sources = kind.sources(spec)
    bar = Progress(0, progress, spec.name)
    runner = Runner(spec, study_dir, db, bar, claims, split)
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
