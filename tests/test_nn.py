"""Dropout, weight initialization and model building, checked against the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from regulab.config.sections import ACTIVATIONS, INIT_SCHEMES, ModelConfig
from regulab.nn import (CNN, MLP, Dropout, LinearModel, Pipeline, build_model, dropout, init_tensor,
                        init_weights, set_generator)
from regulab.nn.init import fans


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- dropout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_fraction_and_scale(p):
    layer = Dropout(p)
    layer.generator = _gen(0)
    y = layer(torch.ones(1000, 1000)).numpy()
    zero = y == 0
    assert abs(zero.mean() - p) < 0.01, zero.mean()
    np.testing.assert_allclose(y[~zero], 1.0 / (1.0 - p), rtol=1e-6)
    # E[y] = x: the mean stays near 1 (std of the mean is sqrt(p / (1-p) / 1e6))
    assert abs(y.mean() - 1.0) < 5 * math.sqrt(p / (1 - p) / 1e6)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_function_matches_layer(p):
    x = torch.randn(50, 40, generator=_gen(1))
    layer = Dropout(p)
    layer.generator = _gen(2)
    torch.testing.assert_close(layer(x), dropout(x, p, True, _gen(2)))
    # the mask is the rand draw >= p, as a naive loop over the draws says
    u = torch.rand(x.shape, generator=_gen(2)).numpy()
    expected = np.where(u >= p, x.numpy() / (1 - p), 0.0)
    np.testing.assert_allclose(dropout(x, p, True, _gen(2)).numpy(), expected, rtol=1e-6, atol=1e-7)


def test_dropout_eval_and_zero_are_identity():
    x = torch.randn(20, 30, generator=_gen(0))
    layer = Dropout(0.5)
    layer.generator = _gen(0)
    layer.eval()
    assert torch.equal(layer(x), x)
    zero = Dropout(0.0)
    zero.generator = _gen(0)
    assert torch.equal(zero(x), x)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)


def test_dropout_eval_and_zero_do_not_draw():
    g = _gen(0)
    state = g.get_state()
    layer = Dropout(0.5).eval()
    layer.generator = g
    layer(torch.ones(10))
    dropout(torch.ones(10), 0.0, True, g)
    assert torch.equal(g.get_state(), state)


def test_dropout_same_seed_same_mask():
    x = torch.ones(100, 100)
    a, b = Dropout(0.3), Dropout(0.3)
    a.generator, b.generator = _gen(5), _gen(5)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
    assert not torch.equal(a(x), ya)  # the generator moves on
    c = Dropout(0.3)
    c.generator = _gen(6)
    assert not torch.equal(c(x), ya)


def test_dropout_does_not_touch_global_rng():
    state = torch.get_rng_state()
    layer = Dropout(0.5)
    layer.generator = _gen(0)
    layer(torch.ones(100))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_layer_bad_prob(p):
    with pytest.raises(ValueError, match="drop_prob"):
        Dropout(p)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_dropout_function_bad_prob(p):
    with pytest.raises(ValueError, match="drop_prob"):
        dropout(torch.ones(5), p, True, _gen(0))


def test_set_generator_reaches_every_dropout():
    cfg = ModelConfig(kind="mlp", hidden=[8, 8, 8], dropout=[0.1, 0.2, 0.3])
    model = build_model(cfg, (5,), 2, _gen(0))
    drops = [m for m in model.modules() if isinstance(m, Dropout)]
    assert len(drops) == 3 and all(d.generator is None for d in drops)
    g = _gen(1)
    set_generator(model, g)
    assert all(d.generator is g for d in drops)
    # a model holding two copies gets the same generator in each
    two = nn.Sequential(model, build_model(cfg, (5,), 2, _gen(0)))
    set_generator(two, g)
    assert sum(m.generator is g for m in two.modules() if isinstance(m, Dropout)) == 6
    set_generator(two, None)
    assert all(m.generator is None for m in two.modules() if isinstance(m, Dropout))


def test_dropout_extra_repr():
    assert "drop_prob=0.25" in repr(Dropout(0.25))


# --- init -------------------------------------------------------------------------------------

def _expected_variance(scheme, fan_in, fan_out):
    return {
        "normal_0.01": 0.01 ** 2,
        "normal_1": 1.0,
        "glorot_uniform": 2.0 / (fan_in + fan_out),
        "glorot_normal": 2.0 / (fan_in + fan_out),
        "he_normal": 2.0 / fan_in,
        "he_uniform": 2.0 / fan_in,
        "default": 1.0 / (3.0 * fan_in),
    }[scheme]


def _uniform_bound(scheme, fan_in, fan_out):
    return {
        "glorot_uniform": math.sqrt(6.0 / (fan_in + fan_out)),
        "he_uniform": math.sqrt(6.0 / fan_in),
        "default": 1.0 / math.sqrt(fan_in),
    }.get(scheme)


LAYERS = [
    # (make layer, fan_in, fan_out)
    (lambda: nn.Linear(400, 300), 400, 300),
    (lambda: nn.Conv2d(16, 32, 3), 16 * 9, 32 * 9),
    (lambda: nn.Conv1d(4, 8, 5), 4 * 5, 8 * 5),
]


def test_every_scheme_is_covered():
    assert set(INIT_SCHEMES) == {"default", "normal_0.01", "normal_1", "glorot_uniform",
                                 "glorot_normal", "he_normal", "he_uniform"}


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
@pytest.mark.parametrize("make, fan_in, fan_out", LAYERS, ids=["linear", "conv2d", "conv1d"])
def test_init_variance(scheme, make, fan_in, fan_out):
    layer = make()
    assert fans(layer.weight) == (fan_in, fan_out)
    init_weights(layer, scheme, _gen(0))
    w = layer.weight.detach().numpy().astype(np.float64).ravel()
    expected = _expected_variance(scheme, fan_in, fan_out)
    # 4 standard errors of a variance estimate (normal: 2/N, uniform: 0.8/N), at least 5%
    rel_se = math.sqrt((0.8 if _uniform_bound(scheme, fan_in, fan_out) else 2.0) / w.size)
    tol = max(0.05, 4 * rel_se)
    assert abs(np.mean(w ** 2) / expected - 1) < tol, (np.mean(w ** 2), expected)
    assert abs(w.mean()) < 4 * math.sqrt(expected / w.size)


@pytest.mark.parametrize("scheme", ["glorot_uniform", "he_uniform", "default"])
@pytest.mark.parametrize("make, fan_in, fan_out", LAYERS, ids=["linear", "conv2d", "conv1d"])
def test_uniform_schemes_stay_within_bound(scheme, make, fan_in, fan_out):
    layer = init_weights(make(), scheme, _gen(0))
    a = _uniform_bound(scheme, fan_in, fan_out)
    w = layer.weight.detach().abs()
    assert w.max().item() <= a
    assert w.max().item() > 0.98 * a  # and fill the range


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_biases(scheme):
    layer = nn.Linear(400, 300)
    init_weights(layer, scheme, _gen(0))
    b = layer.bias.detach()
    if scheme == "default":
        bound = 1.0 / math.sqrt(400)
        assert b.abs().max().item() <= bound and b.abs().max().item() > 0.9 * bound
        assert b.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.25)
    else:
        assert torch.equal(b, torch.zeros(300))


@pytest.mark.parametrize("scheme", INIT_SCHEMES)
def test_init_seeded_and_no_global_rng(scheme):
    # construct first: nn.Linear's own constructor draws from the global RNG
    a, b, c = (nn.Sequential(nn.Linear(20, 10), nn.Conv2d(2, 3, 3)) for _ in range(3))
    state = torch.get_rng_state()
    init_weights(a, scheme, _gen(7))
    init_weights(b, scheme, _gen(7))
    init_weights(c, scheme, _gen(8))
    assert torch.equal(torch.get_rng_state(), state)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a[0].weight, c[0].weight)


def test_init_resets_batchnorm():
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.bias.fill_(2.0)
        bn.running_mean.fill_(5.0)
        bn.running_var.fill_(7.0)
    init_weights(nn.Sequential(bn), "he_normal", _gen(0))
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))


def test_init_tensor_and_bad_scheme():
    w = torch.empty(30, 20)
    assert init_tensor(w, "normal_1", _gen(0)) is w
    torch.testing.assert_close(w, torch.randn(30, 20, generator=_gen(0)))
    with pytest.raises(ValueError, match="xavier"):
        init_tensor(torch.empty(3, 3), "xavier", _gen(0))


# --- models -----------------------------------------------------------------------------------

SHAPES = [(40,), (2,), (1, 8, 8), (1, 28, 28), (3, 16, 16)]


def _cfg(kind, **kw):
    base = dict(kind=kind, hidden=[16, 8], channels=[4, 6], kernel_size=3)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("kind", ["linear", "mlp", "cnn"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_output_shapes(kind, shape):
    model = build_model(_cfg(kind), shape, 7, _gen(0))
    x = torch.randn(5, *shape, generator=_gen(1))
    out = model(x)
    assert out.shape == (5, 7)
    assert torch.isfinite(out).all()
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("shape", [(40,), (2, 30), (3, 16, 16), (1, 7, 9)], ids=str)
@pytest.mark.parametrize("kernel_size", [3, 4, 5])
def test_cnn_shapes_with_batchnorm_and_kernels(shape, kernel_size):
    cfg = _cfg("cnn", kernel_size=kernel_size, batchnorm=True, dropout=0.2, hidden=[10])
    model = build_model(cfg, shape, 3, _gen(0))
    assert model(torch.randn(4, *shape, generator=_gen(1))).shape == (4, 3)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert all(isinstance(c, nn.Conv2d if len(shape) == 3 else nn.Conv1d) for c in convs)
    assert [c.out_channels for c in convs] == [4, 6]


def test_cnn_bad_shape():
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 4\)"):
        CNN((1, 2, 3, 4), [4], 3)


def test_linear_model_is_one_linear():
    shape = (1, 8, 8)
    model = build_model(_cfg("linear", dropout=0.5, batchnorm=True), shape, 10, _gen(0))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    assert linears[0].weight.shape == (10, math.prod(shape))
    assert not any(isinstance(m, (Dropout, nn.BatchNorm1d)) for m in model.modules())
    # it computes W x + b on the flattened input
    x = torch.randn(3, *shape, generator=_gen(1))
    torch.testing.assert_close(model(x), x.flatten(1) @ linears[0].weight.T + linears[0].bias)
    assert isinstance(model, LinearModel)


def test_mlp_structure_matches_config():
    model = build_model(_cfg("mlp", hidden=[16, 8, 4]), (5,), 3, _gen(0))
    assert isinstance(model, MLP)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 16), (16, 8), (8, 4), (4, 3)]
    assert not any(isinstance(m, Dropout) for m in model.modules())  # dropout 0 adds none
    empty = build_model(_cfg("mlp", hidden=[]), (5,), 3, _gen(0))
    assert [(m.in_features, m.out_features) for m in empty.modules() if isinstance(m, nn.Linear)] == [(5, 3)]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_layer_dropout(kind):
    ps = [0.1, 0.0, 0.3]
    hidden = [16, 8, 4]
    model = build_model(_cfg(kind, hidden=hidden, dropout=ps), (1, 8, 8), 3, _gen(0))
    # each Dropout follows the hidden Linear whose probability it carries
    found, last_width = [], None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last_width = m.out_features
        elif isinstance(m, Dropout):
            found.append((last_width, m.drop_prob))
    assert found == [(w, p) for w, p in zip(hidden, ps) if p > 0]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_scalar_dropout_on_every_hidden_layer(kind):
    model = build_model(_cfg(kind, hidden=[8, 8], dropout=0.4), (1, 8, 8), 3, _gen(0))
    assert [m.drop_prob for m in model.modules() if isinstance(m, Dropout)] == [0.4, 0.4]


def test_dropout_list_of_wrong_length():
    with pytest.raises(ValueError, match="dropout"):
        MLP(5, [8, 8], 2, dropout=[0.1])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_batchnorm(kind):
    hidden = [16, 8]
    model = build_model(_cfg(kind, hidden=hidden, batchnorm=True), (1, 8, 8), 3, _gen(0))
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [b.num_features for b in bns] == hidden
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(m.bias is None for m in linears[:-1]) and linears[-1].bias is not None
    if kind == "cnn":
        bn2 = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert [b.num_features for b in bn2] == [4, 6]
        assert all(c.bias is None for c in model.modules() if isinstance(c, nn.Conv2d))
    # fresh batch-norm state after building on the meta device
    for b in [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]:
        assert torch.equal(b.weight, torch.ones_like(b.weight))
        assert torch.equal(b.bias, torch.zeros_like(b.bias))
        assert torch.equal(b.running_mean, torch.zeros_like(b.running_mean))
        assert torch.equal(b.running_var, torch.ones_like(b.running_var))
        assert b.num_batches_tracked.item() == 0
    # without batchnorm: biases everywhere, no batch-norm layers
    plain = build_model(_cfg(kind, hidden=hidden), (1, 8, 8), 3, _gen(0))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Linear))


ACTIVATION_CLASSES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
                      "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "gelu": nn.GELU}


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_activation_by_name(name, kind):
    assert set(ACTIVATIONS) == set(ACTIVATION_CLASSES)
    cls = ACTIVATION_CLASSES[name]
    model = build_model(_cfg(kind, activation=name), (1, 8, 8), 3, _gen(0))
    n_expected = 2 + (2 if kind == "cnn" else 0)  # one per hidden layer and per conv block
    assert sum(type(m) is cls for m in model.modules()) == n_expected
    others = set(ACTIVATION_CLASSES.values()) - {cls}
    assert not any(type(m) in others for m in model.modules())


@pytest.mark.parametrize("kind", ["linear", "mlp", "cnn"])
@pytest.mark.parametrize("init", ["default", "he_normal"])
def test_build_is_seeded_and_leaves_global_rng_alone(kind, init):
    cfg = _cfg(kind, init=init, batchnorm=True, dropout=0.2)
    state = torch.get_rng_state()
    a = build_model(cfg, (1, 8, 8), 3, _gen(3))
    b = build_model(cfg, (1, 8, 8), 3, _gen(3))
    c = build_model(cfg, (1, 8, 8), 3, _gen(4))
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_build_uses_init_scheme():
    cfg = _cfg("mlp", hidden=[300], init="normal_0.01")
    model = build_model(cfg, (400,), 3, _gen(0))
    w = model[1].weight.detach().numpy()
    assert w.shape == (300, 400)
    assert np.var(w) == pytest.approx(1e-4, rel=0.05)
    assert torch.equal(model[1].bias, torch.zeros(300))


def test_pipeline_applies_preprocess_then_net():
    from regulab.data.preprocess import Preprocessor
    X = torch.randn(20, 5, generator=_gen(0)) * 3 + 2
    pre = Preprocessor("standardize", (5,)).fit(X)
    net = build_model(_cfg("mlp"), (5,), 2, _gen(0))
    pipe = Pipeline(pre, net)
    torch.testing.assert_close(pipe(X), net(pre(X)))
    assert {"preprocess.shift", "preprocess.scale"} <= set(pipe.state_dict())
