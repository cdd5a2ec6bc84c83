"""``capacity``: one model-size key (``model.hidden``) over a list of values, each variant
placed at its parameter count -- the classic U of test error against capacity, and with label
noise and no early stopping the second descent past the interpolation threshold (Belkin et
al., 2019, "Reconciling modern machine-learning practice and the classical bias-variance
trade-off", PNAS; Nakkiran et al., 2019, "Deep double descent").

``[capacity]`` is a grid's table (``key``, ``values``; ``log_x`` default true). The x axis is
each variant's parameter count (of its first run's model); the report draws the error
``1 - score`` against it, with the base config's ``data.label_noise`` as a dotted line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulab.checks import boolean
from regulab.studies.kinds.base import option
from regulab.studies.kinds.grid import Grid, GridTable

__all__ = ["Capacity"]


@dataclass
class CapacityTable(GridTable):
    """``[capacity]``: the model-size key and its values."""
    SECTION = "capacity"
    log_x: Any = option(True, boolean, "a logarithmic x axis")


class Capacity(Grid):
    name = "capacity"
    Table = CapacityTable
    error = True

    def x(self, entry):
        return float(entry["params"])

    def analysis(self, spec, models, configs, source_runs):
        o = self.options(spec.options)
        label_noise = spec.config(spec.variants[0], spec.seeds[0]).data.label_noise
        return {"key": o.key, "x_label": "parameters", "log_x": o.log_x, "label_noise": label_noise}
