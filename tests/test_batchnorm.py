"""Batch normalization (Ioffe & Szegedy, 2015): the notes' forward and backward formulas in
NumPy (float64) against PyTorch's autograd, and the train / eval statistics.

The notes ("Normalización por lotes", /work/shared/seeds/001_99236396c44841c3.txt, lines 380-412):

    mu = 1/m sum_i x_i                  var = 1/m sum_i (x_i - mu)^2   (biased)
    xhat_i = (x_i - mu) / sqrt(var + eps)                 y_i = gamma * xhat_i + beta

    dL/dxhat_i = dL/dy_i * gamma
    dL/dvar    = sum_i dL/dxhat_i * (x_i - mu) * (-1/2) (var + eps)^(-3/2)
    dL/dmu     = sum_i dL/dxhat_i * (-1 / sqrt(var + eps))  [+ dL/dvar * (-2/m) sum_i (x_i - mu)]
    dL/dx_i    = dL/dxhat_i / sqrt(var + eps) + dL/dvar * 2 (x_i - mu) / m + dL/dmu / m
    dL/dgamma  = sum_i dL/dy_i * xhat_i                   dL/dbeta = sum_i dL/dy_i

Typo in the notes: line 408 of 001_99236396c44841c3.txt writes the variance term of dL/dx_i
as ``dL/dvar * 2(x^{i}) / m``; it must be ``2 (x_i - mu) / m`` (d var / d x_i, as in the
paper). ``test_the_notes_typo_does_not_match_autograd`` shows the typo'd formula is wrong
whenever the batch mean is not 0. The notes' dL/dmu (line 406) also leaves out the paper's
second term, dL/dvar * (-2/m) sum_i (x_i - mu), which is harmless: that sum is exactly 0.

Another inexact line, in 003_d67fec889e68729b.txt line 83: "In test/validation, gamma and beta
are set to means of values seen during training". gamma and beta are the learned values as
they are; what eval mode replaces are the batch statistics mu and var, by running averages
(PyTorch: momentum 0.1, unbiased variance) -- checked in the last tests here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5
M, D = 32, 5


def bn_forward(x, gamma, beta, eps=EPS):
    """The notes' forward pass over the batch axis 0; returns y and the cache for backward."""
    m = x.shape[0]
    mu = x.sum(0) / m
    var = ((x - mu) ** 2).sum(0) / m                        # biased: 1/m
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (x, mu, var, xhat, gamma, eps)


def bn_backward(dy, cache, typo=False):
    """The notes' backward pass; ``typo=True`` uses the notes' 2 x_i / m instead of 2 (x_i - mu) / m."""
    x, mu, var, xhat, gamma, eps = cache
    m = x.shape[0]
    dxhat = dy * gamma
    dvar = (dxhat * (x - mu) * -0.5 * (var + eps) ** -1.5).sum(0)
    dmu = (dxhat * -1.0 / np.sqrt(var + eps)).sum(0) + dvar * (-2.0 / m) * (x - mu).sum(0)
    var_term = 2.0 * x / m if typo else 2.0 * (x - mu) / m
    dx = dxhat / np.sqrt(var + eps) + dvar * var_term + dmu / m
    dgamma = (dy * xhat).sum(0)
    dbeta = dy.sum(0)
    return dx, dgamma, dbeta


