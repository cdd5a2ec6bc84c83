"""Probes: per-layer statistics of activations, gradients and weights, as plain JSON values.

What the study kinds ``init``, ``dropout_activations`` and ``weights`` measure
(``regulab.studies.kinds``). Every result holds only floats, ints, strings, lists and dicts;
a statistic that is not finite (an overflowing deep network) is ``None``, so
``json.dumps(result, allow_nan=False)`` always works. Standard deviations are population
ones, ``std(x) = sqrt(mean((x - mean(x))^2))`` (NumPy's ``ddof=0``), pooled over every
example and unit of a layer.

* ``histogram``: ``bins`` equal-width bins over ``range`` (default: the finite values'
  ``[min, max]``); bin ``i`` holds ``edges[i] <= v < edges[i+1]``, the last bin also holds
  ``v = edges[-1]`` (``numpy.histogram``). Non-finite values, and with an explicit ``range``
  values outside it, are not counted.
* ``init_statistics`` -- Glorot & Bengio (2010), "Understanding the difficulty of training
  deep feedforward neural networks", AISTATS: a plain MLP of ``depth`` hidden layers of
  ``width`` units, initialized by ``scheme`` (``regulab.nn.init``), gets a standard-normal
  batch ``X`` ``(n, in_features)`` and labels uniform over 10 classes, and backpropagates the
  mean cross-entropy ``L``. With ``a_l = act_l(z_l)`` the output of hidden layer ``l``
  (``(n, width)``), per layer ``l = 1..depth``:

      act_mean[l] = mean(a_l)        act_std[l] = std(a_l)
      grad_std[l] = std(dL/dW_l)     (W_l = fc<l>.weight, (width, fan_in))
      saturated[l] = fraction of the n * width entries of a_l in the activation's flat region:

      ==============================  ===============================================
      tanh                            |a| > 0.99            (saturated at -1 or +1)
      sigmoid                         a < 0.01 or a > 0.99  (saturated at 0 or 1)
      elu                             a < -0.99             (saturated at -1)
      relu, leaky_relu, gelu          a == 0                ("dead"; ~0 for the last two)
      ==============================  ===============================================

  (``saturated[l]`` is None, like the other statistics, when ``a_l`` holds a non-finite value.)
  The notes' story: ``normal_0.01`` makes ``act_std`` vanish with depth, ``normal_1``
  saturates tanh units, ``glorot_*`` (tanh) and ``he_*`` (ReLU; He et al., 2015, "Delving
  deep into rectifiers") keep it roughly constant across layers.
* ``activation_histograms`` -- Srivastava et al. (2014), "Dropout: a simple way to prevent
  neural networks from overfitting", JMLR 15, Fig. 8: the hidden activations of a trained
  model in eval mode, per ``act<k>`` layer: their histogram, ``mean`` and ``sparsity``, the
  fraction of activations that are zero (``a == 0`` after an ``nn.ReLU``, ``|a| < 1e-6``
  after any other activation). Dropout tends to make ReLU activations sparser.
* ``weight_histograms``: per Linear/Conv weight tensor ``W`` (not biases, not batch norm):
  its histogram, ``sparsity = fraction of |w| < threshold``, ``l1 = sum |w|`` and
  ``l2 = sqrt(sum w^2)`` (Frobenius norm). L1 drives weights to (near) zero, L2 shrinks all
  of them (``regulab.regularize.penalties``).

Layer names are module paths without a leading ``net.`` (a ``Pipeline``'s network), and a
DropConnect/WeightNoise wrapper reports its own name (``fc1``), not ``fc1.layer``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regulab.checks import choice, list_of, number
from regulab.config.sections import ACTIVATIONS, INIT_SCHEMES
from regulab.errors import invalid
from regulab.nn.init import init_weights
from regulab.nn.layers import DropConnect, StochasticLayer, WeightNoise
from regulab.nn.models import MLP, materialize
from regulab.regularize.penalties import select_by_name

__all__ = ["histogram", "init_statistics", "activation_histograms", "weight_histograms"]

N_CLASSES = 10                                  # output width of the init network
_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)
_ACT_NAME = re.compile(r"act\d+")               # MLP/CNN dense activation layers: act1, act2, ...
_SATURATED = {                                  # activation -> mask of its flat region
    "tanh": lambda a: a.abs() > 0.99,
    "sigmoid": lambda a: (a < 0.01) | (a > 0.99),
    "elu": lambda a: a < -0.99,
    "relu": lambda a: a == 0,
    "leaky_relu": lambda a: a == 0,
    "gelu": lambda a: a == 0,
}


def _float(x: Tensor | float) -> float | None:
    """A plain float, or None when it is not finite (keeps results strict JSON)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _range(key: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
          and value[0] < value[1])
    if not ok:
        raise invalid(key, "a pair (low, high) of finite numbers with low < high", value, kind="argument")
    return float(value[0]), float(value[1])


