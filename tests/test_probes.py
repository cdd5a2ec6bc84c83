"""Probes (``regulab.studies.probes``): every statistic recomputed independently in NumPy (a
float64 forward and backward pass written out by hand, naive binning), the initialization
story of Glorot & Bengio (2010), layer naming through wrappers, mode restore, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from regulab.data.preprocess import Preprocessor
from regulab.nn.init import init_weights
from regulab.nn.models import CNN, MLP, Pipeline, Regularizers
from regulab.studies.probes import activation_histograms, histogram, init_statistics, weight_histograms

SMALL = dict(depth=6, width=64, in_features=64, n=256)


def _init(net: nn.Module, scheme: str = "glorot_uniform", seed: int = 0) -> nn.Module:
    return init_weights(net, scheme, torch.Generator().manual_seed(seed))


def _naive_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Bin i holds edges[i] <= v < edges[i+1]; the last bin also holds v == edges[-1]."""
    edges = np.asarray(edges)
    v = values[np.isfinite(values)].ravel()
    v = v[(v >= edges[0]) & (v <= edges[-1])]
    idx = np.searchsorted(edges, v, side="right") - 1
    idx[v == edges[-1]] = len(edges) - 2
    return np.bincount(idx, minlength=len(edges) - 1).tolist()


def _upto(net: nn.Sequential, name: str) -> nn.Sequential:
    """The layers of ``net`` up to and including ``name`` (slicing an MLP would rebuild an MLP)."""
    names = list(dict(net.named_children()))
    return nn.Sequential(*list(net.children())[: names.index(name) + 1])


def _check_hist(h: dict, values: np.ndarray, bins: int) -> None:
    finite = values[np.isfinite(values)]
    assert len(h["edges"]) == bins + 1 and len(h["counts"]) == bins
    np.testing.assert_allclose(h["edges"], np.linspace(finite.min(), finite.max(), bins + 1), rtol=1e-12)
    assert h["counts"] == _naive_counts(values, h["edges"])
    assert sum(h["counts"]) == finite.size
    assert all(type(c) is int for c in h["counts"]) and all(type(e) is float for e in h["edges"])


# ---------------------------------------------------------------- histogram

def test_histogram_counts_every_finite_value_in_naive_bins():
    v = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    v[:5] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, 0.0])
    h = histogram(v.view(10, 100), bins=17)
    _check_hist(h, v.double().numpy(), 17)
    assert sum(h["counts"]) == 997


def test_histogram_range_and_edge_cases():
    h = histogram(torch.tensor([-5.0, 0.0, 0.5, 1.0, 5.0]), bins=2, range=(0.0, 1.0))
    assert h == {"edges": [0.0, 0.5, 1.0], "counts": [1, 2]}       # outside the range: not counted
    assert histogram(torch.full((4,), 3.0), bins=2) == {"edges": [2.5, 3.0, 3.5], "counts": [0, 4]}
    assert histogram(torch.tensor([float("nan")]), bins=2)["counts"] == [0, 0]
    for kwargs in ({"bins": 0}, {"bins": 2.5}, {"range": (1.0, 0.0)}, {"range": (0.0, float("inf"))}):
        with pytest.raises(ValueError, match="bins|range"):
            histogram(torch.zeros(3), **kwargs)


# ---------------------------------------------------------------- init_statistics

_NP_ACT = {   # activation -> (f(z), f'(z)) in float64
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
}


