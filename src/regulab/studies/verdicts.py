"""A study's verdict per variant: bias and variance graded (``regulab.diagnose.assess``), what a
variant changes against the baseline, and advice that follows the numbers.

For each variant, from its mean train and validation scores::

    bias = reference - train        variance = gap = train - validation
    gap_closed = (gap_base - gap) / gap_base      train_cost = train_base - train

``verdict`` is the diagnosis with both grades, e.g. "overfit (high variance, low bias)";
``advice`` is one sentence built from the numbers, by the first rule that applies:

- the baseline: its gap and how much of it the best single technique closes (underfit: its
  train score, and more capacity or longer training);
- a variant whose bias is high and which costs train fit (train_cost > ``COST``): too strong,
  lower the strength or train longer;
- the best single technique on validation, still overfit: combine it with the technique that
  added most to it on validation when the two were merged (the study's forward step,
  ``studies.search.forward``), else with the next best one alone that changes other config keys;
- the combination, still overfit: the gap that is left needs more data or augmentation;
- any other variant: how much of the gap it closes at what cost, and its change in validation
  score against the baseline.
"""

from __future__ import annotations

import math
from typing import Any

from regulab.diagnose import against, assess

__all__ = ["verdicts", "COST"]

COST = 0.05       # train score a regularizer may give up before "too strong" is said


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def _closes(fit: dict[str, Any], train_name: str) -> str:
    """'closes 62% of the baseline's gap at a cost of 0.08 train accuracy' (or widens, gains)."""
    closed, cost = fit.get("gap_closed"), fit["train_cost"]
    if closed is None:
        out = f"gap {fit['variance']:.2f}"
    elif closed >= 0:
        out = f"closes {_pct(closed)} of the baseline's gap"
    else:
        out = f"widens the baseline's gap by {_pct(-closed)}"
    return out + (f" at a cost of {cost:.2f} train {train_name}" if cost >= 0.005
                  else f" and gains {-cost:.2f} train {train_name}" if cost <= -0.005
                  else f" at no cost in train {train_name}")


def _advice(e: dict[str, Any], role: str, best: dict[str, Any] | None,
            partner: dict[str, Any] | None, base_val: float | None, train_name: str) -> str:
    fit = e["fit"]
    train, gap = fit["reference"] - fit["bias"], fit["variance"]
    over, under = fit["variance_grade"] != "low", fit["bias_grade"] != "low"
    if role == "baseline":
        if over:
            out = f"gap {gap:.2f} ({fit['variance_grade']} variance): regularize"
            if best is not None and best["fit"].get("gap_closed") is not None:
                out += (f"; the best technique here, {best['label']}, "
                        f"{_closes(best['fit'], train_name)}")
            return out
        if under:
            return (f"train {train_name} {train:.2f}: more capacity or longer training "
                    "before any regularization")
        return f"train {train_name} {train:.2f}, gap {gap:.2f}: nothing to fix"
    head = _closes(fit, train_name)
    if base_val is not None:
        head += f"; validation {fit['val'] - base_val:+.3f} against the baseline"
    if fit["bias_grade"] == "high" and fit["train_cost"] > COST:
        return f"{head}. Train {train_name} {train:.2f}: too strong, lower the strength or train longer"
    if over and role == "best":
        why = (f"{partner['gain']:+.3f} on validation merged with it" if partner and "gain" in partner
               else "next best on validation")
        tail = f"combine it with {partner['label']} ({why})" if partner else "add data or augmentation"
        return f"{head}. Gap still {gap:.2f} after the best single technique: {tail}"
    if over and role == "combination":
        return f"{head}. Gap still {gap:.2f} after combining: more data or augmentation"
    if under and not over:
        return (f"{head}. Train {train_name} {train:.2f} with a gap of only {gap:.2f}: "
                "room for more capacity, longer training or a weaker setting")
    if not over:
        return f"{head}. Gap {gap:.2f}: nothing left to fix"
    return f"{head}. Gap still {gap:.2f} ({fit['variance_grade']} variance)"


def verdicts(entries: list[dict[str, Any]], baseline: str | None, score: str,
             reference: float = 1.0, combination: str | None = None,
             forward: list[dict[str, Any]] | None = None) -> None:
    """Set each entry's ``fit`` (bias, variance, their grades, the diagnosis, and against the
    baseline ``gap_closed`` and ``train_cost``), ``verdict`` and ``advice``. ``combination``
    names the variant that merges others (it is not a single technique); ``forward`` is the
    forward step's rows (what each technique added to the best one), when there was one."""
    train_name = "R²" if score == "r2" else "accuracy"
    for e in entries:
        t, v = (e["stats"][f"{s}_{score}"]["mean"] for s in ("train", "val"))
        e["fit"] = {**assess(math.nan if t is None else t, math.nan if v is None else v, reference),
                    "val": math.nan if v is None else v, "gap_closed": None, "train_cost": None}
    base = next((e for e in entries if e["name"] == baseline), None)
    for e in entries:
        if base is not None and e is not base:
            e["fit"].update(against(e["fit"], base["fit"]))
    singles = sorted((e for e in entries if e is not base and e["name"] != combination
                      and math.isfinite(e["fit"]["val"])), key=lambda e: -e["fit"]["val"])
    best = singles[0] if singles else None
    keys = set((best or {}).get("overrides") or {})
    partner = next((e for e in singles[1:] if not keys & set(e.get("overrides") or {})), None)
    if forward:     # what adds most to the best one, measured, rather than what is next alone
        gains = [r for r in forward if r.get("partner") and r.get("gain") is not None and r["gain"] > 0]
        top = max(gains, key=lambda r: r["gain"]) if gains else None
        found = next((e for e in entries if top is not None and e["name"] == top["partner"]), None)
        partner = {**found, "gain": top["gain"]} if found is not None else None
    for e in entries:
        f = e["fit"]
        e["verdict"] = f"{f['diagnosis']} ({f['variance_grade']} variance, {f['bias_grade']} bias)"
        if base is None:
            e["advice"] = f"bias {f['bias']:.2f}, gap {f['variance']:.2f}"
            continue
        role = ("baseline" if e is base else "best" if e is best
                else "combination" if e["name"] == combination else "other")
        base_val = base["fit"]["val"] if math.isfinite(base["fit"]["val"]) else None
        e["advice"] = _advice(e, role, best, partner, base_val, train_name)
    for e in entries:      # JSON has no nan
        e["fit"] = {k: (None if isinstance(x, float) and not math.isfinite(x) else x)
                    for k, x in e["fit"].items()}

