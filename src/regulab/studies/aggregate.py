"""From runs to a study's answer: mean and standard deviation over seeds, ranks on validation,
changes against the baseline, a verdict per variant, and the best combination.

For each variant with runs r = 1..n (seeds, or folds)::

    mean = 1/n sum_r s_r        std = sqrt(1/(n-1) sum_r (s_r - mean)^2)   (0 when n = 1)

for s = train, validation and test score (accuracy, or R^2 for regression), the losses, and the
gap = train score - validation score of each run. Variants are ranked by mean validation score
(the test set never chooses anything). ``delta_test`` is a variant's mean test score minus the
baseline's; it is ``significant`` when its size is larger than both the variant's and the
baseline's standard deviation over seeds (and each has at least 2 runs). The verdict applies
``regulab.diagnose`` to the mean train and validation scores.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from typing import Any

import numpy as np

from regulab.diagnose import REMEDIES, diagnose
from regulab.studies.spec import Variant

__all__ = ["summarize", "rank", "against_baseline", "pick_combination", "machine_info", "cpu_name",
           "score_name"]


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
            "rank": None, "stats": stats, "delta_test": None, "delta_val": None,
            "significant": False, "verdict": verdict, "advice": REMEDIES[verdict], "runs": runs}


def _mean(entry: dict[str, Any], key: str) -> float:
    m = entry["stats"][key]["mean"]
    return -math.inf if m is None else m


def rank(entries: list[dict[str, Any]], score: str) -> None:
    """Rank 1 = the best mean validation score (ties keep the study's order)."""
    order = sorted(range(len(entries)), key=lambda i: -_mean(entries[i], f"val_{score}"))
    for r, i in enumerate(order, start=1):
        entries[i]["rank"] = r


def against_baseline(entries: list[dict[str, Any]], baseline: str | None, score: str) -> None:
    """``delta_test``, ``delta_val`` and ``significant`` of every entry against the baseline."""
    base = next((e for e in entries if e["name"] == baseline), None)
    if base is None:
        return
    b_test, b_val = base["stats"][f"test_{score}"], base["stats"][f"val_{score}"]
    for e in entries:
        t, v = e["stats"][f"test_{score}"], e["stats"][f"val_{score}"]
        if t["mean"] is not None and b_test["mean"] is not None:
            e["delta_test"] = t["mean"] - b_test["mean"]
            # a spread needs two runs on each side; one seed proves nothing
            e["significant"] = (min(len(e["runs"]), len(base["runs"])) >= 2
                                and abs(e["delta_test"]) > max(t["std"], b_test["std"]))
        if v["mean"] is not None and b_val["mean"] is not None:
            e["delta_val"] = v["mean"] - b_val["mean"]


def pick_combination(entries: list[dict[str, Any]], variants: list[Variant], baseline: str | None,
                     score: str, n: int) -> list[Variant]:
    """Up to ``n`` variants to merge: the best on validation first, each better than the
    baseline by more than the baseline's validation standard deviation, none sharing a config
    key with one already taken (so dropout 0.1 and 0.5 are never both in)."""
    by_name = {v.name: v for v in variants}
    base = next((e for e in entries if e["name"] == baseline), None)
    if base is None or n < 2:
        return []
    bar = _mean(base, f"val_{score}") + (base["stats"][f"val_{score}"]["std"] or 0.0)
    picked: list[Variant] = []
    keys: set[str] = set()
    for e in sorted(entries, key=lambda e: -_mean(e, f"val_{score}")):
        v = by_name.get(e["name"])
        if v is None or not v.combine or v.members > 1 or not v.overrides or e["name"] == baseline:
            continue
        if _mean(e, f"val_{score}") <= bar or keys & set(v.overrides):
            continue
        picked.append(v)
        keys |= set(v.overrides)
        if len(picked) == n:
            break
    return picked if len(picked) >= 2 else []


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