def _reference(activation, scheme, depth, width, in_features, n, seed=0, inputs=None):
    """Weights drawn as documented, then a hand-written float64 forward and backward pass."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, in_features, generator=g) if inputs is None else inputs
    y = torch.randint(0, 10, (X.shape[0],), generator=g).numpy()
    with torch.device("meta"):
        net = MLP(in_features, [width] * depth, 10, activation=activation)
    init_weights(net.to_empty(device="cpu"), scheme, g)
    p = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    f, df = _NP_ACT[activation]
    hs, zs = [X.double().numpy().reshape(len(X), -1)], []
    for l in range(1, depth + 1):
        zs.append(hs[-1] @ p[f"fc{l}.weight"].T + p[f"fc{l}.bias"])    # (n, width)
        hs.append(f(zs[-1]))
    logits = hs[-1] @ p["out.weight"].T + p["out.bias"]                    # (n, 10)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    delta = (prob - np.eye(10)[y]) / len(y)            # dL/dlogits of the mean cross-entropy
    dh, grads = delta @ p["out.weight"], []
    for l in range(depth, 0, -1):
        dz = dh * df(zs[l - 1])
        grads.insert(0, dz.T @ hs[l - 1])                                   # dL/dW_l
        dh = dz @ p[f"fc{l}.weight"]
    return net, hs[1:], grads


@pytest.mark.parametrize("activation,scheme", [("tanh", "glorot_normal"), ("relu", "he_normal"),
                                               ("sigmoid", "glorot_uniform"), ("tanh", "default")])
def test_init_statistics_match_a_numpy_forward_and_backward(activation, scheme):
    r = init_statistics(activation, scheme, seed=3, **SMALL)
    _, acts, grads = _reference(activation, scheme, seed=3, **SMALL)
    np.testing.assert_allclose(r["act_mean"], [a.mean() for a in acts], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(r["act_std"], [a.std() for a in acts], rtol=1e-4)
    np.testing.assert_allclose(r["grad_std"], [gw.std() for gw in grads], rtol=1e-3)
    assert len(r["saturated"]) == len(r["act_std"]) == SMALL["depth"]
    assert (r["activation"], r["scheme"]) == (activation, scheme)


def test_init_statistics_with_given_inputs():
    X = torch.rand(100, 8, 8, generator=torch.Generator().manual_seed(5)) - 0.5   # flattened to 64
    r = init_statistics("tanh", "he_uniform", inputs=X, **SMALL)
    _, acts, grads = _reference("tanh", "he_uniform", inputs=X, **SMALL)
    np.testing.assert_allclose(r["act_std"], [a.std() for a in acts], rtol=1e-4)
    np.testing.assert_allclose(r["grad_std"], [gw.std() for gw in grads], rtol=1e-3)
    assert sum(r["hist"][0]["counts"]) == 100 * SMALL["width"]


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "leaky_relu", "elu", "gelu"])
def test_saturated_fraction_and_histograms(activation):
    rules = {"tanh": lambda a: np.abs(a) > 0.99, "sigmoid": lambda a: (a < 0.01) | (a > 0.99),
             "elu": lambda a: a < -0.99}
    r = init_statistics(activation, "normal_1", bins=13, **SMALL)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(SMALL["n"], SMALL["in_features"], generator=g)
    torch.randint(0, 10, (SMALL["n"],), generator=g)
    with torch.device("meta"):
        net = MLP(64, [64] * 6, 10, activation=activation)
    init_weights(net.to_empty(device="cpu"), "normal_1", g)
    with torch.no_grad():   # a_l from the first layers of the net: a separate path from the probe's
        acts = [_upto(net, f"act{l}")(X).double().numpy() for l in range(1, 7)]
    rule = rules.get(activation, lambda a: a == 0)
    np.testing.assert_allclose(r["saturated"], [rule(a).mean() for a in acts], rtol=1e-12)
    assert [h["layer"] for h in r["hist"]] == [1, 3, 6]
    for h in r["hist"]:
        _check_hist({"edges": h["edges"], "counts": h["counts"]}, acts[h["layer"] - 1], 13)


def test_hist_layers_are_deduplicated_and_sorted():
    r = init_statistics("relu", "he_normal", hist_layers=[6, 2, 2], **SMALL)
    assert [h["layer"] for h in r["hist"]] == [2, 6]
    assert init_statistics("relu", "he_normal", hist_layers=[], **SMALL)["hist"] == []
    assert [h["layer"] for h in init_statistics("relu", "he_normal", depth=1, width=8,
                                                in_features=4, n=16)["hist"]] == [1]


def test_init_story_vanishing_saturating_and_preserved():
    """The notes' figures: N(0, 0.01^2) vanishes, N(0, 1) saturates tanh, Glorot (tanh) and
    He (ReLU) keep the activations' scale across 10 layers."""
    big = dict(depth=10, width=256, in_features=256, n=500, hist_layers=[])
    small = init_statistics("tanh", "normal_0.01", **big)["act_std"]
    assert small[-1] < 1e-6 * small[0] and all(b < a for a, b in zip(small, small[1:]))
    saturated = init_statistics("tanh", "normal_1", **big)["saturated"]
    assert min(saturated[4:]) > 0.5
    for act, scheme in (("tanh", "glorot_normal"), ("relu", "he_normal")):
        std = init_statistics(act, scheme, **big)["act_std"]
        assert max(std) / min(std) < 3.0, (act, scheme, std)


