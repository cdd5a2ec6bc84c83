"""The examples a population trains and scores on: one split all members share, or each
member's own (bagging).

Members usually share their data: one ``X`` (n, ...) and ``y``, which each member reads in its
own order, ``X[order_k]``. A member trained on a bootstrap resample (``data.bootstrap``,
bagging: Breiman, 1996) has its own rows, and, with a preprocessor fitted on them, its own
validation inputs too. ``MemberRows`` holds either: shared, or stacked ``(K, n, ...)`` when
the members' tensors differ (same shapes), so member k's batch is ``X[k, order_k]`` -- the rows
its run alone takes -- gathered for all members at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from regulab.engine.population.stacked import Unsupported

__all__ = ["MemberRows", "OWN_ROWS_BYTES"]

OWN_ROWS_BYTES = 1 << 30    # members' own rows stacked beyond this: the runs train alone


class MemberRows:
    """A split's examples for ``K`` members, from each member's ``(X, y)`` in ``pairs``:
    shared (``own`` False: ``X`` (n, ...)) when all are equal, else stacked (``X`` (K, n, ...)).
    ``what`` names the split in errors."""

    def __init__(self, pairs: Sequence[tuple[Tensor, Tensor]], what: str):
        X0, y0 = pairs[0]
        self.K = len(pairs)
        self.own = any(not (torch.equal(X, X0) and torch.equal(y, y0)) for X, y in pairs[1:])
        if not self.own:
            self.X, self.y = X0, y0
            return
        layouts = {(tuple(X.shape), tuple(y.shape), X.dtype, y.dtype) for X, y in pairs}
        if len(layouts) > 1:
            raise Unsupported(f"the members' {what} examples differ in number or shape")
        size = self.K * (X0.nbytes + y0.nbytes)
        if size > OWN_ROWS_BYTES:
            raise Unsupported(f"the members' {what} examples differ (bagging) and would take "
                              f"{size / 2**20:.0f} MiB stacked, over {OWN_ROWS_BYTES / 2**20:.0f} MiB")
        self.X = torch.stack([X for X, _ in pairs])
        self.y = torch.stack([y for _, y in pairs])

    @property
    def n(self) -> int:
        """The number of examples (each member's)."""
        return self.X.shape[1] if self.own else self.X.shape[0]

    @property
    def device(self) -> torch.device:
        return self.X.device

    def member(self, k: int) -> tuple[Tensor, Tensor]:
        """Member k's ``(X, y)``."""
        return (self.X[k], self.y[k]) if self.own else (self.X, self.y)

    def batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """``(K, B, ...)`` inputs and targets: member k's examples ``idx[k]`` (K, B) of its rows."""
        if self.own:
            idx = idx + torch.arange(self.K, device=idx.device)[:, None] * self.n
            X, y = self.X.flatten(0, 1), self.y.flatten(0, 1)
        else:
            X, y = self.X, self.y
        flat = idx.reshape(-1)
        return (X.index_select(0, flat).view(*idx.shape, *X.shape[1:]),
                y.index_select(0, flat).view(*idx.shape, *y.shape[1:]))

    def chunk(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """Examples ``i:j`` of every member, ``(K, j - i, ...)`` (shared ones expanded, not copied)."""
        if self.own:
            return self.X[:, i:j], self.y[:, i:j]
        xb, yb = self.X[i:j], self.y[i:j]
        return xb.unsqueeze(0).expand(self.K, *xb.shape), yb.unsqueeze(0).expand(self.K, *yb.shape)

    def select(self, keep: Sequence[int]) -> MemberRows:
        """These rows for the members ``keep`` only (a population that unstacked the others)."""
        out = object.__new__(MemberRows)
        out.K, out.own = len(keep), self.own
        index = torch.tensor(list(keep), device=self.device)
        out.X, out.y = (self.X.index_select(0, index), self.y.index_select(0, index)) if self.own \
            else (self.X, self.y)
        return out
