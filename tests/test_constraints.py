"""Max-norm: each unit's incoming weight vector projected onto the L2 ball of radius c,
checked against a NumPy reimplementation (a loop over units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from regulab.errors import ConfigError
from regulab.nn import CNN, MLP
from regulab.regularize.constraints import MaxNorm, max_norm_


def np_max_norm(w: np.ndarray, c: float) -> np.ndarray:
    """One unit at a time: rows (or output-channel slices) with norm > c scaled to norm c."""
    out = w.astype(np.float64).copy()
    for i in range(w.shape[0]):
        norm = np.sqrt((out[i] ** 2).sum())
        if norm > c:
            out[i] *= c / norm
    return out


def randn(*shape: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def unit_norms(w: torch.Tensor) -> np.ndarray:
    return np.sqrt((w.detach().double().numpy().reshape(w.shape[0], -1) ** 2).sum(1))


@pytest.mark.parametrize("shape", [(6, 10), (4, 3, 3, 3), (5, 2, 7)])   # Linear, Conv2d, Conv1d
def test_max_norm_matches_numpy(shape):
    w = randn(*shape)
    before = unit_norms(w)
    c = float(np.median(before))                           # about half the units exceed it
    assert (before > c).any() and (before <= c).any()     # both cases are exercised
    expected = np_max_norm(w.numpy(), c)
    original = w.clone()
    assert max_norm_(w, c) is w                            # in place
    np.testing.assert_allclose(w.numpy(), expected, rtol=0, atol=1e-6)
    after = unit_norms(w)
    np.testing.assert_allclose(after[before > c], c, rtol=1e-6)        # scaled to exactly c
    assert torch.equal(w[before <= c], original[before <= c])          # untouched, bit for bit


def test_vectors_within_the_ball_are_unchanged_and_zero_rows_stay_zero():
    w = randn(3, 4, scale=0.1)
    w[1] = 0.0
    original = w.clone()
    max_norm_(w, 3.0)
    assert torch.equal(w, original)


def test_conv_constrains_the_whole_output_channel_slice():
    w = torch.zeros(2, 3, 2, 2)
    w[0] = 1.0          # norm sqrt(12) > 3: the whole (in, kh, kw) slice is one vector
    w[1, 0, 0, 0] = 2.5  # norm 2.5 <= 3 (each of its entries would pass too)
    max_norm_(w, 3.0)
    np.testing.assert_allclose(w[0].numpy(), 3.0 / np.sqrt(12.0), rtol=1e-6)
    assert w[1, 0, 0, 0].item() == 2.5


def test_agrees_with_torch_renorm():
    w = randn(8, 5, seed=3)
    expected = torch.renorm(w, p=2, dim=0, maxnorm=1.5)    # divides by norm + 1e-7
    np.testing.assert_allclose(max_norm_(w.clone(), 1.5).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_max_norm_on_a_model_after_an_optimizer_step():
    c = 0.5
    model = MLP(5, [4, 3], 2)
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(randn(*p.shape, seed=i))
    X, y = randn(16, 5, seed=10), torch.arange(16) % 2
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(model(X), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    weights = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    MaxNorm(c)(model)
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            np.testing.assert_allclose(p.detach().numpy(), np_max_norm(weights[name], c), rtol=0, atol=1e-6)
            assert (unit_norms(p) <= c * (1 + 1e-6)).all()
        else:                                  # biases are not constrained
            assert np.array_equal(p.detach().numpy(), weights[name])


def test_layer_selection_and_conv_models():
    model = CNN((1, 8, 8), [3], 2, kernel_size=3, hidden=[4])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    MaxNorm(1.0, layers=["conv1"])(model)
    assert (unit_norms(model.conv1.weight) <= 1.0 + 1e-6).all()
    for name, p in model.named_parameters():
        if not name.startswith("conv1."):
            assert torch.equal(p, before[name])
    MaxNorm(1.0)(model)                         # default: every Linear/Conv weight
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert (unit_norms(m.weight) <= 1.0 + 1e-6).all()


@pytest.mark.parametrize("bad", [0, 0.0, -1, float("nan"), float("inf"), "3"])
def test_bad_max_norm_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="'regularization.max_norm'") as err:
        MaxNorm(bad)
    assert "\n" not in str(err.value) and "got" in str(err.value)


def test_error_message():
    with pytest.raises(ConfigError) as err:
        MaxNorm(-1)
    assert str(err.value) == "config key 'regularization.max_norm' must be a number > 0.0; got -1"


def test_max_norm_function_rejects_bad_radius():
    with pytest.raises(ValueError, match="max_norm must be a number > 0; got 0"):
        max_norm_(torch.ones(2, 2), 0)


def test_unknown_layer_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        MaxNorm(3.0, layers=["fc7"])(MLP(5, [4, 3], 2))
    msg = str(err.value)
    assert "'MaxNorm.layers'" in msg and "'fc7'" in msg and "fc1, fc2, out" in msg
    assert "\n" not in msg


def test_config_round_trip_and_repr():
    c = MaxNorm(3, layers=["fc1"])
    assert c.get_config() == {"max_norm": 3.0, "layers": ["fc1"]}
    assert MaxNorm(**c.get_config()).get_config() == c.get_config()
    assert repr(c) == "MaxNorm(max_norm=3.0, layers=['fc1'])"


def test_wrapped_layers_are_constrained():
    from regulab.nn.models import Regularizers
    model = MLP(5, [4, 3], 2, regularizers=Regularizers(dropconnect=0.5, weight_noise=0.1))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(50.0)
    MaxNorm(0.5, layers=["fc1"])(model)
    assert (unit_norms(model.fc1.layer.weight) <= 0.5 * (1 + 1e-6)).all()
    assert (unit_norms(model.out.layer.weight) > 0.5).any()
