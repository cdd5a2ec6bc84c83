"""L1 and L2 norm penalties added to the loss ("weight shrinkage", a penalty against complexity).

L1 is the penalty of LASSO regression, L2 that of ridge (Tikhonov) regression. The notes
(files 000/002, "L2 regularization for multilayer neural networks") write the L2 cost as

    Cost = (1/n) sum_i L(y_i, yhat_i) + (lambda/n) sum_l ||W^(l)||_F^2,
    ||W||_F^2 = sum_i sum_j w_ij^2                (squared Frobenius norm, summed over layers)
    w_ij <- w_ij - eta * (dL/dw_ij + 2 lambda/n * w_ij)       (its gradient-descent update)

regulab's convention is Keras's: the penalty added to the *mean* minibatch loss is

    penalty = l1 * sum_l sum |w|  +  l2 * sum_l ||W^(l)||_F^2,
    gradient = l1 * sign(w) + 2 * l2 * w          (subgradient 0 at w = 0)

so the notes' lambda maps to ``l2 = lambda / n``, where n is the number of training
examples the notes' sum runs over. Other forms in the notes convert the same way: file
001's ``lambda/2 * ||theta||^2`` on a *summed* loss is ``l2 = lambda / (2n)`` (and its
``lambda/2 * ||theta||_1`` is ``l1 = lambda / (2n)``); the notes' PyTorch snippet adds
``2/batch_size * LAMBDA * sum w^2``, i.e. ``l2 = 2 * LAMBDA / batch_size``.

L2 shrinks every weight in proportion to its size; L1 pulls each one toward zero by the
same amount whatever its size, so it drives small weights to exactly (or, with SGD, near)
zero: sparse weights.

Weight decay is not this penalty in general (STYLE: ``weight_decay`` is not ``l2``):

* ``torch.optim.SGD(weight_decay=wd)`` adds ``wd * w`` to the gradient, which is exactly
  the gradient of ``wd/2 * sum w^2``: SGD with weight decay ``wd`` == SGD on the loss plus
  this penalty with ``l2 = wd / 2`` (with or without momentum).
* ``torch.optim.Adam(weight_decay=wd)`` does the same -- it adds ``wd * w`` to the gradient
  *before* the moment estimates -- so it too equals Adam on loss + ``wd/2 * sum w^2``. The
  decay then passes through Adam's per-parameter scaling ``1 / (sqrt(v_hat) + eps)``:
  weights with large gradients are decayed less than with SGD.
* ``torch.optim.AdamW(weight_decay=wd)`` decouples the decay from the adaptive step
  (Loshchilov & Hutter, 2019, "Decoupled weight decay regularization"):
  ``w <- w - lr * wd * w - lr * m_hat / (sqrt(v_hat) + eps)``, where m_hat, v_hat see
  only the loss's gradient. No penalty in the loss reproduces it.

Which parameters are penalized: the weights only, i.e. parameters with ``dim() >= 2``
(Linear and Conv weights); biases and batch norm's gamma/beta are left out, as in nanoGPT.
``include_bias=True`` adds the 1-D parameters of those weight layers (never batch norm's).
Frozen parameters (``requires_grad=False``, e.g. a transferred backbone) are left out:
the optimizer cannot move them, so penalizing them would only shift the logged value.

``optim.weight_decay`` acts on these same parameters (``selected_parameters``, with
``regularization.penalty_layers`` and ``penalty_bias``): ``regulab.engine.optimizers`` puts
them in a decayed parameter group and the rest in one without decay. So in a regulab run,
SGD (or Adam) with ``weight_decay = wd`` equals the loss plus this penalty with
``l2 = wd / 2``, with or without biases -- the torch bullets above decay every parameter
they are given, which is what regulab no longer gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regulab.checks import boolean, number
from regulab.errors import invalid

__all__ = ["selected_parameters", "find_layers", "select_by_name", "check_names", "l1_penalty", "l2_penalty",
           "NormPenalty"]


def _owns_weight(module: nn.Module) -> bool:
    return any(p.dim() >= 2 for p in module.parameters(recurse=False))


def check_names(names: Sequence[str] | None, field: str, kind: str = "config key") -> list[str] | None:
    """``names`` as a list, or None; a bare string or a non-string item is the one error."""
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise invalid(field, "a list of layer names", names, kind=kind)
    return list(names)


def select_by_name(pairs: Sequence[tuple[str, Any]], names: Sequence[str] | None, field: str, *,
                   what: str = "layers with weights", kind: str = "config key") -> list[tuple[str, Any]]:
    """The ``(name, item)`` pairs named by ``names``, in their order: a name selects itself and
    every name under it (``"net"`` selects ``"net.fc1"``); None selects all. A name that
    selects nothing is the one error, naming ``field`` and the valid names, with a suggestion."""
    if check_names(names, field, kind) is None:
        return list(pairs)
    valid = [n for n, _ in pairs if n]
    chosen: set[str] = set()
    for want in names:
        hits = [n for n in valid if want and (n == want or n.startswith(want + "."))]
        if not hits:
            raise invalid(field, f"names of {what} ({', '.join(valid) or 'none'})", want, kind=kind,
                          options=valid)
        chosen.update(hits)
    return [(n, x) for n, x in pairs if n in chosen]


def find_layers(model: nn.Module, names: Sequence[str] | None,
                is_layer: Callable[[nn.Module], bool], field: str,
                kind: str = "config key") -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs of ``model`` for which ``is_layer`` holds, in model order;
    with ``names``, only the layers at or under the named modules (names as in
    ``model.named_modules()``: ``"fc1"``, ``"net.fc1"``; ``"net"`` selects all of ``net``'s
    layers; ``select_by_name``)."""
    return select_by_name([(n, m) for n, m in model.named_modules() if is_layer(m)], names, field,
                          kind=kind)


