"""The dropout family (inverted and classic dropout, DropConnect, Gaussian input and weight
noise), checked with seeded statistical tests and against naive reimplementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regulab.nn.layers import (ChannelDropout, DropConnect, Dropout, GaussianNoise, StochasticLayer, WeightNoise,
                               dropout, gaussian_noise, set_generator)

MODES = ["inverted", "classic"]
PROBS = [0.1, 0.5, 0.8]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _layer(layer, seed=0):
    layer.generator = _gen(seed)
    return layer


def _kept_value(p, mode):
    return 1.0 / (1.0 - p) if mode == "inverted" else 1.0


# --- dropout: inverted and classic -------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", PROBS)
def test_drop_fraction_and_kept_values(mode, p):
    y = _layer(Dropout(p, mode=mode))(torch.ones(2000, 500)).numpy()
    zero = y == 0
    assert abs(zero.mean() - p) < 0.01, zero.mean()
    np.testing.assert_allclose(y[~zero], _kept_value(p, mode), rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", PROBS)
def test_function_matches_naive_mask(mode, p):
    x = torch.randn(50, 40, generator=_gen(1))
    u = torch.rand(x.shape, generator=_gen(2)).numpy()   # the notes: drop where v < p
    expected = np.where(u < p, 0.0, x.numpy() * _kept_value(p, mode))
    np.testing.assert_allclose(dropout(x, p, True, _gen(2), mode).numpy(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_layer(Dropout(p, mode), 2)(x), dropout(x, p, True, _gen(2), mode))


@pytest.mark.parametrize("p", PROBS)
def test_eval_inverted_is_identity_and_classic_scales(p):
    x = torch.randn(200, 30, generator=_gen(0))
    inverted = _layer(Dropout(p, "inverted")).eval()
    classic = _layer(Dropout(p, "classic")).eval()
    assert torch.equal(inverted(x), x)
    assert torch.equal(classic(x), x * (1 - p))
    assert torch.equal(dropout(x, p, False, mode="classic"), x * (1 - p))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("p", PROBS)
def test_expected_activation_is_preserved(mode, p):
    # the eval output is the mean of the training output over masks: E[y_train] = y_eval
    x = torch.rand(500, generator=_gen(0)) + 0.5
    layer = _layer(Dropout(p, mode))
    train = layer(x.expand(4000, 500)).double()                  # 4000 masks of one input
    evaluated = layer.eval()(x).double()
    assert abs(train.mean().item() / evaluated.mean().item() - 1) < 0.01
    # per unit: within 5 standard errors of the mean of 4000 draws
    se = evaluated * math.sqrt(p / (1 - p) / 4000)
    assert ((train.mean(0) - evaluated).abs() < 5 * se).all()


@pytest.mark.parametrize("mode", MODES)
def test_eval_is_deterministic_and_does_not_draw(mode):
    g = _gen(0)
    state = g.get_state()
    layer = Dropout(0.5, mode).eval()
    layer.generator = g
    x = torch.randn(10, 10, generator=_gen(1))
    assert torch.equal(layer(x), layer(x))
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("mode", MODES)
def test_seeds_decide_the_mask(mode):
    x = torch.ones(100, 100)
    a, b, c = _layer(Dropout(0.3, mode), 5), _layer(Dropout(0.3, mode), 5), _layer(Dropout(0.3, mode), 6)
    ya = a(x)
    assert torch.equal(ya, b(x))
    assert not torch.equal(ya, c(x))
    assert not torch.equal(ya, a(x))   # the generator moves on


def test_no_global_rng_with_a_generator():
    layers = (Dropout(0.5, "classic"), DropConnect(nn.Linear(5, 4), 0.5), GaussianNoise(1.0),
              WeightNoise(nn.Linear(5, 4), 0.1), DropConnect(nn.Linear(5, 4), 0.5, per_example=True))
    state = torch.get_rng_state()   # after construction: nn.Linear draws its init from the global RNG
    for layer in layers:
        _layer(layer)(torch.ones(3, 5))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("mode", MODES)
def test_sampling_draws_in_eval_mode(mode):
    p = 0.4
    layer = _layer(Dropout(p, mode)).eval()
    layer.sampling = True
    y = layer(torch.ones(200, 200)).numpy()
    assert abs((y == 0).mean() - p) < 0.02
    # the training rule: classic keeps 1 (no (1-p) factor), inverted keeps 1/(1-p)
    np.testing.assert_allclose(y[y != 0], _kept_value(p, mode), rtol=1e-6)
    assert "sampling=True" in repr(layer)
    layer.sampling = False
    assert (layer(torch.ones(5, 5)) != 0).all()


def test_zero_drop_prob_is_identity_in_both_modes():
    x = torch.randn(5, 5, generator=_gen(0))
    for mode in MODES:
        assert torch.equal(dropout(x, 0.0, True, _gen(0), mode), x)
        assert torch.equal(dropout(x, 0.0, False, _gen(0), mode), x)


def test_extra_repr():
    assert repr(Dropout(0.25, "classic")) == "Dropout(drop_prob=0.25, mode='classic')"
    assert "drop_prob=0.3, per_example=True" in repr(DropConnect(nn.Linear(2, 2), 0.3, per_example=True))
    assert "std=0.5" in repr(GaussianNoise(0.5))
    assert "std=0.2" in repr(WeightNoise(nn.Conv1d(1, 1, 3), 0.2))


# --- DropConnect -------------------------------------------------------------------------------

def _linear(n_in, n_out, seed=0, bias=True, dtype=torch.float32):
    layer = nn.Linear(n_in, n_out, bias=bias, dtype=dtype)
    g = _gen(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g))
        if bias:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g))
    return layer


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_channel_dropout_drops_whole_channels_as_a_naive_mask(mode, dims):
    """One uniform per (example, channel), drawn from the generator: dropped where v < p;
    inverted scales the kept channels by 1 / (1 - p), classic keeps them and scales by (1 - p)
    at inference; unbatched input draws one per channel."""
    p, x = 0.4, torch.rand(6, 5, *[3] * dims) + 0.5
    y = _layer(ChannelDropout(p, dims, mode), seed=3)(x)
    v = torch.rand(6, 5, generator=_gen(3))
    m = (v >= p).float().view(6, 5, *[1] * dims)
    torch.testing.assert_close(y, x * m / (1 - p) if mode == "inverted" else x * m)
    per_channel = (y == 0).flatten(2)
    assert torch.equal(per_channel.all(2), per_channel.any(2)), "a channel is dropped whole or kept"
    assert 0 < int((y == 0).flatten(2).all(2).sum()) < 30
    layer = ChannelDropout(p, dims, mode).eval()
    torch.testing.assert_close(layer(x), x if mode == "inverted" else (1 - p) * x)
    one = _layer(ChannelDropout(p, dims, mode), seed=3)(x[0])                   # (C, *S)
    torch.testing.assert_close(one, x[0] * (torch.rand(5, generator=_gen(3)) >= p).float().view(5, *[1] * dims)
                               / (1 - p if mode == "inverted" else 1))


def test_channel_dropout_refuses_other_shapes_and_dims():
    with pytest.raises(ValueError, match=r"dims=2.*got shape \(4, 5\)"):
        ChannelDropout(0.5, 2)(torch.ones(4, 5))
    with pytest.raises(ValueError, match="dims must be 1, 2 or 3"):
        ChannelDropout(0.5, 4)
    assert "dims=1" in repr(ChannelDropout(0.2, 1))


@pytest.mark.parametrize("p", PROBS)
def test_dropconnect_drops_weights(p):
    inner = _linear(200, 300, bias=False)
    layer = _layer(DropConnect(inner, p))
    w_seen = layer(torch.eye(200)).T          # identity inputs read off the masked weights (out, in)
    dropped = w_seen == 0
    assert abs(dropped.float().mean().item() - p) < 0.01
    torch.testing.assert_close(w_seen[~dropped], inner.weight[~dropped] / (1 - p))
    # one mask for the whole batch: two copies of the identity see the same weights
    twice = layer(torch.cat([torch.eye(200), torch.eye(200)]))
    assert torch.equal(twice[:200], twice[200:])


def test_dropconnect_matches_naive_mask_and_keeps_bias():
    p = 0.3
    inner = _linear(6, 4)
    x = torch.randn(8, 6, generator=_gen(1))
    keep = torch.rand(inner.weight.shape, generator=_gen(2)) >= p
    expected = x @ (inner.weight * keep / (1 - p)).T + inner.bias
    torch.testing.assert_close(_layer(DropConnect(inner, p), 2)(x), expected)


@pytest.mark.parametrize("per_example", [False, True])
def test_dropconnect_mean_over_masks_is_the_plain_layer(per_example):
    p = 0.5
    inner = _linear(20, 5, dtype=torch.float64)
    layer = _layer(DropConnect(inner, p, per_example=per_example))
    x = torch.randn(20, generator=_gen(1), dtype=torch.float64)
    with torch.no_grad():
        ys = torch.stack([layer(x[None])[0] for _ in range(4000)]) if not per_example \
            else layer(x.expand(4000, 20))
        plain = inner(x)
    # y_o = sum_i W_oi x_i m_oi / (1-p) + b_o: variance p/(1-p) * sum_i (W_oi x_i)^2
    se = torch.sqrt(p / (1 - p) * ((inner.weight * x) ** 2).sum(1) / 4000)
    assert ((ys.mean(0) - plain).abs() < 5 * se).all()
    assert torch.equal(layer.eval()(x[None])[0], plain)


def test_dropconnect_per_example_masks_differ_and_match_a_naive_loop():
    p, B = 0.4, 16
    inner = _linear(7, 5)
    x = torch.randn(B, 7, generator=_gen(1))
    y = _layer(DropConnect(inner, p, per_example=True), 3)(x)
    keep = torch.rand((B, 5, 7), generator=_gen(3)) >= p       # the masks (B, out, in)
    naive = torch.stack([F.linear(x[b], inner.weight * keep[b] / (1 - p), inner.bias) for b in range(B)])
    torch.testing.assert_close(y, naive)
    # the same input in every row gets a different weight mask per row
    same = _layer(DropConnect(inner, p, per_example=True))(x[:1].expand(B, 7))
    assert len({tuple(r.tolist()) for r in same}) == B
    # extra dims between batch and features share the example's mask
    x3 = torch.randn(B, 3, 7, generator=_gen(4))
    y3 = _layer(DropConnect(inner, p, per_example=True), 3)(x3)
    naive3 = torch.stack([F.linear(x3[b], inner.weight * keep[b] / (1 - p), inner.bias) for b in range(B)])
    torch.testing.assert_close(y3, naive3)


@pytest.mark.parametrize("conv, shape", [(nn.Conv1d(3, 4, 3, padding=1), (2, 3, 9)),
                                         (nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 6))],
                         ids=["conv1d", "conv2d"])
def test_dropconnect_conv(conv, shape):
    p = 0.5
    x = torch.randn(shape, generator=_gen(1))
    keep = torch.rand(conv.weight.shape, generator=_gen(2)) >= p
    convf = F.conv1d if conv.weight.dim() == 3 else F.conv2d
    expected = convf(x, conv.weight * keep / (1 - p), conv.bias, padding=1)
    layer = _layer(DropConnect(conv, p), 2)
    torch.testing.assert_close(layer(x), expected)
    assert torch.equal(layer.eval()(x), conv(x))
    with pytest.raises(ValueError, match="per_example"):
        DropConnect(conv, p, per_example=True)


@pytest.mark.parametrize("per_example", [False, True])
def test_dropconnect_gradient_reaches_only_kept_weights(per_example):
    p, B = 0.5, 1 if per_example else 4
    inner = _linear(10, 6)
    x = torch.randn(B, 10, generator=_gen(1))
    _layer(DropConnect(inner, p, per_example=per_example), 2)(x).sum().backward()
    shape = (B, 6, 10) if per_example else (6, 10)
    keep = (torch.rand(shape, generator=_gen(2)) >= p).reshape(6, 10)
    # dL/dW_oi = m_oi / (1-p) * sum_b x_bi; zero exactly where dropped
    expected = keep / (1 - p) * x.sum(0)
    torch.testing.assert_close(inner.weight.grad, expected)
    assert (inner.weight.grad[~keep] == 0).all() and (inner.weight.grad[keep] != 0).all()
    torch.testing.assert_close(inner.bias.grad, torch.full((6,), float(B)))


def test_dropconnect_state_dict_and_sampling():
    model = nn.Sequential(DropConnect(_linear(4, 3), 0.5))
    assert set(model.state_dict()) == {"0.layer.weight", "0.layer.bias"}
    layer = _layer(model[0]).eval()
    x = torch.randn(2, 4, generator=_gen(1))
    assert torch.equal(layer(x), layer.layer(x))
    layer.sampling = True
    assert not torch.equal(layer(x), layer.layer(x))


# --- Gaussian noise on inputs and weights ------------------------------------------------------

@pytest.mark.parametrize("std", [0.1, 1.0, 3.0])
def test_gaussian_noise_std_and_eval(std):
    layer = _layer(GaussianNoise(std))
    x = torch.randn(1000, 100, generator=_gen(1), dtype=torch.float64)
    noise = (layer(x) - x).numpy()
    assert abs(noise.std() / std - 1) < 0.01        # se of a std estimate: 1/sqrt(2n) = 0.0022
    assert abs(noise.mean()) < 5 * std / math.sqrt(noise.size)
    layer.eval()
    assert torch.equal(layer(x), x)
    layer.sampling = True
    assert not torch.equal(layer(x), x)
    assert torch.equal(gaussian_noise(x, 0.0, True, _gen(0)), x)
    assert torch.equal(gaussian_noise(x, std, False, _gen(0)), x)


@pytest.mark.parametrize("std", [0.05, 0.5])
def test_weight_noise(std):
    inner = _linear(200, 300, bias=False, dtype=torch.float64)
    before = inner.weight.detach().clone()
    layer = _layer(WeightNoise(inner, std))
    w_seen = layer(torch.eye(200, dtype=torch.float64)).T          # (out, in)
    perturbation = (w_seen - before).detach().numpy()
    assert abs(perturbation.std() / std - 1) < 0.01
    assert abs(perturbation.mean()) < 5 * std / math.sqrt(perturbation.size)
    assert torch.equal(inner.weight, before)                        # the stored weight is untouched
    x = torch.randn(5, 200, generator=_gen(1), dtype=torch.float64)
    assert torch.equal(layer.eval()(x), inner(x))


def test_weight_noise_gradient_and_bias():
    inner = _linear(6, 4)
    x = torch.randn(3, 6, generator=_gen(1))
    layer = _layer(WeightNoise(inner, 0.3), 2)
    y = layer(x)
    eps = 0.3 * torch.randn(inner.weight.shape, generator=_gen(2))
    torch.testing.assert_close(y, x @ (inner.weight + eps).T + inner.bias)
    y.sum().backward()
    # d(W + eps)/dW = I: the same gradient as the noiseless layer, sum_b x_b for every row
    torch.testing.assert_close(inner.weight.grad, x.sum(0).expand(4, 6))


def test_weight_noise_conv():
    conv = nn.Conv2d(2, 3, 3)
    x = torch.randn(2, 2, 5, 5, generator=_gen(1))
    eps = 0.1 * torch.randn(conv.weight.shape, generator=_gen(2))
    layer = _layer(WeightNoise(conv, 0.1), 2)
    torch.testing.assert_close(layer(x), F.conv2d(x, conv.weight + eps, conv.bias))
    assert torch.equal(layer.eval()(x), conv(x))


def test_set_generator_reaches_the_whole_family():
    model = nn.Sequential(GaussianNoise(0.1), DropConnect(nn.Linear(4, 4), 0.2), nn.ReLU(),
                          Dropout(0.5, "classic"), WeightNoise(nn.Conv1d(1, 1, 3), 0.1))
    g = _gen(0)
    set_generator(model, g)
    family = [m for m in model.modules() if isinstance(m, StochasticLayer)]
    assert len(family) == 4 and all(m.generator is g for m in family)


# --- bad parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_drop_prob(p):
    for make in (lambda: Dropout(p), lambda: Dropout(p, "classic"),
                 lambda: DropConnect(nn.Linear(2, 2), p),
                 lambda: dropout(torch.ones(3), p, True, _gen(0), "classic")):
        with pytest.raises(ValueError, match=rf"drop_prob .*got {p!r}"):
            make()


@pytest.mark.parametrize("std", [-0.1, float("nan"), float("inf")])
def test_bad_std(std):
    for make in (lambda: GaussianNoise(std), lambda: WeightNoise(nn.Linear(2, 2), std),
                 lambda: gaussian_noise(torch.ones(3), std)):
        with pytest.raises(ValueError, match=rf"std .*got {std!r}"):
            make()


def test_bad_mode_and_layers():
    with pytest.raises(ValueError, match="mode .*'scaled'"):
        Dropout(0.5, mode="scaled")
    with pytest.raises(ValueError, match="mode"):
        dropout(torch.ones(3), 0.5, mode="scaled")
    with pytest.raises(TypeError, match="layer .*ReLU"):
        DropConnect(nn.ReLU(), 0.5)
    with pytest.raises(TypeError, match="layer .*BatchNorm1d"):
        WeightNoise(nn.BatchNorm1d(3), 0.5)
    with pytest.raises(ValueError, match=r"per_example.*\(7,\)"):
        _layer(DropConnect(nn.Linear(7, 2), 0.5, per_example=True))(torch.ones(7))
