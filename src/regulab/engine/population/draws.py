"""Each member's random numbers from its own generator, while ``torch.vmap`` runs the members as one.

Under ``vmap(f, randomness="different")`` a random op of the members' one module -- a dropout
mask ``torch.rand(shape, generator=G)``, Gaussian noise, an augmentation's draws -- runs once,
as ``torch.rand((K, *shape), generator=G)``: one draw from one stream, row k handed to member k.
Member k's run alone draws ``torch.rand(shape, generator=g_k)`` from its own noise generator.

``MemberDraws`` is a ``TorchDispatchMode``: it sees the operators vmap runs, on the physical
tensors with the member dimension in front, and replaces each random operator that draws from
the marker generator ``G`` (the one the shared module's layers hold, known by its seed) by K
operators of the member's shape, operator k drawing from member k's own generator::

    rand((K, *s), generator=G)        ->  stack_k rand(s, generator=g_k)      (randn, randint, ...)
    t.uniform_(a, b, generator=G)     ->  t[k].uniform_(a, b, generator=g_k)  for each k (normal_, bernoulli_, ...)
    bernoulli(t, generator=G)         ->  stack_k bernoulli(t[k], generator=g_k)

The members share one module, so each draws the same operators on the same shapes in the same
order as its run alone; its generator then advances exactly as there, and its masks and noise
are that run's bit for bit. An operator this cannot split (``randperm``, a second tensor
argument, a member dimension that is not K) raises ``Unsupported``; ``FunctionalNet`` tries the
forward under the mode when it stacks, and falls back to one population stream if it raises.
Operators that draw from another generator, or from the global RNG (``generator=None``), pass
through as vmap runs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from regulab.engine.population.stacked import Unsupported

__all__ = ["MemberDraws", "MARKER_SEED", "marker_generator"]

MARKER_SEED = 0x7265_6775_6C61_6221 & (2**63 - 1)    # b"regulab!": the marker generator's seed


def marker_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """The generator the shared module's layers hold; ``MemberDraws`` replaces its draws."""
    return torch.Generator(device=device).manual_seed(MARKER_SEED)


def _is_marker(generator: object) -> bool:
    # vmap hands the operator another Python object for the same generator: compare by seed
    return isinstance(generator, torch.Generator) and generator.initial_seed() == MARKER_SEED


class MemberDraws(TorchDispatchMode):
    """Within it, the marker generator's draws come from ``generators[k]`` for member k
    (module docstring); ``len(generators)`` is vmap's member dimension K."""

    def __init__(self, generators: Sequence[torch.Generator]):
        super().__init__()
        self.generators = list(generators)
        self.K = len(self.generators)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _is_marker(kwargs.get("generator")):
            return func(*args, **kwargs)
        name = func._schema.name
        if args and isinstance(args[0], Tensor):
            return self._from_tensor(func, name, args, kwargs)
        return self._factory(func, name, args, kwargs)

    def _member_dim(self, name: str, size: int) -> None:
        if size != self.K:
            raise Unsupported(f"{name} drew {size} rows under vmap for {self.K} members")

    def _from_tensor(self, func, name: str, args: tuple, kwargs: dict) -> Tensor:
        """An operator on a tensor (in place, ``uniform_``; or not, ``bernoulli``): row by row."""
        t, rest = args[0], args[1:]
        if any(isinstance(a, Tensor) for a in rest) or any(isinstance(v, Tensor) for v in kwargs.values()):
            raise Unsupported(f"{name} with more than one tensor argument cannot be drawn per member")
        self._member_dim(name, t.shape[0] if t.dim() else 0)
        if func._schema.is_mutable:
            for k, g in enumerate(self.generators):     # row k: the member's shape and strides
                func(t[k], *rest, **{**kwargs, "generator": g})
            return t
        return torch.stack([func(t[k], *rest, **{**kwargs, "generator": g})
                            for k, g in enumerate(self.generators)])

    def _factory(self, func, name: str, args: tuple, kwargs: dict) -> Tensor:
        """A factory (``rand(size)``, ``randint(high, size)``): K draws of the member's size."""
        at = next((i for i, a in enumerate(args) if isinstance(a, (list, tuple))), None)
        if at is None or not args[at]:
            raise Unsupported(f"{name} has no size with the members in front to draw per member")
        size = list(args[at])
        self._member_dim(name, size[0])
        head, tail = args[:at], args[at + 1:]
        return torch.stack([func(*head, size[1:], *tail, **{**kwargs, "generator": g})
                            for g in self.generators])
