"""``grid``: one config key over a list of values, each value a variant placed at that value
on the x axis -- which dropout probability, which L2 strength generalizes best?

``[grid] key`` names the config key and ``values`` its values (a number is also the variant's
x). The report draws train, validation and test score against the key, on a logarithmic axis
when ``log_x`` says so (default: when the positive values span a factor of 100 or more).
``Grid`` is also the base of the other kinds that place their variants on an x axis:
``learning_curve`` (training set size) and ``capacity`` (parameter count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import boolean, optional, string
from regulab.studies.kinds.base import REQUIRED, Kind, Table, non_empty_list, option
from regulab.studies.variant import Variant

__all__ = ["Grid", "GridTable", "value_text"]


def value_text(v: Any) -> str:
    """A value as a variant's name shows it: ``[8, 8]`` -> ``8x8``, ``0.001`` -> ``0.001``."""
    if isinstance(v, list):
        return "x".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass
class GridTable(Table):
    """``[grid]``: the config key and its values."""
    SECTION = "grid"
    key: str = option(REQUIRED, string, "the config key the variants differ in (section.key)")
    values: list = option(REQUIRED, non_empty_list, "its values, one variant each")
    log_x: Any = option(None, optional(boolean), "a logarithmic x axis (default: when the "
                        "positive values span a factor of 100 or more)")


class Grid(Kind):
    name = "grid"
    Table = GridTable
    generates = True
    error = False           # the report's curve: the score (False) or the error 1 - score

    def variants(self, options, given):
        k = options.key
        return [Variant(f"{k.rsplit('.', 1)[-1]}={value_text(v)}", {k: v}, f"{k} = {value_text(v)}",
                        x=(float(v) if isinstance(v, (int, float)) else None))
                for v in options.values]

    def analysis(self, spec, models, configs, source_runs):
        o = self.options(spec.options)
        if o.log_x is not None:
            return {"key": o.key, "log_x": o.log_x}
        values = [v for v in o.values if isinstance(v, (int, float))]
        return {"key": o.key,
                "log_x": bool(values) and min(values) > 0 and max(values) / min(values) >= 100}

    def figures(self, results):
        from regulab.report import Plot, esc, plots  # here: matplotlib loads with a report only
        if not any(v.get("x") is not None for v in results.get("variants") or []):
            return []
        a, score = results.get("analysis") or {}, plots.score_name(results)
        what = f"Error (1 − {score})" if self.error else f"Train, validation and test {score}"
        axis = esc(a.get("x_label") or a.get("key") or "x")
        return [Plot("score-curve", f"{what} against {axis}, mean ± std band over runs"
                     f"{', log scale' if a.get('log_x') else ''}; one line style per group.",
                     lambda: plots.score_curve(results, error=self.error))]
