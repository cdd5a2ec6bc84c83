"""K networks of one architecture as one: stacked weights and batched matrix products.

A population of K MLPs (or softmax regressions) with the same layer sizes is held as one
tensor per parameter -- ``W: (K, out, in)``, ``b: (K, out)`` -- and each layer of the forward
pass is one batched matrix product for all members, ``h_k <- h_k W_k^T + b_k``
(``torch.baddbmm``). The objective is the sum of the members' losses; member k's loss depends
only on member k's weights, so one backward pass gives every member its own gradient,

    d(sum_j L_j) / d W_k = d L_k / d W_k,

and the optimizer's update is elementwise, so ``StackedOptimizer``
(``regulab.engine.population.optimizer``) applies each member's own rule (its learning rate,
weight decay, betas) to its slice.

Exactness. Each member keeps its own drop probabilities, noise levels and ``torch.Generator``
(the one its run would use) and draws from it in the order and shapes its network alone would:
per training step, layer by layer, a mask ``rand((B, F)) >= p`` per dropout layer, a
``randn((B, F))`` per noise layer, a ``randn(W.shape)`` per noisy weight. So a member's masks,
noise and updates are those of a separate run; only the matmuls' summation order differs, so
the two agree to float rounding (tests/test_population.py compares them).

Augmentation. A member's ``Augment`` layer (``regulab.modalities.layer``: 1-D shift and
stretch, image affine transforms) is a stochastic op before the first layer: in training each
member's pipeline transforms its own examples with draws from its own generator, first in its
step as in its run alone; in evaluation its deterministic part. Members may differ in its
strengths (or have none); what it outputs must have one shape for all. The shift and stretch of
1-D samples (``ImagePipeline``'s ``RandomShiftScale1d``) is done for all members at once: each
draws its shifts and stretches (``RandomShiftScale1d.draw``, the call its run makes), and one
``shift_scale_1d`` (then one normalize, when all members normalize alike) moves their K * B
samples; a sample's result does not depend on the others in the batch, so this changes no value.

Speed. Per step, the work of K small networks costs one batched kernel per layer instead of K
launches. All parameters live in one flat buffer (``FlatParams``: parameter i of every member
side by side, ``(K, *shape_i)``), and so do their gradients, so an optimizer step is a dozen
elementwise kernels over one tensor, whatever the number of layers and members. The dropout
masks of members that draw only uniforms (no Gaussian noise) are drawn for a block of steps
at once (``predraw``): on the CPU, ``rand(n)`` then ``rand(m)`` from one generator equals
``rand(n + m)`` split, so this changes no value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from regulab.modalities.image.augment import ImagePipeline, shift_scale_1d
from regulab.modalities.layer import Augment
from regulab.nn.layers import Dropout, GaussianNoise, WeightNoise

__all__ = ["Unsupported", "FlatParams", "StackedNet"]

_ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Identity)
_STOCHASTIC = ("augment", "noise", "dropout")   # their order inside a slot (as the model builder adds them)


class Unsupported(ValueError):
    """The networks (or optimizers) cannot be trained as one population; says why."""


@dataclass(eq=False)
class _Op:
    """One step of the stacked forward pass."""
    kind: str                       # flatten | act | linear | augment | noise | dropout
    module: nn.Module | None = None                 # act: the activation
    modules: list = field(default_factory=list)     # augment: each member's Augment (or None)
    weight: int = -1                                # linear: index of W in params
    bias: int | None = None                         # linear: index of b (None: no bias)
    members: list[int] = field(default_factory=list)    # members that draw (value > 0)
    width: int = 0                                  # dropout/noise: features per example
    mode: str = "inverted"                          # dropout
    offset: int = 0                                 # dropout: where its uniforms start in a step
    value: Tensor | None = None                     # (K, 1, 1) float32: p, noise std, weight std
    scale: Tensor | None = None                     # dropout: (K, 1, 1), a kept unit's factor


def _tokens(net: nn.Module) -> list[tuple]:
    """A member's layers as (kind, ...) tuples, or ``Unsupported`` naming the first other layer."""
    out = []
    for name, m in net.named_children():
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            out.append(("flatten",))
        elif isinstance(m, WeightNoise) and type(m.layer) is nn.Linear:
            out.append(("linear", m.layer, m.std))
        elif type(m) is nn.Linear:
            out.append(("linear", m, 0.0))
        elif isinstance(m, _ACTIVATIONS):
            out.append(("act", m))
        elif isinstance(m, GaussianNoise):
            out.append(("noise", m.std))
        elif isinstance(m, Augment):
            out.append(("augment", m))
        elif isinstance(m, Dropout):
            out.append(("dropout", m.drop_prob, m.mode))
        else:
            raise Unsupported(f"layer '{name}' ({type(m).__name__}) has no stacked form")
    return out