def batch(seed: int = 0):
    """x with a clearly non-zero mean per feature, gamma, beta and an upstream gradient dL/dy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=rng.uniform(-3, 3, size=D), scale=rng.uniform(0.5, 2, size=D), size=(M, D))
    gamma = rng.uniform(0.5, 1.5, size=D)
    beta = rng.normal(size=D)
    dy = rng.normal(size=(M, D))
    return x, gamma, beta, dy


def autograd_functional(x, gamma, beta, dy):
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.tensor(beta, requires_grad=True)
    y = F.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    (y * torch.from_numpy(dy)).sum().backward()              # L = sum_i dy_i . y_i
    return y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def autograd_module(x, gamma, beta, dy):
    bn = nn.BatchNorm1d(D, eps=EPS).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    xt = torch.tensor(x, requires_grad=True)
    y = bn(xt)
    (y * torch.from_numpy(dy)).sum().backward()
    return y.detach().numpy(), xt.grad.numpy(), bn.weight.grad.numpy(), bn.bias.grad.numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("autograd", [autograd_functional, autograd_module],
                         ids=["F.batch_norm", "nn.BatchNorm1d"])
def test_notes_formulas_match_autograd(autograd, seed):
    x, gamma, beta, dy = batch(seed)
    y, cache = bn_forward(x, gamma, beta)
    dx, dgamma, dbeta = bn_backward(dy, cache)
    y_t, dx_t, dgamma_t, dbeta_t = autograd(x, gamma, beta, dy)
    np.testing.assert_allclose(y_t, y, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx_t, dx, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dgamma_t, dgamma, rtol=0, atol=1e-10)
    np.testing.assert_allclose(dbeta_t, dbeta, rtol=0, atol=1e-10)


def test_the_notes_typo_does_not_match_autograd():
    x, gamma, beta, dy = batch(0)
    _, cache = bn_forward(x, gamma, beta)
    dx_typo, _, _ = bn_backward(dy, cache, typo=True)
    _, dx_t, _, _ = autograd_functional(x, gamma, beta, dy)
    # the typo adds dL/dvar * 2 mu / m to every row: far outside the 1e-10 tolerance
    assert np.abs(dx_typo - dx_t).max() > 1e-3
    assert not np.allclose(dx_typo, dx_t, rtol=1e-3, atol=1e-3)
    _, mu, _, _, _, _ = cache
    x_c = x - mu                                   # with a zero batch mean the typo is invisible
    dx_typo_c, _, _ = bn_backward(dy, bn_forward(x_c, gamma, beta)[1], typo=True)
    np.testing.assert_allclose(dx_typo_c, autograd_functional(x_c, gamma, beta, dy)[1], atol=1e-10)


def test_the_second_term_of_dmu_is_zero():
    x, gamma, beta, dy = batch(1)
    _, (x, mu, var, xhat, gamma, eps) = bn_forward(x, gamma, beta)
    np.testing.assert_allclose((x - mu).sum(0), 0.0, atol=1e-12)


def test_the_gradient_wrt_x_is_orthogonal_to_ones_and_xhat():
    # a consequence of the formulas: dL/dx = gamma/(m sigma) (m dy - sum dy - xhat sum dy xhat),
    # so sum_i dL/dx_i = 0 (shifting x changes nothing) and, with eps = 0 (where sum xhat^2 = m),
    # sum_i dL/dx_i xhat_i = 0 (scaling x changes nothing)
    x, gamma, beta, dy = batch(2)
    _, cache = bn_forward(x, gamma, beta, eps=0.0)
    dx, _, _ = bn_backward(dy, cache)
    xhat = cache[3]
    np.testing.assert_allclose(dx.sum(0), 0.0, atol=1e-10)
    np.testing.assert_allclose((dx * xhat).sum(0), 0.0, atol=1e-10)


# -- train and eval statistics -----------------------------------------------------------------------

def test_train_mode_normalizes_with_biased_batch_variance_and_tracks_unbiased_running_stats():
    rng = np.random.default_rng(5)
    bn = nn.BatchNorm1d(D, eps=EPS).double()          # momentum 0.1 by default
    gamma, beta = rng.uniform(0.5, 1.5, size=D), rng.normal(size=D)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(gamma))
        bn.bias.copy_(torch.from_numpy(beta))
    running_mean, running_var = np.zeros(D), np.ones(D)
    bn.train()
    for _ in range(4):
        x = rng.normal(loc=2.0, scale=3.0, size=(M, D))
        y = bn(torch.from_numpy(x)).detach().numpy()
        mu = x.mean(0)
        var_biased = ((x - mu) ** 2).sum(0) / M
        var_unbiased = ((x - mu) ** 2).sum(0) / (M - 1)
        np.testing.assert_allclose(y, gamma * (x - mu) / np.sqrt(var_biased + EPS) + beta, atol=1e-10)
        assert not np.allclose(y, gamma * (x - mu) / np.sqrt(var_unbiased + EPS) + beta, atol=1e-6)
        running_mean = 0.9 * running_mean + 0.1 * mu
        running_var = 0.9 * running_var + 0.1 * var_unbiased
        np.testing.assert_allclose(bn.running_mean.numpy(), running_mean, atol=1e-12)
        np.testing.assert_allclose(bn.running_var.numpy(), running_var, atol=1e-12)
    assert int(bn.num_batches_tracked) == 4

    # eval mode: running statistics, no update, each example independent of the batch
    bn.eval()
    x = rng.normal(size=(M, D))
    y = bn(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, gamma * (x - running_mean) / np.sqrt(running_var + EPS) + beta,
                               atol=1e-10)
    np.testing.assert_allclose(bn.running_mean.numpy(), running_mean, atol=1e-12)
    single = bn(torch.from_numpy(x[:1])).detach().numpy()
    np.testing.assert_allclose(single, y[:1], atol=1e-12)
