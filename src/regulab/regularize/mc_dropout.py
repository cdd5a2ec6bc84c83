"""Dropout as an ensemble: Monte-Carlo averaging, the weight-scaling rule, exact enumeration.

A network with dropout on ``h`` units is an ensemble of ``2^h`` weight-sharing sub-networks,
one per binary mask ``m`` (1 = kept), sub-network ``m`` having probability
``P(m) = (1-p)^{#kept} p^{#dropped}``. The notes average them with the normalized geometric
mean of their class probabilities::

    p_ens(c | x) = prod_m p_m(c | x)^{P(m)} / sum_c' prod_m p_m(c' | x)^{P(m)}
                 = softmax_c( sum_m P(m) log p_m(c | x) )

Theorem (Srivastava et al., 2014, JMLR 15, section 9; Baldi & Sadowski, 2013, NeurIPS):
for a softmax regression with classic dropout on its ``h`` inputs, ``z_m = (m * x) W^T + b``,
the ensemble above equals *exactly* the single model with weights scaled by ``(1 - p)``::

    p_ens(. | x) = softmax((1 - p) x W^T + b)

because ``log p_m(c) = z_m,c - logsumexp(z_m)``, the second term does not depend on ``c``
and cancels in the normalization, and ``sum_m P(m) z_m = (1 - p) x W^T + b`` since
``E[m_j] = 1 - p``. This holds for every ``p`` *with the weights P(m)*; with the uniform
weights ``1/2^h`` of the notes' formula ``E[m_j]`` becomes 1/2, so the uniform geometric
mean is ``softmax(x W^T / 2 + b)``, the ``(1 - p)`` rule only when ``p = 0.5``. With inverted
dropout (sub-models ``(m * x / (1-p)) W^T + b``) the ensemble is the eval-mode model
``softmax(x W^T + b)``. The arithmetic mean of the probabilities is *not* equal to either.
For a network with a nonlinearity after the dropped units the weight-scaling rule is only an
approximation of the ensemble (``tests/test_ensemble.py`` measures the gap).

Three ways to predict with a dropout network:

* ``weight_scaling_predict``: one deterministic eval-mode pass (the cheap "scale" rule);
* ``mc_predict``: the average of ``K`` stochastic passes (Monte-Carlo dropout; Gal &
  Ghahramani, 2016) with the model in eval mode, so batch norm keeps its running statistics;
* ``exact_ensemble`` / ``exact_dropout_ensemble``: enumerate all ``2^h`` masks (h <= 20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regulab.nn.layers import DROPOUT_MODES, StochasticLayer, check_drop_prob

__all__ = ["dropout_modules", "sampling", "mc_predict", "weight_scaling_predict",
           "geometric_mean", "enumerate_masks", "exact_ensemble", "exact_dropout_ensemble",
           "AGGREGATES", "MAX_ENUMERATED_UNITS"]

AGGREGATES = ("mean", "geometric")
MAX_ENUMERATED_UNITS = 20


def _check_aggregate(owner: str, aggregate: str) -> str:
    if aggregate not in AGGREGATES:
        raise ValueError(f"{owner} aggregate must be one of {', '.join(map(repr, AGGREGATES))}; "
                         f"got {aggregate!r}")
    return aggregate


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout family in ``model``: its ``Dropout``, ``DropConnect``, ``GaussianNoise``, ``WeightNoise``."""
    return [m for m in model.modules() if isinstance(m, StochasticLayer)]


@contextmanager
def _set_sampling(model: nn.Module, value: bool, generator: torch.Generator | None) -> Iterator[nn.Module]:
    saved = [(m, m.sampling, m.generator) for m in dropout_modules(model)]
    try:
        for m, _, _ in saved:
            m.sampling = value
            if generator is not None:
                m.generator = generator
        yield model
    finally:
        for m, was_sampling, gen in saved:
            m.sampling, m.generator = was_sampling, gen


def sampling(model: nn.Module, generator: torch.Generator | None = None):
    """Context: the dropout family of ``model`` draws noise even in eval mode; nothing else changes.

    Only ``.sampling`` is set (batch norm and the ``training`` flags are left alone); with a
    ``generator`` the layers draw from it. Both are restored on exit, also on an exception.
    """
    return _set_sampling(model, True, generator)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in saved:
            m.training = was_training


@torch.no_grad()
def mc_predict(model: nn.Module, X: Tensor, samples: int, *, aggregate: str = "mean",
               generator: torch.Generator | None = None, heads: list[int] | None = None) -> Tensor:
    """Class probabilities ``(N, C)`` averaged over ``samples`` stochastic forward passes.

    The model runs in eval mode (batch norm uses its running statistics and does not update
    them) with its dropout family sampling. ``aggregate="mean"``: ``1/K sum_k softmax(f_k(X))``;
    ``"geometric"``: the normalized geometric mean ``softmax(1/K sum_k log_softmax(f_k(X)))``.
    The training flags of every module are restored afterwards. ``heads``: the widths of the
    side-by-side heads of a multi-task model; each head is aggregated on its own.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"mc_predict samples must be an integer >= 1; got {samples!r}")
    _check_aggregate("mc_predict", aggregate)
    total = None
    with _eval_mode(model), sampling(model, generator):
        for _ in range(samples):
            log_probs = _log_softmax(model(X), heads)
            term = log_probs if aggregate == "geometric" else log_probs.exp()
            total = term if total is None else total + term
    mean = total / samples
    return _log_softmax(mean, heads).exp() if aggregate == "geometric" else mean


def _log_softmax(z: Tensor, heads: list[int] | None) -> Tensor:
    """``log_softmax`` over the last dimension, or over each head's columns."""
    if heads is None:
        return F.log_softmax(z, dim=-1)
    return torch.cat([F.log_softmax(part, dim=-1) for part in z.split(heads, dim=-1)], dim=-1)


