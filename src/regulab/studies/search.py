"""The best combination by search: which techniques to merge (a forward step), then Optuna
over their strengths.

``[study] combine = N`` merges up to N variants. Which: the forward step (``forward``) takes
the best variant on validation (it must beat the baseline by more than the baseline's
standard deviation: ``aggregate.combination_candidates``) and trains it merged with each
other candidate at that one's chosen strength, as populations, on the study's first
``FORWARD_SEEDS`` seeds; the candidates whose pair beats the best variant alone on those
seeds, best pair first, join it (up to N in all, no two sharing a key). A technique that does
not help alone may help the best one -- on MNIST-1D label smoothing alone is no better than
the baseline but adds 2 points to augmentation (BENCHMARKS.md) -- which ranking the
techniques alone would miss. Every pair is in ``results.json``'s ``forward``.
``search = T`` then searches which of the parts to merge and their
strengths together: each part is on or off (``use <variant>``), and each tuned part's key is one
dimension -- a range from its smallest to its largest tried strength (logarithmic when its grid
was), or its values as categories when they are not numbers -- while its other keys stay as
chosen. Optuna's TPE sampler (seeded, so a study repeats) proposes T trials; the first is the
parts merged at their strengths as chosen alone and the second the best part alone, so the
search can only improve, on validation, on the merge and on the best single technique. Trials
are asked a batch at a time and trained as populations where their keys allow, each over all
the study's seeds, scored by the mean validation score, with the test split off; a trial whose
runs the study has trained already (the best part alone is its tuned candidate) takes those
runs (``run_dirs`` says where each trial's runs are). The best
trial's runs are then scored on the test split, once, and become the study's ``combination``
variant; every trial is reported in ``results.json``'s ``search``. The test split never chooses anything.
"""

from __future__ import annotations

import math
from typing import Any

from regulab.studies import tune
from regulab.studies.variant import Variant

__all__ = ["dimensions", "combination", "forward", "forward_jobs", "BATCH", "FORWARD_SEEDS"]

BATCH = 4           # trials asked at once, trained together
FORWARD_SEEDS = 2   # seeds each pair of the forward step trains on (it only chooses the parts)
USE = "use "        # a part's on/off dimension: "use <variant>"


def _numeric(values: tuple) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def dimensions(parts: list[Variant]) -> dict[str, dict[str, Any]]:
    """The search space: for each tuned part, its key -> ``{"low", "high", "log"}`` (numbers,
    ints when every value is one) or ``{"choices"}``."""
    space: dict[str, dict[str, Any]] = {}
    for p in parts:
        t = p.tune
        if t is None:
            continue
        if _numeric(t.values):
            ints = all(isinstance(v, int) for v in t.values)
            space[t.key] = {"low": min(t.values), "high": max(t.values), "log": t.log, "int": ints}
        else:
            space[t.key] = {"choices": list(t.values)}
    return space


def _suggest(trial: Any, key: str, dim: dict[str, Any]) -> Any:
    if "choices" in dim:
        i = trial.suggest_categorical(key, list(range(len(dim["choices"]))))
        return dim["choices"][i]
    if dim["int"]:
        return trial.suggest_int(key, dim["low"], dim["high"], log=dim["log"])
    x = trial.suggest_float(key, dim["low"], dim["high"], log=dim["log"])
    return min(max(float(f"{x:.3g}"), dim["low"]), dim["high"])     # 3 digits: a config value


def _overrides(parts: list[Variant], used: list[str], params: dict[str, Any]) -> dict[str, Any]:
    """A trial's config overrides: the parts it uses, as chosen alone, with its strengths."""
    out: dict[str, Any] = {}
    for p in parts:
        if p.name in used:
            out.update(p.overrides)
            if p.tune is not None and p.tune.key in params:
                out[p.tune.key] = params[p.tune.key]
    return out


def _enqueued(parts: list[Variant], space: dict[str, dict[str, Any]], used: list[str]) -> dict[str, Any]:
    """A trial to try first: the parts in ``used`` (the others off), every key at its strength
    as chosen alone (categories by index)."""
    by_key = {p.tune.key: p.overrides[p.tune.key] for p in parts if p.tune is not None}
    out = {k: d["choices"].index(by_key[k]) if "choices" in d else by_key[k] for k, d in space.items()}
    if len(parts) > 1:
        out.update({USE + p.name: p.name in used for p in parts})
    return out