def test_init_statistics_deterministic_json_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = init_statistics("tanh", "glorot_normal", seed=7, **SMALL)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == init_statistics("tanh", "glorot_normal", seed=7, **SMALL)
    assert a != init_statistics("tanh", "glorot_normal", seed=8, **SMALL)
    json.dumps(a, allow_nan=False)
    blown = init_statistics("relu", "normal_1", depth=60, width=64, in_features=64, n=16)
    assert blown["act_std"][-1] is None and blown["saturated"][-1] is None   # overflow: None
    json.dumps(blown, allow_nan=False)


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "tahn"}, "did you mean 'tanh'"), ({"scheme": "xavier"}, "init.schemes"),
    ({"depth": 0}, "init.depth"), ({"hist_layers": [7]}, "init.hist_layers"),
    ({"inputs": torch.zeros(4, 3)}, "init.inputs")])
def test_init_statistics_rejects_bad_arguments(kwargs, match):
    args = {"activation": "tanh", "scheme": "glorot_normal", **SMALL, **kwargs}
    with pytest.raises(ValueError, match=match):
        init_statistics(args.pop("activation"), args.pop("scheme"), **args)


# ---------------------------------------------------------------- activation_histograms

def _pipeline(activation="relu", dropout=0.5, in_features=12) -> Pipeline:
    X = torch.randn(50, in_features, generator=torch.Generator().manual_seed(2)) * 3 + 1
    net = _init(MLP(in_features, [32, 16], 4, activation=activation, dropout=dropout), "he_normal")
    return Pipeline(Preprocessor("standardize", (in_features,)).fit(X), net)


def test_activation_histograms_of_a_pipeline_match_numpy():
    model = _pipeline()
    X = torch.randn(256, 12, generator=torch.Generator().manual_seed(4)) * 3 + 1
    out = activation_histograms(model, X, bins=9)
    assert [h["layer"] for h in out] == ["act1", "act2"]            # not net.act1
    net = model.net
    Z = ((X - model.preprocess.shift) / model.preprocess.scale).double().numpy()
    W = {k: v.detach().double().numpy() for k, v in net.state_dict().items()}
    a1 = np.maximum(Z @ W["fc1.weight"].T + W["fc1.bias"], 0)      # eval: dropout is the identity
    a2 = np.maximum(a1 @ W["fc2.weight"].T + W["fc2.bias"], 0)
    with torch.no_grad():
        net.eval()
        exact = [_upto(net, a)(model.preprocess(X)).double().numpy() for a in ("act1", "act2")]
    for h, ref, a in zip(out, (a1, a2), exact):
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-5)
        assert h["sparsity"] == pytest.approx((a == 0).mean(), abs=0) and 0.1 < h["sparsity"] < 0.9
        assert h["mean"] == pytest.approx(ref.mean(), rel=1e-5)
        _check_hist(h, a, 9)
    json.dumps(out, allow_nan=False)


