"""TensorLoader: every row once per epoch, batch sizes, seeded order."""

from __future__ import annotations

import pytest
import torch

from regulab.data.loader import TensorLoader


def _data(n):
    X = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 3)  # row i is [i, i, i]
    y = torch.arange(n)
    return X, y


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _order(loader):
    return torch.cat([yb for _, yb in loader]).tolist()


@pytest.mark.parametrize("n, batch_size", [(10, 4), (10, 10), (10, 1), (7, 3), (5, 100)])
def test_one_epoch_yields_every_row_once(n, batch_size):
    X, y = _data(n)
    loader = TensorLoader(X, y, batch_size, generator=_gen(0))
    seen = []
    for xb, yb in loader:
        # X and y rows stay paired
        assert torch.equal(xb[:, 0].long(), yb) and xb.shape[1:] == (3,)
        seen += yb.tolist()
    assert sorted(seen) == list(range(n))


# (n, batch_size, drop_last) -> batch sizes
BATCHES = [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (12, 4, False, [4, 4, 4]),
    (12, 4, True, [4, 4, 4]),
    (3, 5, False, [3]),
    (3, 5, True, []),
    (7, 1, True, [1] * 7),
]


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", BATCHES)
@pytest.mark.parametrize("shuffle", [True, False])
def test_batch_sizes(n, batch_size, drop_last, sizes, shuffle):
    X, y = _data(n)
    loader = TensorLoader(X, y, batch_size, shuffle=shuffle, generator=_gen(0), drop_last=drop_last)
    assert [len(yb) for _, yb in loader] == sizes
    assert len(loader) == len(sizes)


def test_drop_last_rows_are_distinct_and_complete_minus_remainder():
    X, y = _data(10)
    order = _order(TensorLoader(X, y, 4, generator=_gen(1), drop_last=True))
    assert len(order) == 8 and len(set(order)) == 8


def test_same_seed_same_order_and_epochs_differ():
    X, y = _data(50)
    a = TensorLoader(X, y, 8, generator=_gen(3))
    b = TensorLoader(X, y, 8, generator=_gen(3))
    first_a, first_b = _order(a), _order(b)
    assert first_a == first_b
    second_a = _order(a)
    assert second_a != first_a and sorted(second_a) == list(range(50))
    assert _order(b) == second_a
    assert _order(TensorLoader(X, y, 8, generator=_gen(4))) != first_a
    assert first_a != list(range(50))  # shuffled at all


def test_order_is_the_generators_permutation():
    X, y = _data(20)
    expected = torch.randperm(20, generator=_gen(5)).tolist()
    assert _order(TensorLoader(X, y, 6, generator=_gen(5))) == expected


def test_no_shuffle_is_in_order():
    X, y = _data(11)
    loader = TensorLoader(X, y, 4, shuffle=False)
    for _ in range(2):
        assert _order(loader) == list(range(11))
    xs = torch.cat([xb for xb, _ in loader])
    assert torch.equal(xs, X)


def test_no_shuffle_does_not_touch_generator_or_global_rng():
    X, y = _data(11)
    g = _gen(0)
    g_state, global_state = g.get_state(), torch.get_rng_state()
    _order(TensorLoader(X, y, 4, shuffle=False, generator=g))
    _order(TensorLoader(X, y, 4, shuffle=True, generator=g))
    assert torch.equal(torch.get_rng_state(), global_state)
    assert not torch.equal(g.get_state(), g_state)


def test_multidimensional_samples():
    X = torch.randn(9, 1, 4, 4, generator=_gen(0))
    y = torch.arange(9)
    for xb, yb in TensorLoader(X, y, 4, generator=_gen(0)):
        assert xb.shape[1:] == (1, 4, 4)
        assert torch.equal(xb, X[yb])


@pytest.mark.parametrize("nx, ny", [(10, 9), (0, 1), (5, 6)])
def test_length_mismatch(nx, ny):
    with pytest.raises(ValueError, match=f"{nx}.*{ny}"):
        TensorLoader(torch.zeros(nx, 2), torch.zeros(ny), 4)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(4, 2), torch.zeros(4), batch_size)


def test_empty_data():
    loader = TensorLoader(torch.zeros(0, 2), torch.zeros(0), 4)
    assert len(loader) == 0 and list(loader) == []


@pytest.mark.parametrize("gather_bytes", [1, 2 * 7 * 32, 10**9])    # 1 batch, 2 (rows of 32 bytes), all
@pytest.mark.parametrize("drop_last", [False, True])
def test_batches_gathered_in_blocks_equal_one_gather_per_batch(monkeypatch, gather_bytes, drop_last):
    """Rows gathered a block at a time (``GATHER_BYTES``), batches as views of the block: the
    same batches, in the same order, as indexing each batch with its slice of the permutation."""
    import regulab.data.loader as loader_mod
    monkeypatch.setattr(loader_mod, "GATHER_BYTES", gather_bytes)
    X, y = torch.randn(23, 3, 2), torch.arange(23)
    got = list(TensorLoader(X, y, 7, generator=torch.Generator().manual_seed(3), drop_last=drop_last))
    order = torch.randperm(23, generator=torch.Generator().manual_seed(3))
    stop = 21 if drop_last else 23
    want = [(X[order[i:min(i + 7, stop)]], y[order[i:min(i + 7, stop)]]) for i in range(0, stop, 7)]
    assert len(got) == len(want) == (3 if drop_last else 4)
    for (xb, yb), (xw, yw) in zip(got, want):
        assert torch.equal(xb, xw) and torch.equal(yb, yw) and xb.is_contiguous()
