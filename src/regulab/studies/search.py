"""The best combination by search: Optuna over the strengths of the techniques that helped.

``[study] combine = N`` picks up to N variants that beat the baseline on validation
(``aggregate.pick_combination``); ``search = T`` then tunes their strengths together: each
tuned part's key becomes one dimension -- a range from its smallest to its largest tried
strength (logarithmic when its grid was), or its values as categories when they are not
numbers -- and the other keys stay as chosen. Optuna's TPE sampler (seeded, so a study repeats)
proposes T trials; the first is the parts merged at their strengths as chosen alone, so the
search can only improve on the merge. Trials are asked a batch at a time and trained as
populations where their keys allow, each over all the study's seeds, scored by the mean
validation score, with the test split off. The best trial's runs are then scored on the test
split, once, and become the study's ``combination`` variant; every trial is reported in
``results.json``'s ``search``. The test split never chooses anything.
"""

from __future__ import annotations

import math
from typing import Any

from regulab.studies import tune
from regulab.studies.variant import Variant

__all__ = ["dimensions", "combination", "BATCH"]

BATCH = 4           # trials asked at once, trained together


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


def _initial(merged: Variant, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The first trial: each key at its strength as chosen alone (categories by index)."""
    return {k: d["choices"].index(merged.overrides[k]) if "choices" in d else merged.overrides[k]
            for k, d in space.items()}


def combination(runner: Any, merged: Variant, parts: list[Variant], trials: int,
                score: str) -> tuple[Variant, dict[str, Any]]:
    """Search the strengths of ``merged`` (the ``parts`` merged as chosen alone) with
    ``trials`` Optuna trials on validation; the best trial's runs are scored on test and its
    entry put in ``runner.entries`` under ``merged.name``. Returns the variant at the best
    strengths and ``results.json``'s ``search``."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = dimensions(parts)
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=min(8, max(1, trials // 2)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(_initial(merged, space))
    rows: list[dict[str, Any]] = []
    found: dict[int, tuple[Variant, list[dict[str, Any]]]] = {}
    n = trials if space else 1          # nothing tuned: the merge itself is the one trial
    while len(rows) < n:
        asked = [study.ask() for _ in range(min(BATCH, n - len(rows)))]
        batch = []
        for t in asked:
            params = {k: _suggest(t, k, d) for k, d in space.items()}
            v = Variant(f"{merged.name}@t{t.number}", {**merged.overrides, **params, **tune.NO_TEST},
                        f"{merged.label} (trial {t.number})", combine=False)
            batch.append((t, params, v))
        runner.train_populations([v for _, _, v in batch])
        for t, params, v in batch:
            runs = runner.run_variant(v)
            vals = [r["results"].get(f"val_{score}") for r in runs]
            vals = [x for x in vals if x is not None and math.isfinite(x)]
            value = sum(vals) / len(vals) if vals else None
            study.tell(t, value if value is not None else float("nan"),
                       state=None if value is not None else optuna.trial.TrialState.FAIL)
            found[t.number] = (v, runs)
            rows.append({"number": t.number, "params": params, "value": value, "seeds": len(runs)})
    done = [r for r in rows if r["value"] is not None]
    best = max(done, key=lambda r: (r["value"], -r["number"])) if done else rows[0]
    v, runs = found[best["number"]]
    chosen = Variant(merged.name, {k: x for k, x in v.overrides.items() if k not in tune.NO_TEST},
                     merged.label + ("" if not space else f" (searched: best of {len(rows)} trials)"),
                     combine=False)
    runner.entries[merged.name] = runner.scored(chosen, v, runs)
    return chosen, {"method": "optuna-tpe", "metric": f"val_{score}", "keys": list(space),
                    "trials": rows, "best": best, "space": space}
