"""``learning_curve``: the notes' "more data" slide -- each model trained on subsets of the
training split of growing size; more data narrows the gap between train and validation score.

``[learning_curve] sizes`` are the training set sizes (``data.train_size``: a count, or a
fraction of the training split) and ``models`` the series, each a table of config overrides
(default: one series, "model", the base config). Every (series, size) pair is a variant in
the series' group at x = size; the report draws the scores against the size on a logarithmic
axis (``log_x``, default true), one line style per series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from regulab.checks import boolean, list_of, train_size
from regulab.errors import invalid
from regulab.studies.kinds.base import REQUIRED, Table, option
from regulab.studies.kinds.grid import Grid, value_text
from regulab.studies.variant import KIND, Variant, flatten

__all__ = ["LearningCurve"]


def series(field: str, value: Any) -> dict[str, dict[str, Any]]:
    """A table: series name -> config overrides (nested or dotted), flattened."""
    if not isinstance(value, Mapping):
        raise invalid(field, "a table: series name -> config overrides", value)
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise invalid(f"{field}.{name}", "a table of config overrides", table, kind=KIND)
    return {str(name): flatten(table, f"{field}.{name}") for name, table in value.items()}


@dataclass
class LearningCurveTable(Table):
    """``[learning_curve]``: the training set sizes and the model series."""
    SECTION = "learning_curve"
    sizes: list = option(REQUIRED, list_of(train_size, min_len=1, allowed="a non-empty list"),
                         "training set sizes: counts, or fractions of the training split")
    models: dict = option({}, series, "series name -> config overrides (default: the base "
                          "config, as series 'model')")
    log_x: Any = option(True, boolean, "a logarithmic x axis")


class LearningCurve(Grid):
    """A grid over ``data.train_size``, once per model series (the score-curve figure is the
    grid's)."""
    name = "learning_curve"
    Table = LearningCurveTable

    def variants(self, options, given):
        return [Variant(f"{group}-n{value_text(n)}", {**over, "data.train_size": n},
                        f"{group}, {value_text(n)} examples", group, float(n))
                for group, over in (options.models or {"model": {}}).items()
                for n in options.sizes]

    def analysis(self, spec, models, configs, source_runs):
        return {"key": "data.train_size", "log_x": self.options(spec.options).log_x}
