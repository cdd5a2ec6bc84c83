"""``dropout_activations``: what dropout does to the hidden activations -- their histograms
and sparsity (the fraction of zeros) in each variant's first run, on the validation split, in
eval mode (Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks from
overfitting", JMLR 15, Fig. 8: dropout tends to make ReLU activations sparser).

``[dropout_activations] layers`` names the activation layers measured (``act1``, ...; default:
all; checked on the first model before anything trains) and ``bins`` the histogram bins (40).
``analysis``: ``{"hist": [{"variant", "layer", "edges", "counts", "sparsity", "mean"}, ...]}``
(``probes.activation_histograms``); the report draws them per variant and layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regulab.config.core import config_from_dict
from regulab.runs.prepare import load_data, split_arrays
from regulab.studies.kinds.base import LayerProbe
from regulab.studies.probes import activation_histograms

__all__ = ["DropoutActivations"]


def val_inputs(config: dict[str, Any]) -> torch.Tensor:
    """The raw validation inputs of a run's resolved config (what its ``Pipeline`` takes)."""
    c = config_from_dict(config)
    X, _ = split_arrays(c, load_data(c))["val"]
    return torch.as_tensor(np.asarray(X, dtype=np.float32))


class DropoutActivations(LayerProbe):
    name = "dropout_activations"
    what = ("Hidden activations of each variant's first run on the validation split, log "
            "counts; titles: sparsity (fraction of zeros)")

    def histograms(self, model, config, bins, layers):
        return activation_histograms(model, val_inputs(config), bins=bins, layers=layers)

    def check_layers(self, prepared, layers):
        activation_histograms(prepared.pipeline.net, prepared.splits["val"][0][:2], layers=layers)
