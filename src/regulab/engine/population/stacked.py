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
``randn((B, F))`` per noise layer, a ``randn(W.shape)`` per noisy weight, a mask
``rand(W.shape) >= p`` per DropConnect layer (``rand((B, *W.shape))`` with a mask per example).
So a member's masks, noise and updates are those of a separate run; only the matmuls' summation
order differs, so the two agree to float rounding (tests/test_population.py compares them).

DropConnect (``nn.layers.DropConnect``, Wan et al., 2013). A linear layer's batched product
takes member k's weight as ``W_k * M_k / (1 - p_k)`` (``M_k`` its mask; ``p_k = 0``, no
DropConnect: a factor of exactly 1); members may differ in ``p`` and have weight noise instead.
With a mask per example the product is ``y_kb = (W_k * M_kb / (1 - p_k)) h_kb``, an einsum over
``(K, B, out, in)`` masks, as the layer's own.

Batch normalization (``nn.BatchNorm1d``, before or after the activation). Each member normalizes
its own ``(B, F)`` features with its own batch statistics, gamma and beta (stacked parameters,
in the flat buffer with the others) and running statistics, updated in training and used in
evaluation (``engine.population.batchnorm``); ``write_back`` puts them into the member's layers.
All members have it or none (``model.batchnorm`` is a shared key: it changes the layers).

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
and DropConnect masks of members that draw only uniforms (no Gaussian noise, no mask per
example) are drawn for a block of steps at once (``predraw``): on the CPU, ``rand(n)`` then
``rand(m)`` from one generator equals ``rand(n + m)`` split, so this changes no value. A mask
or noise that only some members draw acts on their rows only (``OnRows``: one copy of the
tensor, the members' rows multiplied or shifted), not as a product with 1 (or a sum with 0)
over every member's: in a study's population each technique is a few members among many.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from regulab.engine.population.batchnorm import StackedBatchNorm, batchnorm_signature
from regulab.engine.population.flat import FlatParams
from regulab.modalities.image.augment import ImagePipeline, shift_scale_1d
from regulab.modalities.layer import Augment
from regulab.nn.layers import DropConnect, Dropout, GaussianNoise, WeightNoise

__all__ = ["Unsupported", "StackedNet", "OnRows"]

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
    value: Tensor | None = None                     # (K, 1, 1) float32: p, noise std, weight std
    scale: Tensor | None = None                     # dropout, DropConnect: (K, 1, 1), a kept one's factor
    drops: list[int] = field(default_factory=list)  # linear: members with DropConnect (p > 0)
    drop: Tensor | None = None                      # linear: (K, 1, 1) float32, DropConnect's p
    per_example: bool = False                       # linear: a DropConnect mask per example
    norm: StackedBatchNorm | None = None            # batchnorm: the members' layers as one


class OnRows(torch.autograd.Function):
    """``x`` (K, ...) with its rows ``idx`` multiplied by ``factor`` (len(idx), ...) -- or, with
    ``add``, shifted by it -- the other rows as they are; ``factor`` takes no gradient (a mask,
    noise). The same numbers as ``x * f`` (``x + f``) with ``f`` 1 (0) on the other rows, for one
    copy of ``x`` forward and, for a product, one of the gradient backward."""

    @staticmethod
    def forward(ctx, x: Tensor, idx: Tensor, factor: Tensor, add: bool) -> Tensor:
        out = x.clone()
        if add:
            out.index_add_(0, idx, factor)
        else:
            out.index_copy_(0, idx, x.index_select(0, idx) * factor)
            ctx.save_for_backward(idx, factor)
        ctx.add = add
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.add:                         # d(x + f)/dx = 1
            return grad, None, None, None
        idx, factor = ctx.saved_tensors     # d(x * f)/dx = f on the rows, 1 elsewhere
        out = grad.clone()
        out.index_copy_(0, idx, grad.index_select(0, idx) * factor)
        return out, None, None, None


def _tokens(net: nn.Module) -> list[tuple]:
    """A member's layers as (kind, ...) tuples, or ``Unsupported`` naming the first other layer."""
    out = []
    for name, m in net.named_children():
        if isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1:
            out.append(("flatten",))
        elif isinstance(m, WeightNoise) and type(m.layer) is nn.Linear:
            out.append(("linear", m.layer, m.std, 0.0, False))
        elif isinstance(m, DropConnect) and type(m.layer) is nn.Linear:
            out.append(("linear", m.layer, 0.0, m.drop_prob, m.per_example and m.drop_prob > 0))
        elif type(m) is nn.Linear:
            out.append(("linear", m, 0.0, 0.0, False))
        elif isinstance(m, _ACTIVATIONS):
            out.append(("act", m))
        elif type(m) is nn.BatchNorm1d:
            out.append(("batchnorm", m))
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
    if token[0] == "batchnorm":
        return batchnorm_signature(token[1])
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
    differ in drop probabilities (0 included), noise stds, weight noise and DropConnect; anything
    else that differs, or a layer other than flatten/linear/activation/batch norm/dropout/noise,
    is ``Unsupported``.
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
        self._masks: dict[int, Tensor] | None = None    # predrawn: id(op) -> (steps, members, B * F)
        self._mask_buffers: tuple[tuple, dict[int, Tensor]] | None = None   # kept for the next block
        self._predrawn: dict[int, list[int]] = {}      # predrawn: id(op) -> the members of its rows
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
                op = self._linear([skel[i] for skel, _ in parsed], index, device)
                used.update({op.weight, op.bias} - {None})
                self.ops.append(op)
                width = t[1].out_features
            elif t[0] == "batchnorm":
                w, b = index[id(t[1].weight)], index[id(t[1].bias)]
                used.update({w, b})
                try:
                    norm = StackedBatchNorm([skel[i][1] for skel, _ in parsed], self.params[w], self.params[b])
                except ValueError as e:
                    raise Unsupported(str(e)) from None
                self.ops.append(_Op("batchnorm", norm=norm))
            else:
                self.ops.append(_Op(t[0], module=t[1] if t[0] == "act" else None))
        if used != set(range(len(self.params))):
            raise Unsupported("the networks have parameters outside their linear and batch-norm layers")

    @staticmethod
    def _linear(tokens: list[tuple], index: dict[int, int], device) -> _Op:
        """The op of one linear layer from each member's token ``("linear", layer, weight noise
        std, DropConnect p, per example)``: member k's weight is ``W_k + std_k eps_k`` (weight
        noise) or ``W_k * M_k / (1 - p_k)`` (DropConnect), never both (``Regularizers.wrap``)."""
        layer = tokens[0][1]
        stds, probs = [t[2] for t in tokens], [t[3] for t in tokens]
        per_example = {t[4] for t in tokens if t[3] > 0}
        if len(per_example) > 1:
            raise Unsupported("members mix DropConnect masks per example and per batch")
        return _Op("linear", weight=index[id(layer.weight)],
                   bias=index[id(layer.bias)] if layer.bias is not None else None,
                   members=[k for k, s in enumerate(stds) if s > 0], value=_column(stds, device),
                   drops=[k for k, q in enumerate(probs) if q > 0], drop=_column(probs, device),
                   scale=_column([1.0 / (1.0 - q) for q in probs], device),
                   per_example=bool(per_example) and per_example.pop())

    @staticmethod
    def _stochastic(kind: str, values: list[float], width: int, mode: str, device) -> _Op:
        op = _Op(kind, members=[k for k, v in enumerate(values) if v > 0], width=width, mode=mode,
                 value=_column(values, device))
        if kind == "dropout":   # inverted: y = m * x / (1 - p); classic: y = m * x
            op.scale = _column([1.0 / (1.0 - v) if mode == "inverted" else 1.0 for v in values], device)
        return op

    # -- randomness ------------------------------------------------------------------------

    def _draw(self, members: list[int], shape: tuple, normal: bool, like: Tensor) -> Tensor:
        """(K, *shape): member k's draw from its generator, zeros for the others and the inactive."""
        out = torch.zeros((self.K, *shape), device=like.device, dtype=like.dtype)
        fn = torch.randn if normal else torch.rand
        for k in members:       # drawn into its row: the same numbers as a draw of its own
            if self.active[k]:
                fn(shape, generator=self.generators[k], device=like.device, dtype=like.dtype, out=out[k])
        return out

    def _drawing(self, members: list[int]) -> list[int]:
        """The active ones of ``members``: those that draw this step."""
        return [k for k in members if self.active[k]]

    def _draw_rows(self, rows: list[int], shape: tuple, normal: bool, like: Tensor) -> Tensor:
        """(len(rows), *shape): member k's draw from its generator, for each k of ``rows``."""
        out = torch.empty((len(rows), *shape), device=like.device, dtype=like.dtype)
        fn = torch.randn if normal else torch.rand
        for i, k in enumerate(rows):
            fn(shape, generator=self.generators[k], device=like.device, dtype=like.dtype, out=out[i])
        return out

    def _on_rows(self, x: Tensor, rows: list[int], factor: Tensor, add: bool) -> Tensor:
        """``x`` with the members ``rows`` multiplied (``add``: shifted) by ``factor`` (``OnRows``);
        with every member in ``rows``, the plain product (sum)."""
        if len(rows) == self.K:
            return x + factor if add else x * factor
        idx = torch.tensor(rows, device=x.device)
        return OnRows.apply(x, idx, factor, add)

    def _noise(self, x: Tensor, rows: list[int], value: Tensor) -> Tensor:
        """``x + value_k eps_k`` on the members ``rows`` (``eps_k ~ N(0, 1)`` of ``x[k]``'s shape,
        from member k's generator), the others' rows as they are."""
        eps = self._draw_rows(rows, tuple(x.shape[1:]), True, x)
        return self._on_rows(x, rows, value[rows] * eps, add=True)

    def _uniform_ops(self) -> list[_Op]:
        """The ops whose draws are uniforms of one size per step, in forward order: dropout
        (``B * F`` per step) and DropConnect with one mask per batch (``out * in``)."""
        return [op for op in self.ops if op.kind == "dropout" or (op.kind == "linear" and op.drops
                                                                  and not op.per_example)]

    @staticmethod
    def _drawers(op: _Op) -> list[int]:
        """The members that draw a mask in ``op``."""
        return op.drops if op.kind == "linear" else op.members

    @staticmethod
    def _probability(op: _Op) -> Tensor:
        """(K, 1, 1) the drop probabilities of ``op``'s masks (DropConnect's or dropout's)."""
        return op.drop if op.kind == "linear" else op.value

    def _uniform_only(self, k: int) -> bool:
        """Member k draws only the masks of ``_uniform_ops`` (no noise, no augmentation, no
        per-example DropConnect): its masks may be drawn ahead for a block of steps."""
        return all(k not in op.members for op in self.ops if op.kind in ("augment", "noise", "linear")) \
            and all(k not in op.drops for op in self.ops if op.per_example)

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

    def _size(self, op: _Op, batch: int) -> tuple[int, ...]:
        """The shape of one member's mask in ``op`` per step: ``(B, F)`` or ``W``'s ``(out, in)``."""
        return tuple(self.params[op.weight].shape[1:]) if op.kind == "linear" else (batch, op.width)

    def predraw(self, batch: int, steps: int, dtype=torch.float32) -> None:
        """Draw the dropout and DropConnect masks of the next ``steps`` full steps of ``batch``
        examples, for the members whose only draws are those masks (see the module docstring);
        the forward passes of those steps then take their ``step`` (0, 1, ...) instead of
        drawing. Each op's buffer holds the rows of the members that draw it here, in member
        order (``_predrawn``), not one per member. Members draw one after another on this
        thread: a thread pool was slower, and the OpenMP teams its threads left behind slowed
        every later run of the process two- to threefold."""
        drops = self._uniform_ops()
        device = self.flat.data.device
        fast = [k for k in range(self.K) if self.active[k] and self._uniform_only(k)
                and any(k in self._drawers(op) for op in drops)]
        self._masks = None
        if device.type != "cpu" or not fast:
            return
        self._predrawn = {id(op): [k for k in fast if k in self._drawers(op)] for op in drops}
        sizes = {id(op): math.prod(self._size(op, batch)) for op in drops}
        masks = {key: m[:steps] for key, m in self._buffers(steps, batch, fast, sizes, dtype).items()}
        at = {key: {k: i for i, k in enumerate(rows)} for key, rows in self._predrawn.items()}

        def draw(k: int) -> None:   # member k's stream: per step, its masks op by op
            mine = [op for op in drops if k in self._drawers(op)]
            u = torch.rand(steps * sum(sizes[id(op)] for op in mine),
                           generator=self.generators[k], dtype=dtype).view(steps, -1)
            start = 0
            for op in mine:
                part = u[:, start:start + sizes[id(op)]]
                masks[id(op)][:, at[id(op)][k]] = self._mask(part, self._probability(op)[k, 0], op.scale[k, 0])
                start += sizes[id(op)]
        for k in fast:
            draw(k)
        self._masks = masks

    def _buffers(self, steps: int, batch: int, fast: list[int], sizes: dict[int, int],
                 dtype: torch.dtype) -> dict[int, Tensor]:
        """id(op) -> (at least ``steps``, members, size) buffers for ``predraw``'s masks, a row
        per member that draws the op there. Kept from block to block while the members that
        draw do not change: allocating them anew each block cost more than drawing the masks
        (first touches)."""
        key = (batch, tuple(fast), tuple(sizes.items()), dtype)
        if self._mask_buffers is not None and self._mask_buffers[0] == key \
                and all(len(m) >= steps for m in self._mask_buffers[1].values()):
            return self._mask_buffers[1]
        self._mask_buffers = None      # the old ones freed before the new are allocated
        masks = {id(op): torch.empty(steps, len(self._predrawn[id(op)]), sizes[id(op)], dtype=dtype)
                 for op in self._uniform_ops()}
        self._mask_buffers = (key, masks)
        return masks

    def _uniform_mask(self, op: _Op, shape: tuple, like: Tensor) -> Tensor:
        """(K, *shape) factors of ``op``'s dropout or DropConnect masks, drawn now (1 for the
        members that draw none)."""
        scale = op.scale.view(-1, *[1] * len(shape))
        value = self._probability(op).view(-1, *[1] * len(shape))
        return self._mask(self._draw(self._drawers(op), shape, False, like), value, scale)

    def _uniform_rows(self, op: _Op, rows: list[int], shape: tuple, like: Tensor, step: int | None) -> Tensor:
        """(len(rows), *shape) factors of this step's dropout or DropConnect ``op`` for the
        members ``rows`` (those drawing it, in order): predrawn, or drawn now, member by member
        in that order."""
        predrawn = self._masks[id(op)][step] if step is not None and self._masks is not None \
            and id(op) in self._masks else None
        fast = self._predrawn[id(op)] if predrawn is not None else []
        if fast == rows:
            return predrawn.view(len(rows), *shape)
        slow = [k for k in rows if k not in fast]       # each from its own generator: order is free
        ones = [1] * len(shape)
        drawn = self._mask(self._draw_rows(slow, shape, False, like),
                           self._probability(op)[slow].view(-1, *ones), op.scale[slow].view(-1, *ones))
        if not fast:
            return drawn
        at, now = {k: i for i, k in enumerate(fast)}, iter(drawn)
        out = torch.empty((len(rows), *shape), device=like.device, dtype=like.dtype)
        for i, k in enumerate(rows):
            out[i] = predrawn[at[k]].view(shape) if k in at else next(now)
        return out

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
                h = self._linear_forward(op, h, training, step)
            elif op.kind == "batchnorm":
                h = op.norm(h, training)
            elif op.kind == "augment":
                h = self._augment(op, h, training)
            elif op.kind == "noise":
                if training and (rows := self._drawing(op.members)):
                    h = self._noise(h, rows, op.value)
            elif training:                                                   # dropout
                if rows := self._drawing(op.members):
                    mask = self._uniform_rows(op, rows, (h.shape[1], op.width), h, step)
                    h = self._on_rows(h, rows, mask, add=False)
            elif op.mode == "classic":                                       # y = (1 - p) x
                h = h * (1 - op.value)
        return h

    def _linear_forward(self, op: _Op, h: Tensor, training: bool, step: int | None) -> Tensor:
        """``h W_k^T + b_k`` per member (``h: (K, B, in)``), in training with member k's weight
        noise or DropConnect mask drawn now (a per-example mask: ``(K, B, out, in)``)."""
        w = self.params[op.weight]                                          # (K, out, in)
        bias = self.params[op.bias].unsqueeze(1) if op.bias is not None else None     # (K, 1, out)
        if training and (rows := self._drawing(op.members)):
            w = self._noise(w, rows, op.value)
        if training and (rows := self._drawing(op.drops)):
            if op.per_example:  # y_kb = (W_k * M_kb / (1 - p_k)) h_kb, as DropConnect's einsum
                mask = self._uniform_mask(op, (h.shape[1], *w.shape[1:]), w)   # (K, B, out, in)
                y = torch.einsum("kbi,kboi->kbo", h, w.unsqueeze(1) * mask)
                return y if bias is None else y + bias
            w = self._on_rows(w, rows, self._uniform_rows(op, rows, tuple(w.shape[1:]), w, step), add=False)
        wt = w.transpose(1, 2)
        return torch.bmm(h, wt) if bias is None else torch.baddbmm(bias, h, wt)      # (K, B, out)

    def drop_predrawn(self) -> None:
        """Forget the masks ``predraw`` drew (at an epoch's end: the next draws anew)."""
        self._masks = None

    @torch.no_grad()
    def write_back(self, k: int) -> None:
        """Copy member k's slices into its own network's parameters (and its batch norm's
        running statistics into its layers)."""
        for stacked, own in zip(self.params, self.member_params[k]):
            own.copy_(stacked[k])
        for op in self.ops:
            if op.kind == "batchnorm":
                op.norm.write_back(k)


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