def histogram(values: Tensor, bins: int = 40, range: tuple[float, float] | None = None) -> dict[str, list]:
    """``{"edges": [bins + 1 floats], "counts": [bins ints]}`` of the finite ``values`` (any shape).

    ``range`` defaults to the finite values' ``[min, max]`` (``[v - 0.5, v + 0.5]`` when they
    are all ``v``, ``[0, 1]`` when there are none). Example::

        >>> histogram(torch.tensor([0.0, 0.5, 1.0]), bins=2)
        {'edges': [0.0, 0.5, 1.0], 'counts': [1, 2]}
    """
    bins = number(ge=1, integer=True)("bins", bins)
    lo_hi = _range("range", range)
    v = values.detach().to("cpu", torch.float64).numpy().ravel()
    counts, edges = np.histogram(v[np.isfinite(v)], bins=bins, range=lo_hi)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def init_statistics(activation: str, scheme: str, *, depth: int = 10, width: int = 256,
                    in_features: int = 256, n: int = 1000, seed: int = 0,
                    hist_layers: Sequence[int] | None = None, bins: int = 40,
                    inputs: Tensor | None = None) -> dict[str, Any]:
    """Per-layer activation and gradient statistics of a deep plain MLP at initialization.

    The network is ``MLP(in_features, [width] * depth, 10, activation=activation)``. One
    ``torch.Generator`` seeded with ``seed`` draws, in this order, ``X ~ N(0, 1)`` of shape
    ``(n, in_features)`` (skipped when ``inputs`` is given; then ``n`` is ``len(inputs)``),
    the labels uniform over 10 classes, and the weights (``init_weights(net, scheme, g)``),
    so every scheme and activation sees the same ``X`` for one seed. The global RNG is not
    used. ``hist_layers``: the 1-based hidden layers whose activations get a histogram
    (default: ``1, depth // 2, depth``; ``[]`` for none). Returns::

        {"activation", "scheme", "act_mean": [depth], "act_std": [depth], "grad_std": [depth],
         "saturated": [depth], "hist": [{"layer": l, "edges": [...], "counts": [...]}, ...]}

    (definitions in the module docstring; a non-finite statistic is None).
    """
    choice(*ACTIVATIONS)("init.activations", activation)
    choice(*INIT_SCHEMES)("init.schemes", scheme)
    depth = number(ge=1, integer=True)("init.depth", depth)
    width = number(ge=1, integer=True)("init.width", width)
    in_features = number(ge=1, integer=True)("init.in_features", in_features)
    seed = number(ge=0, integer=True)("init.seed", seed)
    bins = number(ge=1, integer=True)("init.bins", bins)
    if hist_layers is None:
        hist_layers = [1, max(depth // 2, 1), depth]
    hist_layers = sorted(set(list_of(number(ge=1, le=depth, integer=True))("init.hist_layers", hist_layers)))
    if inputs is None:
        n = number(ge=2, integer=True)("init.n", n)
    elif inputs.dim() < 2 or inputs.shape[0] < 2 or inputs[0].numel() != in_features:
        raise invalid("init.inputs", f"a batch (n >= 2, ...) of samples with {in_features} features each",
                      f"a tensor of shape {tuple(inputs.shape)}", kind="argument")

    g = torch.Generator().manual_seed(seed)
    if inputs is None:
        X = torch.randn(n, in_features, generator=g)                  # (n, in_features)
    else:
        X = inputs.detach().to("cpu", torch.float32)
    y = torch.randint(0, N_CLASSES, (X.shape[0],), generator=g)
    with torch.device("meta"):       # no memory, no draw from the global RNG
        net = MLP(in_features, [width] * depth, N_CLASSES, activation=activation)
    init_weights(materialize(net), scheme, g)

    acts: list[Tensor] = []          # a_l, (n, width) each
    h = X
    for name, module in net.named_children():
        h = module(h)
        if _ACT_NAME.fullmatch(name):
            acts.append(h.detach())
    F.cross_entropy(h, y).backward()

    saturated = _SATURATED[activation]
    grads = [net.get_submodule(f"fc{l}").weight.grad.double() for l in range(1, depth + 1)]
    return {
        "activation": activation,
        "scheme": scheme,
        "act_mean": [_float(a.double().mean()) for a in acts],
        "act_std": [_float(a.double().std(correction=0)) for a in acts],
        "grad_std": [_float(gw.std(correction=0)) for gw in grads],
        "saturated": [float(saturated(a).double().mean()) if bool(a.isfinite().all()) else None
                      for a in acts],
        "hist": [{"layer": l, **histogram(acts[l - 1], bins)} for l in hist_layers],
    }


def _short(path: str) -> str:
    """A module path without a ``Pipeline``'s leading ``net.``."""
    return path[len("net."):] if path.startswith("net.") else path


@contextmanager
def _inference(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode, its stochastic layers not sampling, under ``no_grad``; every
    module's ``training`` (and ``sampling``) flag is restored afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    sampling = [(m, m.sampling) for m in model.modules() if isinstance(m, StochasticLayer)]
    try:
        model.eval()
        for m, _ in sampling:
            m.sampling = False
        with torch.no_grad():
            yield model
    finally:
        for m, training in saved:
            m.training = training
        for m, was in sampling:
            m.sampling = was


def activation_histograms(model: nn.Module, X: Tensor, *, bins: int = 40,
                          layers: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Histogram, ``sparsity`` and ``mean`` of each hidden activation layer's output on ``X``.

    ``model`` (e.g. a ``Pipeline`` taking raw inputs) runs once on the whole batch ``X`` in
    eval mode, without dropout sampling or gradients; its modes are restored afterwards. The
    layers are the modules named ``act<k>`` (the dense hidden layers' activations), in model
    order; ``layers`` keeps only the named ones (``["act1"]``). Returns one
    ``{"layer": "act1", "edges", "counts", "sparsity", "mean"}`` per layer (module docstring).
    """
    bins = number(ge=1, integer=True)("dropout_activations.bins", bins)
    found = [(_short(path), m) for path, m in model.named_modules()
             if _ACT_NAME.fullmatch(path.rsplit(".", 1)[-1])]
    chosen = select_by_name(found, layers, "dropout_activations.layers", what="layers of the model", kind="study key")
    outputs: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            outputs[name] = out.detach()
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in chosen]
    try:
        with _inference(model):
            ref = next(model.parameters(), None)
            model(X if ref is None else X.to(ref.device))
    finally:
        for h in handles:
            h.remove()

    result = []
    for name, m in chosen:
        a = outputs[name].double()
        zero = a == 0 if isinstance(m, nn.ReLU) else a.abs() < 1e-6
        result.append({"layer": name, **histogram(a, bins), "sparsity": float(zero.double().mean()),
                       "mean": _float(a.mean())})
    return result


def weight_histograms(model: nn.Module, *, bins: int = 40, threshold: float = 1e-3,
                      layers: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Histogram, ``sparsity``, ``l1`` and ``l2`` of each Linear/Conv weight of ``model``.

    One ``{"layer": "fc1", "edges", "counts", "sparsity", "l1", "l2"}`` per weight tensor,
    in module order (biases and batch norm are left out): ``sparsity`` is the fraction of
    ``|w| < threshold``, ``l1 = sum |w|``, ``l2 = sqrt(sum w^2)``. ``layers`` keeps only the
    named layers (``["fc1", "out"]``; ``out`` also selects a multi-task ``out.main``).
    """
    bins = number(ge=1, integer=True)("weights.bins", bins)
    threshold = number(ge=0.0)("weights.threshold", threshold)
    wrappers = {id(m.layer): path for path, m in model.named_modules()
                if isinstance(m, (DropConnect, WeightNoise))}
    found = [(_short(wrappers.get(id(m), path)), m.weight) for path, m in model.named_modules()
             if isinstance(m, _WEIGHTED)]
    result = []
    for name, weight in select_by_name(found, layers, "weights.layers", what="layers of the model", kind="study key"):
        w = weight.detach().to("cpu", torch.float64)
        result.append({"layer": name, **histogram(w, bins),
                       "sparsity": float((w.abs() < threshold).double().mean()),
                       "l1": _float(w.abs().sum()), "l2": _float(w.pow(2).sum().sqrt())})
    return result
