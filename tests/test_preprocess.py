"""Preprocessor checked against scikit-learn's scalers and a NumPy unit-norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from regulab.data.preprocess import Preprocessor

SKLEARN = {"standardize": StandardScaler, "minmax": MinMaxScaler}


def _data(n=300, d=6, seed=0):
    """Features with different offsets and scales; column 2 is constant (exactly representable)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, d) + rng.uniform(-3, 3, d)
    X[:, 2] = 2.0
    return X.astype(np.float32)


def _fit(kind, X_train):
    pre = Preprocessor(kind, X_train.shape[1:])
    return pre.fit(torch.from_numpy(X_train))


def _apply(pre, X):
    return pre(torch.from_numpy(X)).numpy()


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_matches_sklearn(kind):
    X = _data()
    train, other = X[:200], X[200:]
    other = other.copy()
    other[:, 2] = 5.0  # the constant feature takes a new value outside the training split
    pre = _fit(kind, train)
    ref = SKLEARN[kind]().fit(train.astype(np.float64))
    for rows in (train, other):
        np.testing.assert_allclose(_apply(pre, rows), ref.transform(rows.astype(np.float64)),
                                   atol=1e-5, rtol=1e-5)
    # the constant feature has scale 1 (as in scikit-learn) and maps to 0 on the training split
    assert pre.scale[2].item() == 1.0
    np.testing.assert_array_equal(_apply(pre, train)[:, 2], 0.0)


def test_standardize_formula():
    X = _data()
    pre = _fit("standardize", X)
    mean, std = X.astype(np.float64).mean(0), X.astype(np.float64).std(0)  # population std
    std[std == 0] = 1.0
    np.testing.assert_allclose(pre.shift.numpy(), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pre.scale.numpy(), std, rtol=1e-5, atol=1e-6)
    Z = _apply(pre, X)
    np.testing.assert_allclose(Z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(Z.std(0)[[0, 1, 3, 4, 5]], 1.0, atol=1e-5)


def test_minmax_formula_and_range():
    X = _data()
    pre = _fit("minmax", X)
    Z = _apply(pre, X)
    assert Z.min() >= -1e-6 and Z.max() <= 1 + 1e-6
    for j in (0, 1, 3, 4, 5):
        col = X[:, j].astype(np.float64)
        np.testing.assert_allclose(Z[:, j], (col - col.min()) / (col.max() - col.min()), atol=1e-5)




@pytest.mark.parametrize("d, value", [
    (3, 2.0), (3, 3.7), (3, 1000.1), (3, -0.4242), (1, 2.0), (1, 0.3),
    (1, 3.7), (1, 1000.1),   # float32 sums once left these a std of one ulp
])
def test_standardize_constant_feature_gets_scale_one(d, value):
    X = np.random.default_rng(0).normal(size=(97, d)).astype(np.float32)
    X[:, 0] = value
    pre = _fit("standardize", X)
    ref = StandardScaler().fit(X.astype(np.float64))
    assert pre.scale[0].item() == 1.0
    new = X.copy()
    new[:, 0] = value + 1.0
    for rows in (X, new):
        np.testing.assert_allclose(_apply(pre, rows), ref.transform(rows.astype(np.float64)),
                                   atol=1e-4, rtol=1e-5)


def test_minmax_constant_feature_non_representable():
    # minmax compares max and min exactly, so any constant works
    for value in (3.7, 1000.1):
        X = np.random.default_rng(0).normal(size=(97, 3)).astype(np.float32)
        X[:, 1] = value
        pre = _fit("minmax", X)
        assert pre.scale[1].item() == 1.0
        np.testing.assert_array_equal(_apply(pre, X)[:, 1], 0.0)


@pytest.mark.parametrize("shape", [(10, 5), (6, 1, 4, 4), (4, 3, 2)])
def test_unit_norm(shape):
    X = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    pre = Preprocessor("unit_norm", shape[1:]).fit(torch.from_numpy(X))
    Z = _apply(pre, X)
    assert Z.shape == X.shape
    flat = X.reshape(len(X), -1).astype(np.float64)
    expected = flat / np.sqrt((flat ** 2).sum(1, keepdims=True))
    np.testing.assert_allclose(Z.reshape(len(X), -1), expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(Z.reshape(len(X), -1), axis=1), 1.0, atol=1e-5)


def test_unit_norm_zero_row_stays_zero():
    X = torch.zeros(2, 3)
    X[1] = torch.tensor([3.0, 4.0, 0.0])
    Z = Preprocessor("unit_norm", (3,))(X)
    assert torch.isfinite(Z).all()
    torch.testing.assert_close(Z, torch.tensor([[0.0, 0.0, 0.0], [0.6, 0.8, 0.0]]))


@pytest.mark.parametrize("shape", [(10, 5), (6, 1, 4, 4)])
def test_none_is_identity(shape):
    X = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    pre = Preprocessor("none", shape[1:]).fit(X)
    assert torch.equal(pre(X), X)
    assert torch.equal(pre.shift, torch.zeros(shape[1:])) and torch.equal(pre.scale, torch.ones(shape[1:]))


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_per_pixel_statistics_on_images(kind):
    X = np.random.default_rng(2).normal(size=(50, 1, 4, 4)).astype(np.float32) * 3 + 1
    pre = _fit(kind, X)
    ref = SKLEARN[kind]().fit(X.reshape(50, -1).astype(np.float64))
    np.testing.assert_allclose(_apply(pre, X).reshape(50, -1), ref.transform(X.reshape(50, -1)),
                               atol=1e-5)


@pytest.mark.parametrize("kind", ["standardize", "minmax"])
def test_statistics_come_only_from_fit_rows(kind):
    X = _data()
    train_idx, val_idx = np.arange(200), np.arange(200, 300)
    pre = _fit(kind, X[train_idx])
    X2 = X.copy()
    X2[val_idx] = X2[val_idx] * 100 + 50  # wildly different validation rows
    pre2 = _fit(kind, X2[train_idx])
    assert torch.equal(pre.shift, pre2.shift) and torch.equal(pre.scale, pre2.scale)
    np.testing.assert_array_equal(_apply(pre, X[train_idx]), _apply(pre2, X2[train_idx]))
    # and they differ from the statistics of all rows
    everything = _fit(kind, X2)
    assert not torch.equal(pre.shift, everything.shift)


@pytest.mark.parametrize("kind", ["standardize", "minmax", "unit_norm", "none"])
def test_state_dict_round_trip(kind):
    X = _data()
    pre = _fit(kind, X[:200])
    sd = pre.state_dict()
    assert set(sd) == {"shift", "scale"}
    fresh = Preprocessor(kind, X.shape[1:])
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(_apply(fresh, X[200:]), _apply(pre, X[200:]))
    if kind in ("standardize", "minmax"):
        # fitted statistics really are in the state dict, not defaults
        assert not torch.equal(sd["shift"], torch.zeros_like(sd["shift"]))
        assert not torch.equal(sd["scale"], torch.ones_like(sd["scale"]))


def test_state_dict_travels_inside_a_model():
    pre = _fit("standardize", _data())
    model = torch.nn.Sequential(pre, torch.nn.Linear(6, 2))
    assert {"0.shift", "0.scale"} <= set(model.state_dict())


def test_bad_kind():
    with pytest.raises(ValueError, match="standardise"):
        Preprocessor("standardise", (3,))


def test_fit_returns_self_and_converts_dtype():
    X = torch.from_numpy(_data().astype(np.float64))
    pre = Preprocessor("standardize", (6,))
    assert pre.fit(X) is pre
    assert pre.shift.dtype == torch.float32
