"""Label smoothing (Szegedy et al., 2016, "Rethinking the Inception architecture"): the target
is q = (1 - eps) * onehot(y) + eps / K and the loss is -sum_k q_k log p_k, p = softmax(logits).
Checked against ``loss_function("cross_entropy", label_smoothing=eps)`` in NumPy, and its
minimizer: by Gibbs' inequality the cross-entropy H(q, p) is smallest at p = q, so the
predicted probability of the true class goes to 1 - eps + eps/K instead of 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regulab.engine.trainer import loss_function


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def smoothed_ce_numpy(logits: np.ndarray, y: np.ndarray, eps: float) -> float:
    """Mean over the batch of -sum_k q_k log p_k with q = (1 - eps) onehot + eps / K."""
    n, k = logits.shape
    q = (1 - eps) * np.eye(k)[y] + eps / k
    return float(-(q * log_softmax(logits)).sum(axis=1).mean())


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3, 0.9])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_loss_matches_numpy_formula(eps, k):
    rng = np.random.default_rng(k)
    logits = rng.normal(scale=3.0, size=(16, k))
    y = rng.integers(0, k, size=16)
    got = loss_function("cross_entropy", label_smoothing=eps)(torch.from_numpy(logits),
                                                              torch.from_numpy(y))
    assert float(got) == pytest.approx(smoothed_ce_numpy(logits, y, eps), rel=1e-12, abs=1e-12)


def test_zero_smoothing_is_plain_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 4))
    y = rng.integers(0, 4, size=8)
    plain = -log_softmax(logits)[np.arange(8), y].mean()
    got = loss_function("cross_entropy", label_smoothing=0.0)(torch.from_numpy(logits),
                                                             torch.from_numpy(y))
    default = loss_function("cross_entropy")(torch.from_numpy(logits), torch.from_numpy(y))
    assert float(got) == pytest.approx(plain, rel=1e-12)
    assert float(default) == float(got)


@pytest.mark.parametrize("eps, k", [(0.1, 10), (0.2, 3), (0.5, 2)])
def test_gradient_vanishes_at_the_smoothed_target(eps, k):
    # d loss / d logits = p - q, zero exactly at logits = log q
    q = np.full(k, eps / k)
    q[1] += 1 - eps
    logits = torch.tensor(np.log(q)[None, :], requires_grad=True)
    loss_function("cross_entropy", label_smoothing=eps)(logits, torch.tensor([1])).backward()
    np.testing.assert_allclose(logits.grad.numpy(), 0.0, atol=1e-12)


@pytest.mark.parametrize("eps, k", [(0.1, 10), (0.2, 3), (0.5, 2)])
def test_minimizer_puts_1_minus_eps_plus_eps_over_k_on_the_true_class(eps, k):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, k, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.tensor([k - 1])
    loss_fn = loss_function("cross_entropy", label_smoothing=eps)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        loss_fn(logits, y).backward()
        opt.step()
    p = torch.softmax(logits.detach(), dim=1)[0].numpy()
    assert p[k - 1] == pytest.approx(1 - eps + eps / k, abs=1e-4)
    np.testing.assert_allclose(p[:k - 1], eps / k, atol=1e-4)
    # the minimum value is the entropy of q
    q = np.append(np.full(k - 1, eps / k), 1 - eps + eps / k)
    assert float(loss_fn(logits.detach(), y)) == pytest.approx(-(q * np.log(q)).sum(), abs=1e-7)
