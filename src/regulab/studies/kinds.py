"""What each study kind measures beyond scores: the ``analysis`` part of a study's results.

- ``grid``, ``learning_curve``, ``capacity``: the axis the report plots against (the key,
  logarithmic or not); ``capacity`` places each variant at its parameter count.
- ``kfold``: K; each run is one held-out fold (``data.folds``/``data.fold``).
- ``transfer``: the source runs' classes and validation accuracy.
- ``init``: per-layer activation and gradient statistics of a deep plain network for each
  activation x init scheme (``probes.init_statistics``; Glorot & Bengio, 2010).
- ``dropout_activations``: histograms and sparsity of the hidden activations of each variant's
  first run on the validation split (Srivastava et al., 2014, Fig. 8).
- ``weights``: histograms, sparsity, L1 and L2 norms of each variant's first run's weights.
- ``multitask``: the auxiliary heads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from regulab.studies.spec import StudySpec

__all__ = ["analysis", "INIT_DEFAULTS"]

INIT_DEFAULTS = {"schemes": ["normal_0.01", "normal_1", "glorot_normal", "he_normal"],
                 "activations": ["tanh", "relu"], "depth": 10, "width": 256, "n": 1000, "bins": 40}


def _val_inputs(cfg: dict[str, Any]) -> torch.Tensor:
    """The raw validation inputs of a run's config (what its ``Pipeline`` takes)."""
    from regulab.config.core import config_from_dict
    from regulab.runs.prepare import load_data, split_arrays
    c = config_from_dict(cfg)
    X, _ = split_arrays(c, load_data(c))["val"]
    return torch.as_tensor(np.asarray(X, dtype=np.float32))


def _init(o: dict[str, Any], seed: int) -> dict[str, Any]:
    from regulab.config.sections import ACTIVATIONS, INIT_SCHEMES
    from regulab.errors import ConfigError
    from regulab.studies.probes import init_statistics
    o = {**INIT_DEFAULTS, **o}
    for key, allowed in (("schemes", INIT_SCHEMES), ("activations", ACTIVATIONS)):
        bad = [x for x in o[key] if x not in allowed] if isinstance(o[key], list) else o[key]
        if bad or not o[key]:
            raise ConfigError(f"study key 'init.{key}' must be a list of {', '.join(allowed)}; "
                              f"got {o[key]!r}")
    curves = [init_statistics(a, s, depth=o["depth"], width=o["width"], in_features=o["width"],
                              n=o["n"], bins=o["bins"], seed=seed)
              for a in o["activations"] for s in o["schemes"]]
    return {"depth": o["depth"], "width": o["width"], "curves": curves}


def analysis(spec: StudySpec, models: dict[str, Any], configs: dict[str, dict[str, Any]],
             source_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The kind-specific part of a study's results (see the module docstring); ``models`` and
    ``configs`` hold each variant's first run's model and resolved config."""
    o, kind = spec.options, spec.kind
    if kind == "grid":
        values = [v for v in o["values"] if isinstance(v, (int, float))]
        return {"key": o["key"], "log_x": o.get("log_x", bool(values) and min(values) > 0
                                              and max(values) / min(values) >= 100)}
    if kind == "learning_curve":
        return {"key": "data.train_size", "log_x": o.get("log_x", True)}
    if kind == "capacity":
        label_noise = spec.config(spec.variants[0], spec.seeds[0]).data.label_noise
        return {"key": o["key"], "x_label": "parameters", "log_x": o.get("log_x", True),
                "label_noise": label_noise}
    if kind == "kfold":
        return {"k": o["k"]}
    if kind == "transfer":
        accs = [r["results"].get("val_acc") for r in source_runs]
        accs = [a for a in accs if a is not None]
        return {"x_label": "layers transferred",
                "source": {"classes": o["source_classes"],
                           "val_acc": float(np.mean(accs)) if accs else None}}
    if kind == "multitask":
        heads = {t for c in configs.values() for t in c.get("multitask", {}).get("tasks", [])}
        return {"heads": sorted(heads)}
    if kind == "init":
        return _init(o, spec.seeds[0])
    if kind in ("dropout_activations", "weights"):
        from regulab.studies.probes import activation_histograms, weight_histograms
        hist = []
        layers, bins = o.get("layers"), o.get("bins", 40)
        for name, model in models.items():
            model = model.to("cpu")
            if kind == "weights":
                found = weight_histograms(model, bins=bins, layers=layers)
            else:
                found = activation_histograms(model, _val_inputs(configs[name]), bins=bins,
                                              layers=layers)
            hist += [{"variant": name, **h} for h in found]
        return {"hist": hist}
    return {}

