"""``engine.population.draws.MemberDraws``: under ``vmap``, each member's draws from its own
generator -- recomputed here by drawing each member's shape alone from a copy of its generator."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from regulab.engine.population.draws import MemberDraws, marker_generator
from regulab.engine.population.stacked import Unsupported

K = 3


def seeds():
    return [torch.Generator().manual_seed(100 + k) for k in range(K)]


def draws(x, g):
    """What a module's forward might draw on one member's ``x`` (5, 6) from ``g``."""
    return (torch.rand(x.shape, generator=g, dtype=x.dtype),
            torch.randn(x.shape, generator=g),
            torch.empty_like(x).uniform_(-2, 3, generator=g),
            torch.empty_like(x).bernoulli_(0.3, generator=g),
            torch.bernoulli(torch.full_like(x, 0.6), generator=g),
            torch.randint(7, (4,), generator=g),
            torch.rand((3, 2), generator=g, dtype=torch.float64),
            torch.empty_like(x).t().normal_(1.0, 2.0, generator=g))       # a transposed view


def test_each_member_draws_what_it_draws_alone_in_its_order():
    x, marker, gens = torch.randn(K, 5, 6), marker_generator(), seeds()
    with MemberDraws(gens):
        got = vmap(lambda xk: draws(xk, marker), randomness="different")(x)
    alone = [draws(x[k], torch.Generator().manual_seed(100 + k)) for k in range(K)]
    for i, batched in enumerate(got):
        for k in range(K):
            assert torch.equal(batched[k], alone[k][i]), (i, k)
    for k, g in enumerate(gens):    # each generator advanced exactly as its run's
        own = torch.Generator().manual_seed(100 + k)
        draws(x[k], own)
        assert torch.equal(g.get_state(), own.get_state())
    assert not torch.equal(got[0][0], got[0][1]), "members draw other numbers"


def test_other_generators_and_the_global_rng_pass_through():
    x, other = torch.randn(K, 4), torch.Generator().manual_seed(5)
    expected = torch.rand((K, 4), generator=torch.Generator().manual_seed(5))
    with MemberDraws(seeds()):
        got = vmap(lambda xk: torch.rand(xk.shape, generator=other), randomness="different")(x)
    assert torch.equal(got, expected)
    gens = seeds()
    with MemberDraws(gens):
        vmap(lambda xk: torch.rand(xk.shape), randomness="different")(x)
    assert all(torch.equal(g.get_state(), h.get_state()) for g, h in zip(gens, seeds()))


@pytest.mark.parametrize("draw", [
    lambda xk, g: torch.randperm(4, generator=g),                        # no size with the members
    lambda xk, g: torch.normal(xk, torch.ones_like(xk), generator=g),    # two tensors
], ids=["randperm", "two-tensors"])
def test_draws_that_do_not_split_are_refused(draw):
    marker = marker_generator()
    with pytest.raises(Unsupported), MemberDraws(seeds()):
        vmap(lambda xk: draw(xk, marker), randomness="different")(torch.randn(K, 4))


def test_a_member_dimension_other_than_the_generators_is_refused():
    marker = marker_generator()
    with pytest.raises(Unsupported, match="drew 2 rows under vmap for 3 members"), MemberDraws(seeds()):
        vmap(lambda xk: torch.rand(xk.shape, generator=marker), randomness="different")(torch.randn(2, 4))
