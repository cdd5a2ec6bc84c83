"""``init``: how the initialization scheme sets the scale of the activations and gradients
through a deep plain network, before any training (Glorot & Bengio, 2010, "Understanding the
difficulty of training deep feedforward neural networks", AISTATS; He et al., 2015, "Delving
deep into rectifiers").

No variant trains. For each activation x scheme of ``[init]``, ``probes.init_statistics``
measures per layer the activations' mean, std and saturated fraction and the weight gradients'
std of an MLP of ``depth`` hidden layers of ``width`` units on ``n`` standard-normal inputs
(seed: the study's first). The notes' story: ``normal_0.01`` makes the activations vanish with
depth, ``normal_1`` saturates tanh units, ``glorot_*`` (tanh) and ``he_*`` (ReLU) keep their
scale roughly constant. The report draws, per activation, the stds per layer and histograms at
a few layers, and answers with the scheme whose activation std changes least from the first to
the last layer (``|log(std_L / std_1)|`` smallest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from regulab.checks import choice, list_of, number
from regulab.config.sections import ACTIVATIONS, INIT_SCHEMES
from regulab.studies.kinds.base import Kind, Table, option
from regulab.studies.probes import init_statistics

__all__ = ["Init"]


@dataclass
class InitTable(Table):
    """``[init]``: the schemes and activations compared, and the network measured."""
    SECTION = "init"
    schemes: list = option(["normal_0.01", "normal_1", "glorot_normal", "he_normal"],
                           list_of(choice(*INIT_SCHEMES), min_len=1, allowed="a non-empty list"),
                           "init schemes (regulab.nn.init), one line each")
    activations: list = option(["tanh", "relu"], list_of(choice(*ACTIVATIONS), min_len=1,
                                                         allowed="a non-empty list"),
                               "activations, one figure each")
    depth: int = option(10, number(ge=1, integer=True), "hidden layers")
    width: int = option(256, number(ge=1, integer=True), "units per hidden layer (and inputs)")
    n: int = option(1000, number(ge=2, integer=True), "examples in the batch")
    bins: int = option(40, number(ge=1, integer=True), "bins of each histogram")


class Init(Kind):
    name = "init"
    Table = InitTable
    generates = True

    def variants(self, options, given):
        return []

    def check_data(self, spec):
        """Nothing to load: the network's inputs are drawn."""

    def analysis(self, spec, models, configs, source_runs):
        o = self.options(spec.options)
        curves = [init_statistics(a, s, depth=o.depth, width=o.width, in_features=o.width,
                                  n=o.n, bins=o.bins, seed=spec.seeds[0])
                  for a in o.activations for s in o.schemes]
        return {"depth": o.depth, "width": o.width, "curves": curves}

    def figures(self, results):
        from regulab.report import MISSING, Plot, esc, plots  # matplotlib with a report only
        a, out = results.get("analysis") or {}, []
        for i, act in enumerate(plots.init_activations(results)):
            e = esc(act)
            out.append(Plot(f"init-stats-{i}", f"{e}: standard deviation of the activations and "
                            f"of the gradients per layer at initialization (log scale), one line "
                            f"per scheme; depth {esc(a.get('depth', MISSING))}, width "
                            f"{esc(a.get('width', MISSING))}.",
                            lambda act=act: plots.init_statistics(results, act)))
            if any(c.get("hist") for c in a.get("curves") or [] if str(c.get("activation")) == act):
                out.append(Plot(f"init-hist-{i}", f"{e}: histograms of the activations per "
                                "scheme (rows) at a few layers (columns).",
                                lambda act=act: plots.init_histograms(results, act)))
        return out

    def answer(self, results):
        """Per activation, the scheme whose activation std changes least from the first to
        the last layer; None (the report's own sentence) when nothing was measured."""
        from regulab.report import MISSING, esc, plots
        curves = (results.get("analysis") or {}).get("curves") or []
        if not curves:
            return None
        picks = []
        for act in plots.init_activations(results):
            best, drift = None, math.inf
            for c in curves:
                s = [x for x in c.get("act_std") or [] if isinstance(x, (int, float))]
                if str(c.get("activation")) == act and len(s) > 1 and s[0] > 0 and s[-1] > 0:
                    if abs(math.log(s[-1] / s[0])) < drift:
                        best, drift = c.get("scheme"), abs(math.log(s[-1] / s[0]))
            best = esc(best if best is not None else MISSING)
            picks.append(f"{esc(act)}: <strong>{best}</strong>")
        return ("Initialization scheme that keeps the activations' scale steadiest through the "
                "layers (last / first layer std closest to 1): " + "; ".join(picks) + ".")
