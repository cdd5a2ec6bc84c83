"""Tuned strengths: a variant's technique tried at several strengths, the best on validation kept.

A variant with ``tune = { "regularization.l2" = [1e-5, 1e-4, 1e-3, 1e-2] }`` (``Tune``) is
trained once per strength and seed, as candidate variants ``l2@1e-05``, ``l2@0.0001``, ...
(``candidates``), populations where their keys allow. The chosen strength is the one with the
best mean validation score over the seeds (``choose``); ties go to the weaker end of the list
as written. Nested honestly: the candidates train with ``eval.test = false``, and only the
chosen candidate's runs are scored on the test split, once, after the choice
(``runs.evaluate.add_test``), so the test split never chooses anything. The variant's entry in
``results.json`` is the chosen candidate's runs plus ``tuned`` (``curve``): every strength's
mean and standard deviation of the validation score, its mean train score, the choice, and
``at_edge`` when the choice is the smallest or largest of 3+ numbers tried (widen the grid).

The chosen strength's validation score is the best of several, so it is biased upwards as an
estimate; its test score is not. The ranking of the study's variants is on validation, so it
favours tuned variants over hand-set ones by that bias; the test column does not.
"""

from __future__ import annotations

import math
from typing import Any

from regulab.studies.kinds.grid import value_text
from regulab.studies.variant import Tune, Variant

__all__ = ["candidates", "choose", "curve", "without_test", "NO_TEST"]

NO_TEST = {"eval.test": False}      # what a candidate adds: its test split is not scored


def candidates(v: Variant) -> list[Variant]:
    """One variant per strength of ``v.tune``: ``v``'s overrides with the key at that strength
    and the test split off; named ``<variant>@<value>``, labelled with the variant's label."""
    t: Tune = v.tune
    short = t.key.rsplit(".", 1)[-1]
    return [Variant(f"{v.name}@{value_text(x)}", {**v.overrides, t.key: x, **NO_TEST},
                    f"{v.label}: {short} = {value_text(x)}", v.group, v.x, v.members, False)
            for x in t.values]


def without_test(v: Variant) -> dict[str, Any]:
    """A candidate's (or a search trial's) overrides without ``NO_TEST``: the variant as chosen."""
    return {k: x for k, x in v.overrides.items() if k not in NO_TEST}


def _mean(values: list[float | None]) -> float | None:
    xs = [x for x in values if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def _std(values: list[float | None]) -> float | None:
    xs = [x for x in values if x is not None and math.isfinite(x)]
    if not xs:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0


def _scores(runs: list[dict[str, Any]], key: str) -> list[float | None]:
    return [r["results"].get(key) for r in runs]


def choose(runs: list[list[dict[str, Any]]], score: str) -> int:
    """The index of the candidate whose runs have the best mean validation score
    (``val_<score>``; the first of equals). Only validation is read: candidates' runs hold no
    test score, and a test score present would not change the choice."""
    means = [_mean(_scores(r, f"val_{score}")) for r in runs]
    ranked = [(-m, i) for i, m in enumerate(means) if m is not None]
    return min(ranked)[1] if ranked else 0


def curve(t: Tune, runs: list[list[dict[str, Any]]], chosen: int, score: str) -> dict[str, Any]:
    """``tuned`` of a variant's results entry: the key, each strength's validation mean and
    standard deviation and train mean, the chosen strength and the axis scale."""
    return {"key": t.key, "values": list(t.values), "method": "grid", "log_x": t.log,
            "val_mean": [_mean(_scores(r, f"val_{score}")) for r in runs],
            "val_std": [_std(_scores(r, f"val_{score}")) for r in runs],
            "train_mean": [_mean(_scores(r, f"train_{score}")) for r in runs],
            "epochs_mean": [_mean(_scores(r, "epochs_run")) for r in runs],
            "chosen": t.values[chosen], "chosen_index": chosen,
            # the best strength is the largest or smallest tried: a better one may lie beyond
            "at_edge": len(t.values) > 2 and chosen in (0, len(t.values) - 1)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t.values)}