def _signature(token: tuple) -> tuple:
    if token[0] == "linear":
        layer = token[1]
        return ("linear", tuple(layer.weight.shape), layer.bias is not None)
    if token[0] == "act":
        return ("act", repr(token[1]))
    return token


def _slots(tokens: list[tuple]) -> tuple[list[tuple], list[dict[str, tuple]]]:
    """(skeleton, stochastic layers before each skeleton layer and after the last)."""
    skeleton, slots = [], [{}]
    for t in tokens:
        if t[0] in _STOCHASTIC:
            slot = slots[-1]
            if t[0] in slot or any(_STOCHASTIC.index(k) > _STOCHASTIC.index(t[0]) for k in slot):
                raise Unsupported(f"{t[0]} layers in an order the stacked network does not follow")
            slot[t[0]] = t
        else:
            skeleton.append(t)
            slots.append({})
    return skeleton, slots


class StackedNet:
    """The members' networks ``nets`` (same layer sizes) as stacked leaf tensors ``params``.

    ``generators[k]`` is member k's noise generator (its dropout masks and noise). Members may
    differ in drop probabilities (0 included), noise stds and weight noise; anything else that
    differs, or a layer other than flatten/linear/activation/dropout/noise, is ``Unsupported``.
    ``active[k] = False`` stops member k drawing (a member that stopped or diverged).
    """

    def __init__(self, nets: Sequence[nn.Module], generators: Sequence[torch.Generator]):
        self.K = len(nets)
        parsed = [_slots(_tokens(net)) for net in nets]
        skeleton = parsed[0][0]
        for k, (skel, _) in enumerate(parsed):
            if [_signature(t) for t in skel] != [_signature(t) for t in skeleton]:
                raise Unsupported(f"member {k}'s layers differ from member 0's")
        members_params = [list(net.parameters()) for net in nets]
        index = {id(p): i for i, p in enumerate(members_params[0])}
        self.member_params = members_params
        device = members_params[0][0].device
        self.flat = FlatParams(members_params)
        self.params = self.flat.params
        self.generators = list(generators)
        self.active = [True] * self.K
        self.ops: list[_Op] = []
        self._masks: dict[int, Tensor] | None = None    # predrawn: id(op) -> (steps, K, B * F)
        self._slow: dict[int, list[int]] = {}          # predrawn: id(op) -> members drawing per step
        width = next(t[1].in_features for t in skeleton if t[0] == "linear") \
            if any(t[0] == "linear" for t in skeleton) else 0
        used = set()
        for i in range(len(skeleton) + 1):
            for kind in _STOCHASTIC:
                if kind == "augment":
                    mods = [slots[i][kind][1] if kind in slots[i] else None for _, slots in parsed]
                    if any(m is not None for m in mods):
                        self.ops.append(_Op("augment", modules=mods,
                                            members=[k for k, m in enumerate(mods) if m is not None]))
                    continue
                values = [(slots[i][kind][1] if kind in slots[i] else 0.0) for _, slots in parsed]
                if any(values):
                    modes = {slots[i][kind][2] for _, slots in parsed if kind in slots[i]} \
                        if kind == "dropout" else {"inverted"}
                    if len(modes) > 1:
                        raise Unsupported("members mix inverted and classic dropout")
                    self.ops.append(self._stochastic(kind, values, width, modes.pop(), device))
            if i == len(skeleton):
                break
            t = skeleton[i]
            if t[0] == "linear":
                layer = t[1]
                w, b = index[id(layer.weight)], (index[id(layer.bias)] if layer.bias is not None else None)
                used.update({w, b} - {None})
                stds = [p[0][i][2] for p in parsed]
                op = _Op("linear", weight=w, bias=b, members=[k for k, s in enumerate(stds) if s > 0],
                         value=_column(stds, device))
                self.ops.append(op)
                width = layer.out_features
            else:
                self.ops.append(_Op(t[0], module=t[1] if t[0] == "act" else None))
        if used != set(range(len(self.params))):
            raise Unsupported("the networks have parameters outside their linear layers")

    @staticmethod
    def _stochastic(kind: str, values: list[float], width: int, mode: str, device) -> _Op:
        op = _Op(kind, members=[k for k, v in enumerate(values) if v > 0], width=width, mode=mode,
                 value=_column(values, device))
        if kind == "dropout":   # inverted: y = m * x / (1 - p); classic: y = m * x
            op.scale = _column([1.0 / (1.0 - v) if mode == "inverted" else 1.0 for v in values], device)
        return op

    # -- randomness ------------------------------------------------------------------------

    def _draw(self, op: _Op, shape: tuple, normal: bool, like: Tensor) -> Tensor:
        """(K, *shape): member k's draw from its generator, zeros for members that do not draw."""
        rows = []
        for k in range(self.K):
            if k in op.members and self.active[k]:
                fn = torch.randn if normal else torch.rand
                rows.append(fn(shape, generator=self.generators[k], device=like.device, dtype=like.dtype))
            else:
                rows.append(torch.zeros(shape, device=like.device, dtype=like.dtype))
        return torch.stack(rows)

    def _uniform_only(self, k: int) -> bool:
        """Member k draws only dropout masks (no noise, no augmentation): its masks may be
        drawn ahead for a block of steps."""
        return all(k not in op.members for op in self.ops if op.kind in ("augment", "noise", "linear"))

    def _augment(self, op: _Op, h: Tensor, training: bool) -> Tensor:
        """Each member's augmentation of its own examples ``h[k]`` (training: drawn from its
        generator; else the deterministic part); members without one keep theirs."""
        if training and (out := self._shift_scale_together(op, h)) is not None:
            return out
        rows = []
        for k, m in enumerate(op.modules):
            if m is None:
                rows.append(h[k])
            elif training:
                rows.append(m.pipeline.train(h[k], self.generators[k]) if self.active[k] else h[k])
            else:
                rows.append(m.pipeline.eval(h[k]))
        if len({r.shape for r in rows}) > 1:
            raise Unsupported("the members' augmentations output different shapes")
        return torch.stack(rows)

    def _shift_scale_together(self, op: _Op, h: Tensor) -> Tensor | None:
        """Training's augmentation of 1-D samples ``h`` (K, B, L) or (K, B, C, L) for all members
        at once (``ImagePipeline.train``: shift and stretch, then normalize), or None where it
        does not apply (images, audio, members that normalize differently: then one by one).

        Member k draws ``draw(B, L)`` from its generator (nothing when its shift and stretch are
        off); one ``shift_scale_1d`` moves the rows of the members that drew, one normalize
        those of the members that augment; inactive members and those without augmentation
        keep theirs."""
        pipes = {k: op.modules[k].pipeline for k in op.members if self.active[k]}
        if h.dim() > 4 or not pipes or not all(isinstance(p, ImagePipeline) for p in pipes.values()):
            return None
        first = next(iter(pipes.values()))
        if any((p.mean, p.std, p.shift.fill, p.shift.mode) != (first.mean, first.std, first.shift.fill,
                                                                first.shift.mode) for p in pipes.values()):
            return None
        B, L = h.shape[1], h.shape[-1]
        drawn = [(k, p.shift.draw(B, L, self.generators[k], h.device)) for k, p in pipes.items()
                 if not p.shift.identity]
        if drawn:
            shift, scale = (torch.cat(d) for d in zip(*(d for _, d in drawn)))       # (K' B,) each
            h = _on_rows(h, [k for k, _ in drawn], lambda r: shift_scale_1d(
                r.flatten(0, 1), shift, scale, first.shift.fill, first.shift.mode).view(r.shape))
        if first.mean is None and first.std is None:
            return h
        return _on_rows(h, list(pipes), lambda r: first.normalize_batch(r.flatten(0, 1)).view(r.shape))

    @staticmethod
    def _mask(u: Tensor, value: Tensor, scale: Tensor) -> Tensor:
        """Kept units' factors from uniforms ``u``: ``(u >= p) / (1 - p)`` (inverted) or ``u >= p``."""
        return (u >= value) * scale

    def predraw(self, batch: int, steps: int, dtype=torch.float32) -> None:
        """Draw the dropout masks of the next ``steps`` full steps of ``batch`` examples, for
        the members whose only draws are dropout masks (see the module docstring); the forward
        passes of those steps then take their ``step`` (0, 1, ...) instead of drawing. Members
        draw one after another on this thread: a thread pool was slower, and the OpenMP teams
        its threads left behind slowed every later run of the process two- to threefold."""
        drops = [op for op in self.ops if op.kind == "dropout"]
        device = self.flat.data.device
        fast = [k for k in range(self.K) if self.active[k] and self._uniform_only(k)
                and any(k in op.members for op in drops)]
        self._masks = None
        if device.type != "cpu" or not fast:
            return
        masks = {id(op): torch.empty(steps, self.K, batch * op.width, dtype=dtype) for op in drops}
        for op in drops:        # members that draw no mask here (or draw it per step) keep all
            idle = [k for k in range(self.K) if k not in fast or k not in op.members]
            masks[id(op)][:, idle] = 1.0

        def draw(k: int) -> None:   # member k's stream: per step, its masks layer by layer
            mine = [op for op in drops if k in op.members]
            u = torch.rand(steps * sum(batch * op.width for op in mine),
                           generator=self.generators[k], dtype=dtype).view(steps, -1)
            start = 0
            for op in mine:
                part = u[:, start:start + batch * op.width]
                masks[id(op)][:, k] = self._mask(part, op.value[k, 0], op.scale[k, 0])
                start += batch * op.width
        for k in fast:
            draw(k)
        self._masks = masks
        self._slow = {id(op): [k for k in op.members if self.active[k] and k not in fast] for op in drops}

    def _dropout_mask(self, op: _Op, x: Tensor, step: int | None) -> Tensor:
        """(K, B, F) factors of this step's dropout ``op``: predrawn, or drawn now."""
        B = x.shape[1]
        if step is None or self._masks is None:
            return self._mask(self._draw(op, (B, op.width), False, x), op.value, op.scale)
        mask = self._masks[id(op)][step].view(self.K, B, op.width)
        slow = self._slow[id(op)]
        if slow:
            mask = mask.clone()
            for k in slow:
                u = torch.rand((B, op.width), generator=self.generators[k], device=x.device, dtype=x.dtype)
                mask[k] = self._mask(u, op.value[k], op.scale[k])
        return mask

    # -- the forward pass -------------------------------------------------------------------

    def forward(self, x: Tensor, training: bool, step: int | None = None) -> Tensor:
        """``x: (K, B, *sample)``, member k's examples in ``x[k]`` -> ``(K, B, out)``.
        ``training``: draw masks and noise; else the inference rules (classic dropout scales).
        ``step``: index of this step in the block ``predraw`` prepared, if any."""
        h = x
        for op in self.ops:
            if op.kind == "flatten":
                h = h.flatten(2)
            elif op.kind == "act":
                h = op.module(h)
            elif op.kind == "linear":
                w = self.params[op.weight]                                  # (K, out, in)
                if training and any(self.active[k] for k in op.members):
                    w = w + op.value * self._draw(op, tuple(w.shape[1:]), True, w)
                wt = w.transpose(1, 2)
                h = torch.bmm(h, wt) if op.bias is None else \
                    torch.baddbmm(self.params[op.bias].unsqueeze(1), h, wt)   # (K, B, out)
            elif op.kind == "augment":
                h = self._augment(op, h, training)
            elif op.kind == "noise":
                if training:
                    h = h + op.value * self._draw(op, (h.shape[1], op.width), True, h)
            elif training:                                                   # dropout
                h = h * self._dropout_mask(op, h, step)
            elif op.mode == "classic":                                       # y = (1 - p) x
                h = h * (1 - op.value)
        return h

    def drop_predrawn(self) -> None:
        """Forget the masks ``predraw`` drew (at an epoch's end: the next draws anew)."""
        self._masks = None

    @torch.no_grad()
    def write_back(self, k: int) -> None:
        """Copy member k's slices into its own network's parameters."""
        for stacked, own in zip(self.params, self.member_params[k]):
            own.copy_(stacked[k])