def selected_parameters(model: nn.Module, layers: Sequence[str] | None = None,
                        include_bias: bool = False) -> list[tuple[str, Tensor]]:
    """The ``(name, parameter)`` pairs a norm penalty acts on (see the module docstring).

    ``layers``: names of modules whose weights are penalized (default: every layer that owns
    a weight); an unknown name raises ``ConfigError`` naming 'regularization.penalty_layers'.
    """
    boolean("regularization.penalty_bias", include_bias)
    selected: list[tuple[str, Tensor]] = []
    seen: set[int] = set()                     # a shared (tied) weight is penalized once
    for lname, module in find_layers(model, layers, _owns_weight, "regularization.penalty_layers"):
        for pname, p in module.named_parameters(recurse=False):
            if p.requires_grad and id(p) not in seen and (p.dim() >= 2 or include_bias):
                seen.add(id(p))
                selected.append((f"{lname}.{pname}" if lname else pname, p))
    return selected


def _total(terms: Iterable[Tensor]) -> Tensor:
    total: Tensor | None = None
    for t in terms:
        total = t if total is None else total + t
    return torch.zeros(()) if total is None else total


def l1_penalty(params: Iterable[Tensor]) -> Tensor:
    """``sum_l sum_ij |w_ij|`` over the given tensors (0 for none); gradient ``sign(w)``."""
    return _total(p.abs().sum() for p in params)


def l2_penalty(params: Iterable[Tensor]) -> Tensor:
    """``sum_l ||W_l||_F^2 = sum_l sum_ij w_ij^2`` over the given tensors (0 for none);
    gradient ``2 * w``."""
    return _total(p.pow(2).sum() for p in params)


class NormPenalty:
    """``model -> l1 * sum |w| + l2 * sum w^2`` over the selected weights, for ``Trainer(penalties=...)``.

    l1, l2: coefficients (>= 0) of the penalties added to the mean minibatch loss; the notes'
    lambda is ``l2 = lambda / n`` (module docstring). layers: module names to penalize
    (default: all weight layers). include_bias: penalize the weight layers' biases too.
    With ``l1 = l2 = 0`` the penalty is an exact 0 that adds no gradient.

    Example::

        >>> pen = NormPenalty(l2=1e-3)
        >>> trainer = Trainer(model, optimizer, loss_fn, penalties=[pen])
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0, layers: Sequence[str] | None = None,
                 include_bias: bool = False):
        self.l1 = number(ge=0.0)("regularization.l1", l1)
        self.l2 = number(ge=0.0)("regularization.l2", l2)
        self.layers = check_names(layers, "regularization.penalty_layers")
        self.include_bias = boolean("regularization.penalty_bias", include_bias)

    def __call__(self, model: nn.Module) -> Tensor:
        params = [p for _, p in selected_parameters(model, self.layers, self.include_bias)]
        terms = []
        if self.l1 and params:
            terms.append(self.l1 * l1_penalty(params))
        if self.l2 and params:
            terms.append(self.l2 * l2_penalty(params))
        if not terms:   # nothing to penalize: a constant 0 on the model's device
            ref = next(model.parameters(), None)
            return torch.zeros((), device=ref.device if ref is not None else None,
                               dtype=ref.dtype if ref is not None and ref.is_floating_point() else None)
        return _total(terms)

    def get_config(self) -> dict:
        """Plain values; ``NormPenalty(**p.get_config())`` rebuilds ``p``."""
        return {"l1": self.l1, "l2": self.l2,
                "layers": None if self.layers is None else list(self.layers),
                "include_bias": self.include_bias}

    def __repr__(self) -> str:
        return "NormPenalty(" + ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()) + ")"
