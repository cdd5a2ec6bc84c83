"""``weights``: what a penalty does to the weights -- histograms, the fraction of (near) zero
weights and the L1 and L2 norms of each Linear/Conv weight of each variant's first run. L1
drives weights to zero, L2 shrinks all of them (the notes' penalties,
``regulab.regularize.penalties``).

``[weights] layers`` names the layers measured (default: all; checked on the first model
before anything trains) and ``bins`` the histogram bins (40). ``analysis``:
``{"hist": [{"variant", "layer", "edges", "counts", "sparsity", "l1", "l2"}, ...]}``
(``probes.weight_histograms``); the report draws them per variant and layer.
"""

from __future__ import annotations

from regulab.studies.kinds.base import LayerProbe
from regulab.studies.probes import weight_histograms

__all__ = ["Weights"]


class Weights(LayerProbe):
    name = "weights"
    what = ("Weights of each variant's first run, log counts; titles: sparsity (fraction of "
            "zeros), L1 and L2 norms")
    norms = True

    def histograms(self, model, config, bins, layers):
        return weight_histograms(model, bins=bins, layers=layers)

    def check_layers(self, prepared, layers):
        weight_histograms(prepared.pipeline, layers=layers)