def test_activation_histograms_non_relu_sparsity_uses_a_tolerance():
    model = _pipeline(activation="tanh")
    X = torch.randn(64, 12, generator=torch.Generator().manual_seed(0))
    X[:, :] = model.preprocess.shift                         # standardized inputs are all 0
    for h in activation_histograms(model, X):
        assert h["sparsity"] == 1.0 and h["mean"] == 0.0          # biases are 0 under he_normal


def test_activation_histograms_restore_modes_and_filter_layers():
    model = _pipeline()
    model.train()
    model.net.drop2.eval()                                         # a mixed state, kept as it was
    model.net.drop1.sampling = True                                # MC dropout: not drawn while probing
    before = {n: m.training for n, m in model.named_modules()}
    X = torch.randn(32, 12, generator=torch.Generator().manual_seed(1))
    out = activation_histograms(model, X, layers=["act2"])
    assert [h["layer"] for h in out] == ["act2"]
    assert out == activation_histograms(model, X, layers=["act2"])  # no dropout noise drawn
    assert {n: m.training for n, m in model.named_modules()} == before
    assert model.net.drop1.sampling is True
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match=r"\(act1, act2\); got 'act9'; did you mean 'act2'"):
        activation_histograms(model, X, layers=["act9"])
    with pytest.raises(ValueError, match="list of layer names"):
        activation_histograms(model, X, layers="act1")


# ---------------------------------------------------------------- weight_histograms

def test_weight_histograms_name_wrapped_layers_and_match_numpy():
    reg = Regularizers(dropconnect=0.5, weight_noise=0.1, batchnorm=True)
    net = _init(MLP(12, [32, 16], 4, regularizers=reg), "glorot_uniform")
    assert isinstance(net.fc1, nn.Module) and hasattr(net.fc1, "layer")  # DropConnect(Linear)
    model = Pipeline(Preprocessor("none", (12,)), net)
    out = weight_histograms(model, bins=11, threshold=0.05)
    assert [h["layer"] for h in out] == ["fc1", "fc2", "out"]       # no bn1, no biases, no .layer
    for h in out:
        w = dict(model.named_parameters())[f"net.{h['layer']}.layer.weight"].detach().double().numpy()
        assert h["sparsity"] == pytest.approx((np.abs(w) < 0.05).mean(), abs=0)
        assert h["l1"] == pytest.approx(np.abs(w).sum(), rel=1e-12)
        assert h["l2"] == pytest.approx(np.sqrt((w ** 2).sum()), rel=1e-12)
        _check_hist(h, w, 11)
    json.dumps(out, allow_nan=False)


def test_weight_histograms_sparsity_reduces_to_counting_zeros():
    net = _init(MLP(6, [5], 3), "glorot_normal")
    with torch.no_grad():
        net.fc1.weight[:2] = 0.0                                    # 12 of 30 weights
    first = weight_histograms(net, threshold=1e-3, layers=["fc1"])
    assert [h["layer"] for h in first] == ["fc1"] and first[0]["sparsity"] == pytest.approx(12 / 30)
    assert weight_histograms(net, threshold=0.0)[0]["sparsity"] == 0.0   # |w| < 0 never holds


def test_weight_histograms_convs_heads_and_errors():
    cnn = _init(CNN((1, 8, 8), [4], 3, kernel_size=3, hidden=[8], batchnorm=True))
    assert [h["layer"] for h in weight_histograms(cnn)] == ["conv1", "fc1", "out"]
    heads = _init(MLP(6, [8], [("main", 3), ("parity", 2)]))
    assert [h["layer"] for h in weight_histograms(heads, layers=["out"])] == ["out.main", "out.parity"]
    with pytest.raises(ValueError, match=r"fc1, out.main, out.parity.*got 'fc2'"):
        weight_histograms(heads, layers=["fc2"])
    with pytest.raises(ValueError, match="weights.threshold"):
        weight_histograms(heads, threshold=-1.0)
