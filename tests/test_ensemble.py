"""Dropout as an ensemble: the geometric-mean theorem, its limits in a deep net, MC dropout."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regulab.nn.layers import DropConnect, Dropout, GaussianNoise, WeightNoise
from regulab.regularize.mc_dropout import (dropout_modules, enumerate_masks, exact_dropout_ensemble,
                                           exact_ensemble, geometric_mean, mc_predict, sampling,
                                           weight_scaling_predict)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _softmax_regression(h=10, c=3, n=20, seed=0):
    g = _gen(seed)
    W = torch.randn(c, h, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    x = torch.randn(n, h, generator=g, dtype=torch.float64)
    return W, b, x


def _naive_ensemble(W, b, x, p, aggregate):
    """Loop over every mask in NumPy: weighted geometric (normalized) or arithmetic mean."""
    W, b, x = W.numpy(), b.numpy(), x.numpy()
    h = x.shape[1]
    log_total, total = 0.0, 0.0
    for bits in itertools.product([0, 1], repeat=h):
        m = np.array(bits, dtype=float)
        weight = p ** (h - m.sum()) * (1 - p) ** m.sum()
        z = (x * m) @ W.T + b
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        log_total = log_total + weight * log_p
        total = total + weight * np.exp(log_p)
    if aggregate == "mean":
        return total
    g = np.exp(log_total)
    return g / g.sum(1, keepdims=True)


# --- the theorem: exact for a softmax regression --------------------------------------------

@pytest.mark.parametrize("p", [0.5, 0.3, 0.8])
def test_geometric_mean_over_all_masks_is_weight_scaling(p):
    W, b, x = _softmax_regression()
    ensemble = exact_dropout_ensemble(W, b, x, p, aggregate="geometric")
    scaled = F.softmax(x @ (W * (1 - p)).T + b, dim=-1)
    assert (ensemble - scaled).abs().max().item() < 1e-10
    # the arithmetic mean of the probabilities is a different average
    mean = exact_dropout_ensemble(W, b, x, p, aggregate="mean")
    assert (mean - scaled).abs().max().item() > 1e-2
    torch.testing.assert_close(mean.sum(1), torch.ones(len(x), dtype=torch.float64))


@pytest.mark.parametrize("aggregate", ["geometric", "mean"])
def test_exact_ensemble_matches_a_naive_loop(aggregate):
    W, b, x = _softmax_regression(h=6, c=4, n=5, seed=1)
    expected = _naive_ensemble(W, b, x, 0.3, aggregate)
    np.testing.assert_allclose(exact_dropout_ensemble(W, b, x, 0.3, aggregate).numpy(), expected,
                               rtol=1e-12, atol=1e-14)
    # chunking the masks does not change the result
    head = lambda z: F.linear(z, W, b)  # noqa: E731
    np.testing.assert_allclose(exact_ensemble(head, x, 0.3, aggregate=aggregate, chunk=7).numpy(),
                               expected, rtol=1e-12, atol=1e-14)


def test_uniform_weights_give_the_half_rule_not_one_minus_p():
    # The notes' formula weights the 2^h sub-models equally (1/M). That is P(m) only at p = 0.5;
    # for any other p the uniform geometric mean is softmax(x W^T / 2 + b), not the (1-p) rule.
    W, b, x = _softmax_regression()
    masks = enumerate_masks(10)                                          # (1024, 10)
    log_probs = F.log_softmax((masks[:, None, :] * x) @ W.T + b, dim=-1)  # (1024, N, C)
    uniform = geometric_mean(log_probs)
    assert (uniform - F.softmax(x @ (W / 2).T + b, -1)).abs().max().item() < 1e-10
    assert (uniform - F.softmax(x @ (W * 0.7).T + b, -1)).abs().max().item() > 1e-2
    assert (uniform - exact_dropout_ensemble(W, b, x, 0.5)).abs().max().item() < 1e-10


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_inverted_dropout_ensemble_is_the_eval_model(p):
    W, b, x = _softmax_regression()
    ensemble = exact_dropout_ensemble(W, b, x, p, mode="inverted")
    assert (ensemble - F.softmax(x @ W.T + b, -1)).abs().max().item() < 1e-10


def test_geometric_mean_formula():
    log_probs = F.log_softmax(torch.randn(7, 4, 3, generator=_gen(0), dtype=torch.float64), -1)
    g = np.exp(log_probs.numpy().mean(0))
    np.testing.assert_allclose(geometric_mean(log_probs).numpy(), g / g.sum(1, keepdims=True), rtol=1e-12)
    # one distribution: its own geometric mean
    torch.testing.assert_close(geometric_mean(log_probs[:1]), log_probs[0].exp())


def test_enumerate_masks():
    m = enumerate_masks(4)
    assert m.shape == (16, 4) and m.dtype == torch.float64
    assert len({tuple(r.tolist()) for r in m}) == 16 and set(m.unique().tolist()) == {0.0, 1.0}
    assert m[5].tolist() == [1, 0, 1, 0]   # row i is i in binary, unit j = bit j
    assert enumerate_masks(0).shape == (1, 0)
    for h in (-1, 21, 2.0):
        with pytest.raises(ValueError, match=rf"h must be .*got {h!r}"):
            enumerate_masks(h)


# --- MLPs: where weight scaling is exact and where it is only an approximation ----------------

def _mlp(widths, drop_after, p=0.5, mode="classic", seed=0):
    """Linear+ReLU blocks of ``widths``, one Dropout after block ``drop_after``; He-normal weights."""
    g = _gen(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(n_in, n_out, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=g, dtype=torch.float64)
                                * (2.0 / n_in) ** 0.5)
            linear.bias.copy_(0.1 * torch.randn(n_out, generator=g, dtype=torch.float64))
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
        if i == drop_after:
            layers.append(Dropout(p, mode))
    model = nn.Sequential(*layers)
    split = next(i for i, m in enumerate(model) if isinstance(m, Dropout))
    x = torch.randn(50, widths[0], generator=g, dtype=torch.float64)
    return model, model[:split](x).detach(), model[split + 1:], x


@functools.cache
def _deep(mode="classic"):
    """10-16-8-3 with dropout (p=0.5) on the 16 units of hidden layer 1, built once per mode."""
    return _mlp([10, 16, 8, 3], drop_after=0, mode=mode)


@functools.cache
def _deep_exact(mode, aggregate):
    _, hidden, head, _ = _deep(mode)
    return exact_ensemble(head, hidden, 0.5, aggregate=aggregate, mode=mode)


def test_mlp_dropout_on_last_hidden_layer_is_exact():
    # 10-16-3 with dropout on the 16 hidden units: what follows the dropout is a softmax
    # regression on the hidden activations, so the theorem applies exactly.
    model, hidden, head, x = _mlp([10, 16, 3], drop_after=0)
    geometric = exact_ensemble(head, hidden, 0.5)
    mean = exact_ensemble(head, hidden, 0.5, aggregate="mean")
    scaled = weight_scaling_predict(model, x)
    gap, mean_gap = (geometric - scaled).abs().max().item(), (mean - scaled).abs().max().item()
    print(f"\n10-16-3, dropout on hidden (2^16 masks): max |geometric - scaled| = {gap:.2e}, "
          f"max |arithmetic - scaled| = {mean_gap:.4f}")
    assert gap < 1e-10
    assert mean_gap > 1e-3


def test_mlp_weight_scaling_approximates_the_deep_ensemble():
    # 10-16-8-3 with dropout on the 16 units of the first hidden layer: a ReLU follows the
    # dropped units, so the scaled network is only an approximation of the ensemble.
    model, _, _, x = _deep()
    geometric, mean = _deep_exact("classic", "geometric"), _deep_exact("classic", "mean")
    scaled = weight_scaling_predict(model, x)
    gap = (geometric - scaled).abs()
    mean_gap = (mean - scaled).abs()
    one_sample = (mc_predict(model, x, 1, generator=_gen(0)) - mean).abs()
    agree = (scaled.argmax(1) == mean.argmax(1)).double().mean().item()
    print(f"\n10-16-8-3, dropout on the 16 units of hidden layer 1 (2^16 masks, p=0.5, 50 inputs):\n"
          f"  |geometric ensemble - scaled|: max {gap.max():.4f}, mean {gap.mean():.4f}\n"
          f"  |arithmetic ensemble - scaled|: max {mean_gap.max():.4f}, mean {mean_gap.mean():.4f}\n"
          f"  |one dropout sample - arithmetic ensemble|: mean {one_sample.mean():.4f}\n"
          f"  argmax agreement scaled vs arithmetic ensemble: {agree:.2f}")
    assert gap.max().item() > 1e-3                     # not exact any more
    assert gap.mean().item() < 0.05 and mean_gap.mean().item() < 0.05
    assert mean_gap.mean().item() < 0.5 * one_sample.mean().item()   # far better than one sub-net
    assert agree >= 0.9


@pytest.mark.parametrize("mode", ["classic", "inverted"])
@pytest.mark.parametrize("aggregate", ["mean", "geometric"])
def test_mc_predict_converges_to_the_exact_ensemble(mode, aggregate):
    model, _, _, x = _deep(mode)
    exact = _deep_exact(mode, aggregate)
    few = (mc_predict(model, x, 10, aggregate=aggregate, generator=_gen(1)) - exact).abs().max().item()
    many = (mc_predict(model, x, 2000, aggregate=aggregate, generator=_gen(1)) - exact).abs().max().item()
    assert many < 0.02 and many < few


# --- sampling, batch norm and reproducibility -------------------------------------------------

def _bn_model(seed=0):
    torch.manual_seed(seed)   # nn.Linear's own init uses the global RNG; tests may seed it
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), Dropout(0.5),
                          nn.Linear(8, 3))
    with torch.no_grad():
        model[1].running_mean.copy_(torch.linspace(-1, 1, 8))
        model[1].running_var.copy_(torch.linspace(0.5, 2, 8))
    return model


def test_sampling_leaves_batchnorm_in_eval_mode():
    model = _bn_model()
    X = torch.randn(32, 5, generator=_gen(1))
    bn = model[1]
    stats = {k: v.clone() for k, v in bn.state_dict().items()}
    seen = []
    bn.register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    probs = mc_predict(model, X, 20, generator=_gen(2))
    assert seen == [False] * 20
    for k, v in bn.state_dict().items():
        assert torch.equal(v, stats[k]), k
    assert all(m.training for m in model.modules())         # training flags restored
    assert not any(m.sampling for m in dropout_modules(model))
    # the outputs use the running statistics: one sample equals a manual eval pass with the
    # same mask, and differs from a pass with batch statistics
    model.eval()
    with sampling(model, _gen(2)):
        by_hand = F.softmax(model(X), -1)
    torch.testing.assert_close(mc_predict(model, X, 1, generator=_gen(2)), by_hand)
    model.train()
    with sampling(model, _gen(2)):
        batch_stats = F.softmax(model(X), -1)
    assert (batch_stats - by_hand).abs().max().item() > 1e-3
    assert probs.shape == (32, 3)


def test_sampling_restores_on_exception_and_sets_only_the_family():
    model = nn.Sequential(GaussianNoise(0.1), DropConnect(nn.Linear(4, 4), 0.2), nn.BatchNorm1d(4),
                          Dropout(0.5), WeightNoise(nn.Linear(4, 2), 0.1))
    family = dropout_modules(model)
    assert [type(m) for m in family] == [GaussianNoise, DropConnect, Dropout, WeightNoise]
    own = _gen(9)
    family[0].generator = own
    model.eval()
    g = _gen(0)
    with pytest.raises(RuntimeError, match="boom"):
        with sampling(model, g):
            assert all(m.sampling and m.generator is g for m in family)
            assert not any(m.training for m in model.modules())
            raise RuntimeError("boom")
    assert not any(m.sampling for m in family)
    assert family[0].generator is own and all(m.generator is None for m in family[1:])


def test_mc_predict_is_reproducible_and_leaves_global_rng_alone():
    model = _bn_model()
    X = torch.randn(16, 5, generator=_gen(1))
    state = torch.get_rng_state()
    a = mc_predict(model, X, 5, generator=_gen(3))
    b = mc_predict(model, X, 5, generator=_gen(3))
    c = mc_predict(model, X, 5, generator=_gen(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a.sum(1), torch.ones(16))
    g = mc_predict(model, X, 5, aggregate="geometric", generator=_gen(3))
    torch.testing.assert_close(g.sum(1), torch.ones(16))


def test_weight_scaling_predict_is_the_eval_pass():
    model = _bn_model()
    X = torch.randn(16, 5, generator=_gen(1))
    model.train()
    with sampling(model, _gen(0)):   # even inside a sampling context it is deterministic
        a, b = weight_scaling_predict(model, X), weight_scaling_predict(model, X)
        assert all(m.sampling for m in dropout_modules(model))
    assert torch.equal(a, b) and all(m.training for m in model.modules())
    torch.testing.assert_close(a, F.softmax(model.eval()(X), -1))


def test_bad_arguments():
    model = _bn_model()
    X = torch.randn(4, 5)
    for samples in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"samples .*got {samples!r}"):
            mc_predict(model, X, samples)
    with pytest.raises(ValueError, match="aggregate .*'median'"):
        mc_predict(model, X, 2, aggregate="median")
    W, b, x = _softmax_regression(h=3)
    with pytest.raises(ValueError, match="aggregate"):
        exact_dropout_ensemble(W, b, x, 0.5, aggregate="median")
    with pytest.raises(ValueError, match="drop_prob"):
        exact_dropout_ensemble(W, b, x, 1.0)
    with pytest.raises(ValueError, match="mode"):
        exact_dropout_ensemble(W, b, x, 0.5, mode="scaled")
    with pytest.raises(ValueError, match=r"\(N, h\)"):
        exact_dropout_ensemble(W, b, x[0], 0.5)