@torch.no_grad()
def weight_scaling_predict(model: nn.Module, X: Tensor) -> Tensor:
    """``softmax(model(X))`` in eval mode with sampling off: the weight-scaling ("scale") rule."""
    with _eval_mode(model), _set_sampling(model, False, None):
        return F.softmax(model(X), dim=-1)


def geometric_mean(log_probs: Tensor) -> Tensor:
    """Normalized geometric mean of ``K`` distributions: ``(K, N, C)`` log-probs -> ``(N, C)`` probs.

    ``p(c) = exp(1/K sum_k log p_k(c)) / sum_c' exp(1/K sum_k log p_k(c'))``.
    """
    return F.softmax(log_probs.mean(dim=0), dim=-1)


def enumerate_masks(h: int, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    """All ``2^h`` binary masks as a ``(2^h, h)`` tensor; row ``i`` is ``i`` in binary, unit ``j`` = bit ``j``."""
    if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= MAX_ENUMERATED_UNITS:
        raise ValueError(f"enumerate_masks h must be an integer in [0, {MAX_ENUMERATED_UNITS}] "
                         f"(2^h masks); got {h!r}")
    rows = torch.arange(2 ** h, device=device)[:, None]          # (2^h, 1)
    return ((rows >> torch.arange(h, device=device)) & 1).to(dtype)


@torch.no_grad()
def exact_ensemble(head: Callable[[Tensor], Tensor], x: Tensor, drop_prob: float, *,
                   aggregate: str = "geometric", mode: str = "classic", chunk: int = 2048) -> Tensor:
    """The exact dropout ensemble over all ``2^h`` masks of the ``h`` units ``x`` (N, h).

    ``head`` maps the dropped-out units ``(M, h)`` to logits ``(M, C)`` (the rest of the
    network). Sub-model ``m`` sees ``m * x`` (classic) or ``m * x / (1 - p)`` (inverted) and
    is weighted by ``P(m) = p^{#dropped} (1-p)^{#kept}``. ``aggregate="geometric"``:
    ``softmax(sum_m P(m) log_softmax(head(.)))``; ``"mean"``: ``sum_m P(m) softmax(head(.))``.
    Returns probabilities ``(N, C)``; masks are processed ``chunk`` at a time.
    """
    p = check_drop_prob("exact_ensemble", drop_prob)
    _check_aggregate("exact_ensemble", aggregate)
    if mode not in DROPOUT_MODES:
        raise ValueError(f"exact_ensemble mode must be one of {', '.join(map(repr, DROPOUT_MODES))}; got {mode!r}")
    if x.dim() != 2:
        raise ValueError(f"exact_ensemble x must be (N, h), the units to drop; got shape {tuple(x.shape)}")
    n, h = x.shape
    masks = enumerate_masks(h, x.dtype, x.device)                  # (2^h, h)
    kept = masks.sum(dim=1)
    weights = (1.0 - p) ** kept * p ** (h - kept)                   # (2^h,), sums to 1
    if mode == "inverted":
        masks = masks / (1.0 - p)
    total = 0.0
    for start in range(0, len(masks), chunk):
        m, w = masks[start:start + chunk], weights[start:start + chunk]
        logits = head((m[:, None, :] * x).reshape(-1, h)).reshape(len(m), n, -1)   # (k, N, C)
        log_probs = F.log_softmax(logits, dim=-1)
        term = log_probs if aggregate == "geometric" else log_probs.exp()
        total = total + (w[:, None, None] * term).sum(dim=0)
    return F.softmax(total, dim=-1) if aggregate == "geometric" else total


def exact_dropout_ensemble(weight: Tensor, bias: Tensor | None, x: Tensor, drop_prob: float,
                           aggregate: str = "geometric", *, mode: str = "classic") -> Tensor:
    """Exact ensemble of the softmax regression ``softmax(x W^T + b)`` with dropout on its inputs.

    ``weight`` (C, h), ``bias`` (C,) or None, ``x`` (N, h). For every mask ``m`` the logits
    are ``(x * m) @ W^T + b`` (classic dropout, no scaling), weighted by ``p^{#dropped}
    (1-p)^{#kept}``. By the theorem in the module docstring, ``aggregate="geometric"`` gives
    exactly ``softmax(x @ ((1 - p) W)^T + b)``, for any ``p``; ``"mean"`` does not.
    """
    return exact_ensemble(lambda z: F.linear(z, weight, bias), x, drop_prob,
                          aggregate=aggregate, mode=mode)