def _mean_score(runs: list[dict[str, Any]], score: str) -> float | None:
    vals = [r["results"].get(f"val_{score}") for r in runs]
    vals = [x for x in vals if x is not None and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else None


def forward_jobs(jobs: list[Any]) -> list[Any]:
    """The jobs the forward step trains each pair on: those of the first ``FORWARD_SEEDS`` seeds."""
    seeds = sorted({job.seed for job in jobs})[:FORWARD_SEEDS]
    return [job for job in jobs if job.seed in seeds]


def forward(runner: Any, best: Variant, others: list[Variant], score: str,
            best_runs: list[dict[str, Any]]) -> tuple[list[Variant], list[dict[str, Any]]]:
    """The forward step (module docstring): ``best`` merged with each of ``others``, trained
    on the jobs of the study's first ``FORWARD_SEEDS`` seeds (the test split off), scored by
    their mean validation score against ``best`` alone on the same seeds (``best_runs``: its
    runs). Returns the others whose pair beats it, best pair first, and one row per pair
    (``partner``, ``value``, ``gain`` over the best alone, ``seeds``, ``run_dirs``)."""
    jobs = forward_jobs(runner.jobs)
    seeds = {job.seed for job in jobs}
    alone = _mean_score([r for r in best_runs if r["seed"] in seeds], score)
    pairs = [Variant(f"{best.name}+{o.name}", {**best.overrides, **o.overrides, **tune.NO_TEST},
                     f"{best.label} + {o.label}", combine=False) for o in others]
    runner.train_populations(pairs, jobs=jobs)
    rows = []
    for o, v in zip(others, pairs):
        runs = runner.run_variant(v, jobs=jobs)
        value = _mean_score(runs, score)
        gain = None if value is None or alone is None else value - alone
        rows.append({"partner": o.name, "parts": [best.name, o.name], "value": value, "gain": gain,
                     "seeds": len(runs), "run_dirs": [r["run_dir"] for r in runs]})
    rows.sort(key=lambda r: -math.inf if r["value"] is None else -r["value"])   # best pair first
    by_name = {o.name: o for o in others}
    ranked = [by_name[r["partner"]] for r in rows if r["gain"] is not None and r["gain"] > 0]
    return ranked, [{"partner": None, "parts": [best.name], "value": alone, "gain": 0.0,
                     "seeds": len(seeds), "run_dirs": []}] + rows


def combination(runner: Any, merged: Variant, parts: list[Variant], trials: int,
                score: str) -> tuple[Variant, dict[str, Any]]:
    """Search which of the ``parts`` to merge and their strengths with ``trials`` Optuna
    trials on validation (each part on or off, each tuned part's strength in its range); the
    first two trials are every part as chosen alone, merged, and the best part alone, so the
    best trial is at least as good on validation as both. The best trial's runs are scored on
    test and its entry put in ``runner.entries`` under ``merged.name``. Returns the variant of
    the best trial and ``results.json``'s ``search``."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dimensions(parts)
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=min(8, max(1, trials // 2)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    names = [p.name for p in parts]
    study.enqueue_trial(_enqueued(parts, space, names))
    if trials > 1:
        study.enqueue_trial(_enqueued(parts, space, names[:1]))    # the best part alone
    rows: list[dict[str, Any]] = []
    found: dict[int, tuple[Variant, list[dict[str, Any]]]] = {}
    n = trials if space or len(parts) > 1 else 1     # nothing to choose: the merge is the trial
    while len(rows) < n:
        asked = [study.ask() for _ in range(min(BATCH, n - len(rows)))]
        batch = []
        for t in asked:
            used = [p for p in names if len(parts) == 1 or t.suggest_categorical(USE + p, [True, False])]
            used = used or names[:1]                 # none at all: the best part
            keys = {p.tune.key for p in parts if p.name in used and p.tune is not None}
            params = {k: _suggest(t, k, d) for k, d in space.items()}
            params = {k: x for k, x in params.items() if k in keys}
            v = Variant(f"{merged.name}@t{t.number}", {**_overrides(parts, used, params), **tune.NO_TEST},
                        f"{merged.label} (trial {t.number})", combine=False)
            batch.append((t, used, params, v))
        runner.train_populations([v for *_, v in batch])
        for t, used, params, v in batch:
            runs = runner.run_variant(v)
            value = _mean_score(runs, score)
            study.tell(t, value if value is not None else float("nan"),
                       state=None if value is not None else optuna.trial.TrialState.FAIL)
            found[t.number] = (v, runs)
            rows.append({"number": t.number, "parts": used, "params": params, "value": value,
                         "seeds": len(runs), "run_dirs": [r["run_dir"] for r in runs]})
    done = [r for r in rows if r["value"] is not None]
    best = max(done, key=lambda r: (r["value"], -r["number"])) if done else rows[0]
    v, runs = found[best["number"]]
    labels = [p.label for p in parts if p.name in best["parts"]]
    chosen = Variant(merged.name, tune.without_test(v),
                     "combination: " + " + ".join(labels) + f" (searched: best of {len(rows)} trials)",
                     combine=False)
    runner.entries[merged.name] = runner.scored(chosen, v, runs)
    return chosen, {"method": "optuna-tpe", "metric": f"val_{score}", "keys": list(space),
                    "parts": names, "trials": rows, "best": best, "space": space}
