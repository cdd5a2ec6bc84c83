"""From runs to a study's answer: mean and standard deviation over seeds, ranks on validation,
changes against the baseline, a verdict per variant, and the best combination.

For each variant with runs r = 1..n (seeds, or folds)::

    mean = 1/n sum_r s_r        std = sqrt(1/(n-1) sum_r (s_r - mean)^2)   (0 when n = 1)

for s = train, validation and test score (accuracy, or R^2 for regression), the losses, and the
gap = train score - validation score of each run. Variants are ranked by mean validation score
(the test set never chooses anything). ``delta_test`` is a variant's mean test score minus the
baseline's, with a 95% confidence interval (``against_baseline``: paired t over runs of the
same seed and fold, Welch t otherwise); it is ``significant`` when that interval excludes 0. The
verdict applies ``regulab.diagnose`` to the mean train and validation scores. Each variant also
carries its budget, ``epochs_mean`` (epochs run) and ``best_epoch_mean`` (the epoch kept), and
``confusion`` sums a variant's test confusion matrices over its runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from regulab.diagnose import REMEDIES, diagnose
from regulab.studies import intervals
from regulab.studies.spec import Variant

__all__ = ["summarize", "rank", "against_baseline", "combination_candidates", "confusion", "machine_info",
           "cpu_name", "score_name"]


def score_name(results: dict[str, Any]) -> str:
    """"acc" for classification runs, "r2" for regression."""
    return "r2" if "val_r2" in results else "acc"


def _stat(values: list[float | None]) -> dict[str, float | None]:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0}


def summarize(variant: Variant, runs: list[dict[str, Any]], params: int) -> dict[str, Any]:
    """One variant's entry in a study's results (the schema in ``study.study``)."""
    score = score_name(runs[0]["results"])
    stats = {f"{split}_{m}": _stat([r["results"].get(f"{split}_{m}") for r in runs])
             for split in ("train", "val", "test") for m in (score, "loss")}
    stats["gap"] = _stat([None if r["results"].get(f"train_{score}") is None
                          or r["results"].get(f"val_{score}") is None
                          else r["results"][f"train_{score}"] - r["results"][f"val_{score}"]
                          for r in runs])
    train, val = stats[f"train_{score}"]["mean"], stats[f"val_{score}"]["mean"]
    verdict = diagnose(math.nan if train is None else train, math.nan if val is None else val)
    return {"name": variant.name, "label": variant.label, "overrides": variant.overrides,
            "group": variant.group, "x": variant.x, "members": variant.members, "params": params,
            "epochs_mean": _stat([r["results"].get("epochs_run") for r in runs])["mean"],
            "best_epoch_mean": _stat([r["results"].get("best_epoch") for r in runs])["mean"],
            "rank": None, "stats": stats, "delta_test": None, "delta_val": None,
            "delta_test_ci95": None, "delta_val_ci95": None, "ci_method": None, "ci_n": None,
            "ci_seeds_to_halve": None, "significant": False, "verdict": verdict,
            "advice": REMEDIES[verdict], "runs": runs}


def _mean(entry: dict[str, Any], key: str) -> float:
    m = entry["stats"][key]["mean"]
    return -math.inf if m is None else m


def rank(entries: list[dict[str, Any]], score: str) -> None:
    """Rank 1 = the best mean validation score (ties keep the study's order)."""
    order = sorted(range(len(entries)), key=lambda i: -_mean(entries[i], f"val_{score}"))
    for r, i in enumerate(order, start=1):
        entries[i]["rank"] = r


def _by_run(e: dict[str, Any], key: str, paired: bool) -> dict[Any, Any]:
    """A variant's ``key`` score per run, keyed by (seed, fold) (by position when unpaired)."""
    return {(r.get("seed"), r.get("fold")) if paired else i: r["results"].get(key)
            for i, r in enumerate(e["runs"])}


def against_baseline(entries: list[dict[str, Any]], baseline: str | None, score: str) -> None:
    """``delta_test`` and ``delta_val`` (mean score minus the baseline's), their 95% intervals
    ``delta_test_ci95`` and ``delta_val_ci95`` (``regulab.studies.intervals``: paired t over runs
    of the same (seed, fold), or Welch t when a variant's runs are not the baseline's seeds; which
    one in ``ci_method``, the pairs or runs used in ``ci_n``, and ``ci_seeds_to_halve``: the
    seeds that would halve the test interval) and ``significant``: the test interval excludes
    0, as the issue defines the star. The ranking and the combination still look only at
    validation; the star is a statement about the test split, made once."""
    base = next((e for e in entries if e["name"] == baseline), None)
    if base is None:
        return
    b_test, b_val = base["stats"][f"test_{score}"], base["stats"][f"val_{score}"]
    for e in entries:
        t, v = e["stats"][f"test_{score}"], e["stats"][f"val_{score}"]
        if t["mean"] is not None and b_test["mean"] is not None:
            e["delta_test"] = t["mean"] - b_test["mean"]
        if v["mean"] is not None and b_val["mean"] is not None:
            e["delta_val"] = v["mean"] - b_val["mean"]
        if e is base:
            continue
        # runs pair when they have the same seeds and folds and the same seeding: a deep
        # ensemble's members are seeded seed * members, so its runs share no initial weights
        keys, b_keys = ([(r.get("seed"), r.get("fold")) for r in x["runs"]] for x in (e, base))
        paired = (e.get("members", 1) == base.get("members", 1) and sorted(map(str, keys))
                  == sorted(map(str, b_keys)) and len(set(keys)) == len(keys))
        for split in ("test", "val"):
            ci = intervals.interval(_by_run(e, f"{split}_{score}", paired),
                                    _by_run(base, f"{split}_{score}", paired), paired)
            e[f"delta_{split}_ci95"] = ci["ci95"]
            if split == "test":
                e.update(ci_method=ci["method"], ci_n=ci["n"], ci_seeds_to_halve=ci["halve"])
        lo_hi = e["delta_test_ci95"]
        e["significant"] = lo_hi is not None and (lo_hi[0] > 0 or lo_hi[1] < 0)


def combination_candidates(entries: list[dict[str, Any]], variants: list[Variant],
                           baseline: str | None, score: str) -> list[Variant]:
    """What the best combination starts from and may add (``studies.search.forward``): the
    variants that may be merged (``combine`` true, one network, not the baseline), best on
    validation first. The first must beat the baseline by more than the baseline's validation
    standard deviation (else there is nothing to build on: []); the others need not beat it
    alone -- a technique that does nothing alone can help the best one (label smoothing, with
    augmentation, on MNIST-1D: BENCHMARKS.md) -- but none shares a config key with the first
    (dropout 0.1 is not added to dropout 0.5)."""
    by_name = {v.name: v for v in variants}
    base = next((e for e in entries if e["name"] == baseline), None)
    if base is None:
        return []
    found = [(e, by_name[e["name"]]) for e in sorted(entries, key=lambda e: -_mean(e, f"val_{score}"))
             if e["name"] in by_name and e["name"] != baseline]
    found = [(e, v) for e, v in found if v.combine and v.members == 1 and v.overrides]
    bar = _mean(base, f"val_{score}") + (base["stats"][f"val_{score}"]["std"] or 0.0)
    if not found or _mean(found[0][0], f"val_{score}") <= bar:
        return []
    first = found[0][1]
    return [first] + [v for _, v in found[1:] if not set(first.overrides) & set(v.overrides)]


def confusion(entries: list[dict[str, Any]], study_dir: str | Path, name: str) -> dict[str, Any] | None:
    """The test confusion matrix of variant ``name`` summed over its runs (rows: true class,
    columns: predicted; ``regulab.metrics.confusion_matrix``), read from each run's
    ``evaluation.json``: ``{"variant", "classes", "matrix", "runs"}``. None when there is none
    to sum: no such variant, a regression, no test split, a run's file missing or unreadable,
    or runs whose classes differ."""
    entry = next((e for e in entries if e["name"] == name), None)
    if entry is None or not entry.get("runs"):
        return None
    total: np.ndarray | None = None
    classes: list[str] | None = None
    for r in entry["runs"]:
        try:
            test = json.loads((Path(study_dir) / r["run_dir"] / "evaluation.json").read_text())["test"]
            matrix = np.asarray(test["confusion_matrix"], dtype=np.int64)
            names = [str(c) for c in test["classes"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if matrix.shape != (len(names), len(names)) or (classes is not None and names != classes):
            return None
        total, classes = (matrix if total is None else total + matrix), names
    return {"variant": name, "classes": classes, "matrix": total.tolist(), "runs": len(entry["runs"])}


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """What the report says about where the study ran."""
    import torch

    from regulab.version import __version__
    if device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name()})"
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "device": device,
            "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "regulab": __version__, "platform": platform.platform()}
