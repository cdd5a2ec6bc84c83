"""One optimizer step for K networks at once: each member's ``torch.optim`` rule on its slice
of a flat parameter buffer (``FlatParams``), a dozen elementwise kernels per step.

The update is elementwise, so applying member k's learning rate, weight decay and moments to
member k's elements gives member k's own trajectory; ``export`` hands the state back to
member k's optimizer, so its checkpoint resumes as a separate run's would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.adam import adam as adam_update
from torch import Tensor

from regulab.engine.population.flat import FlatParams
from regulab.engine.population.penalty import StackedNormPenalty
from regulab.engine.population.stacked import Unsupported

__all__ = ["StackedOptimizer"]


class StackedOptimizer:
    """The members' ``torch.optim`` optimizers applied to ``FlatParams``, each member's rule to
    its own elements.

    Supported: SGD (with momentum and Nesterov), Adam, AdamW and RMSprop, all members the same
    class with the same betas, eps, momentum and alpha in every parameter group; the learning
    rate and the weight decay may differ per member and per group -- each element takes those
    of the group holding its parameter, so a ``weight_decay = 0`` group (biases,
    ``engine.optimizers.decay_groups``) is a per-element mask. The updates are torch's
    single-tensor forms (``torch/optim/{sgd,adam,rmsprop}.py``), with g the gradient, t the step:

    * SGD: ``g += wd w``; momentum ``b = g`` (first step), then ``b = mu b + g``; ``w -= lr b``
      (Nesterov: ``w -= lr (g + mu b)``);
    * Adam: ``g += wd w`` (AdamW instead ``w *= 1 - lr wd``); ``m = lerp(m, g, 1 - beta1)``,
      ``v = beta2 v + (1 - beta2) g^2``; ``w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 -
      beta2^t) + eps)``;
    * RMSprop: ``g += wd w``; ``s = alpha s + (1 - alpha) g^2``; ``w -= lr g / (sqrt(s) + eps)``.

    ``penalty`` (the members' ``StackedNormPenalty``) adds the gradient of their norm
    penalties first, ``g += l1 sign(w) + 2 l2 w``, as if each penalty were in its loss
    (``NormPenalty``), without a backward pass through it.

    ``export`` puts member k's state into its own optimizer, in the layout ``state_dict`` saves,
    so a member's checkpoint resumes as a separate run.
    """

    def __init__(self, flat: FlatParams, optimizers: Sequence[torch.optim.Optimizer],
                 penalty: StackedNormPenalty | None = None):
        kinds = {self._kind(o, g) for o in optimizers for g in o.param_groups}
        if len(kinds) != 1:
            raise Unsupported(f"members' optimizers differ in more than lr and weight decay: "
                              f"{sorted(map(str, kinds))}")
        self.kind = kinds.pop()
        self.flat = flat
        self.hyper = {k: v for k, v in optimizers[0].param_groups[0].items()
                      if k in ("betas", "eps", "momentum", "alpha")}
        self.set_rates(optimizers)
        names = {"adam": ("exp_avg", "exp_avg_sq"), "rmsprop": ("square_avg",)}.get(self.kind[0], ())
        if self.kind[:2] == ("sgd", True):
            names = ("momentum_buffer",)
        self.state = {name: torch.zeros_like(flat.data) for name in names}
        self.penalty = penalty
        self.t = 0

    def set_rates(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Take the learning rates and weight decays the members' optimizers now hold (a
        schedule changes them between epochs: ``engine.schedules``)."""
        lr, wd = self._group_values(self.flat, optimizers)                 # (K, P) each
        self.lr, self.wd = self.flat.per_param(lr), self.flat.per_param(wd)    # (numel,)
        self.decay = self.flat.per_param(1 - lr * wd)                      # AdamW's factor
        self.has_wd = bool((wd != 0).any())
        self.rates = self._rate_groups(lr)

    def _rate_groups(self, lr: Tensor) -> list[tuple[float, list[slice]]]:
        """The learning rates of ``lr`` (K, P), each with the slices of ``flat.data`` that
        take it: runs of consecutive (parameter, member) blocks, so one slice (the whole
        buffer) when all members share a rate."""
        runs: list[tuple[float, int, int]] = []
        start = 0
        for i, n in enumerate(self.flat.sizes):
            for k in range(len(lr)):
                rate = float(lr[k, i])
                if runs and runs[-1][0] == rate and runs[-1][2] == start:
                    runs[-1] = (rate, runs[-1][1], start + n)
                else:
                    runs.append((rate, start, start + n))
                start += n
        groups: dict[float, list[slice]] = {}
        for rate, a, b in runs:
            groups.setdefault(rate, []).append(slice(a, b))
        return list(groups.items())

    @staticmethod
    def _group_values(flat: FlatParams, optimizers: Sequence[torch.optim.Optimizer]) -> tuple[Tensor, Tensor]:
        """(lr, weight decay), each (K, P) float64: those of the group holding member k's parameter i."""
        lr, wd = [], []
        for k, (params, o) in enumerate(zip(flat.members, optimizers)):
            group = {id(p): g for g in o.param_groups for p in g["params"]}
            missing = [i for i, p in enumerate(params) if id(p) not in group]
            if missing:
                raise Unsupported(f"member {k}'s parameter {missing[0]} is not in its optimizer (frozen?)")
            lr.append([float(group[id(p)]["lr"]) for p in params])
            wd.append([float(group[id(p)]["weight_decay"]) for p in params])
        return torch.tensor(lr, dtype=torch.float64), torch.tensor(wd, dtype=torch.float64)

    @staticmethod
    def _kind(o: torch.optim.Optimizer, g: dict) -> tuple:
        """What must be equal across members and groups: the rule and its hyperparameters."""
        if type(o) is torch.optim.SGD and not g["dampening"]:
            return ("sgd", g["momentum"] > 0, bool(g["nesterov"]), g["momentum"])
        if type(o) in (torch.optim.Adam, torch.optim.AdamW) and not g["amsgrad"] and not g["maximize"]:
            return ("adam", type(o) is torch.optim.AdamW or bool(g.get("decoupled_weight_decay")),
                    tuple(g["betas"]), g["eps"])
        if type(o) is torch.optim.RMSprop and not g["centered"] and not g["momentum"]:
            return ("rmsprop", g["alpha"], g["eps"])
        raise Unsupported(f"optimizer {type(o).__name__} with these options has no stacked form")

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        w, g, h = self.flat.data, self.flat.grad, self.hyper
        kind = self.kind[0]
        # the penalties' and coupled decay's gradients go into the gradient buffer itself (the
        # next step zeroes it): a temporary as large as every member's weights costs more to
        # allocate, on CPU, than the arithmetic
        if self.penalty is not None:
            self.penalty.add_gradient()
        if kind == "adam" and self.kind[1]:
            w.mul_(self.decay)                                 # AdamW: decoupled decay
        elif self.has_wd:
            g.addcmul_(self.wd, w)                             # the gradient of wd/2 * w^2
        if kind == "adam":
            self._adam(w, g)
        elif kind == "rmsprop":
            s = self.state["square_avg"]
            s.mul_(h["alpha"]).addcmul_(g, g, value=1 - h["alpha"])
            w.addcdiv_(g * self.lr, s.sqrt().add_(h["eps"]), value=-1)
        else:
            if self.kind[1]:                                   # momentum: b <- mu b + g
                b = self.state["momentum_buffer"]
                if self.t == 1:
                    b.copy_(g)
                else:
                    b.mul_(h["momentum"]).add_(g)
                g = g.add(b, alpha=h["momentum"]) if self.kind[2] else b
            w.addcmul_(g, self.lr, value=-1)

    def _adam(self, w: Tensor, g: Tensor) -> None:
        """Adam's update of ``w`` from ``g`` (weight decay already in ``g`` or ``w``): torch's
        fused kernel (``torch.optim.adam.adam(fused=True)``, one pass over the elements) on
        the slices of each learning rate."""
        (beta1, beta2), eps = self.hyper["betas"], self.hyper["eps"]
        m, v = self.state["exp_avg"], self.state["exp_avg_sq"]
        for rate, slices in self.rates:
            steps = [torch.tensor(float(self.t - 1), device=w.device) for _ in slices]  # it adds 1
            adam_update([w[s] for s in slices], [g[s] for s in slices], [m[s] for s in slices],
                        [v[s] for s in slices], [], steps, fused=True, amsgrad=False,
                        beta1=beta1, beta2=beta2, lr=rate, weight_decay=0.0, eps=eps,
                        maximize=False)

    @torch.no_grad()
    def export(self, k: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        """Member k's state into ``optimizer`` (over ``params``, its network's parameters)."""
        for i, p in enumerate(params):
            own = {name: self.flat.view(t, i)[k].clone() for name, t in self.state.items()}
            if self.kind[0] in ("adam", "rmsprop"):
                own["step"] = torch.tensor(float(self.t))
            if own:
                optimizer.state[p] = own

    @torch.no_grad()
    def load(self, k: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        """The inverse of ``export``: member k's state from ``optimizer`` (over ``params``) into
        its slices, and the step count (one for all members: they step together)."""
        for i, p in enumerate(params):
            own = optimizer.state.get(p)
            if not own:
                continue
            for name, t in self.state.items():
                self.flat.view(t, i)[k].copy_(own[name])
            if "step" in own:
                self.t = int(own["step"])
            elif self.kind[:2] == ("sgd", True):
                self.t = max(self.t, 2)     # a momentum buffer exists: past the first step