class FlatParams:
    """The parameters of K members in one flat buffer ``data``, gradients in ``grad``.

    Parameter i of all members is the contiguous view ``params[i]: (K, *shape_i)`` of ``data``
    (a leaf that requires grad, its ``.grad`` the same view of ``grad``, so backward adds into
    ``grad`` in place); ``member[j]`` is the member that element j of ``data`` belongs to.
    ``members[k]`` lists member k's own tensors, whose values the buffer starts from.
    """

    def __init__(self, members: Sequence[Sequence[Tensor]]):
        K, first = len(members), members[0]
        self.members = [list(ps) for ps in members]
        sizes = [p.numel() for p in first]
        self.sizes = sizes
        like = first[0]
        self.data = torch.empty(K * sum(sizes), dtype=like.dtype, device=like.device)
        self.grad = torch.zeros_like(self.data)
        self.member = torch.cat([torch.arange(K, device=like.device).repeat_interleave(n) for n in sizes])
        self.params: list[Tensor] = []
        start = 0
        for i, (p0, n) in enumerate(zip(first, sizes)):
            view = self.data[start:start + K * n].view(K, *p0.shape)
            with torch.no_grad():
                view.copy_(torch.stack([ps[i].detach() for ps in members]))
            view.requires_grad_()
            view.grad = self.grad[start:start + K * n].view(K, *p0.shape)
            self.params.append(view)
            start += K * n

    def zero_grad(self) -> None:
        self.grad.zero_()

    def per_element(self, values: Tensor) -> Tensor:
        """(K,) per-member values -> (numel,) one per element of ``data``."""
        return values.to(self.data.device, self.data.dtype)[self.member]

    def per_param(self, values: Tensor) -> Tensor:
        """(K, P) values of each member's parameter i -> (numel,) one per element of ``data``."""
        values = values.to(self.data.device, self.data.dtype)
        return torch.cat([values[:, i].repeat_interleave(n) for i, n in enumerate(self.sizes)])


def _on_rows(h: Tensor, members: list[int], fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``fn`` applied to the examples of ``members``, ``h[members]`` (K', B, ...); the other
    members' rows of ``h`` (K, B, ...) unchanged."""
    if len(members) == len(h):
        return fn(h)
    out = h.clone()
    out[members] = fn(h[members])
    return out


def _column(values: Sequence[float], device) -> Tensor:
    """(K, 1, 1) float32, each value rounded from double as a Python scalar operand would be."""
    return torch.tensor(list(values), dtype=torch.float32, device=device).view(-1, 1, 1)
