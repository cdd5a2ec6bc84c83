"""L1/L2 penalties: values and gradients against NumPy, parameter selection, validation, and
what weight decay in SGD / Adam / AdamW does compared with an L2 penalty in the loss.

Weights are drawn from seeded generators; expected values are recomputed in NumPy from the
parameters picked by name (``*.weight`` of Linear layers), independently of the library's
``dim() >= 2`` rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from regulab.errors import ConfigError
from regulab.nn import MLP, Pipeline
from regulab.regularize.penalties import NormPenalty, l1_penalty, l2_penalty, selected_parameters


def init_(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def mlp(seed: int = 0, **kw) -> nn.Module:
    return init_(MLP(5, [4, 3], 2, **kw).double(), seed)


def linear_arrays(model: nn.Module, kind: str) -> list[np.ndarray]:
    """The Linear layers' weights or biases as NumPy arrays, found by type."""
    return [getattr(m, kind).detach().numpy().copy() for m in model.modules()
            if isinstance(m, nn.Linear) and getattr(m, kind) is not None]


def np_penalty(arrays: list[np.ndarray], l1: float, l2: float) -> float:
    return sum(l1 * np.abs(a).sum() + l2 * (a ** 2).sum() for a in arrays)


# --- values ------------------------------------------------------------------------------------

def test_l1_l2_of_an_mlp_match_numpy():
    model = mlp()
    ws = linear_arrays(model, "weight")
    params = [p for _, p in selected_parameters(model)]
    assert len(params) == 3
    assert l1_penalty(params).item() == pytest.approx(sum(np.abs(w).sum() for w in ws), rel=1e-12)
    # sum over layers of the squared Frobenius norm
    assert l2_penalty(params).item() == pytest.approx(sum(np.linalg.norm(w, "fro") ** 2 for w in ws), rel=1e-12)
    pen = NormPenalty(l1=0.01, l2=0.003)
    assert pen(model).item() == pytest.approx(np_penalty(ws, 0.01, 0.003), rel=1e-12)


def test_empty_parameter_list_is_zero():
    assert float(l1_penalty([])) == 0.0 and float(l2_penalty([])) == 0.0


def test_default_penalizes_weights_only_not_biases():
    model = mlp()
    names = [n for n, _ in selected_parameters(model)]
    assert names == ["fc1.weight", "fc2.weight", "out.weight"]
    pen = NormPenalty(l1=0.1, l2=0.1)
    before = pen(model).item()
    with torch.no_grad():
        model.out.bias.add_(10.0)
        model.fc1.bias.mul_(-3.0)
    assert pen(model).item() == before


def test_include_bias_adds_the_linear_biases():
    model = mlp()
    names = [n for n, _ in selected_parameters(model, include_bias=True)]
    assert set(names) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"}
    expected = np_penalty(linear_arrays(model, "weight") + linear_arrays(model, "bias"), 0.02, 0.5)
    assert NormPenalty(l1=0.02, l2=0.5, include_bias=True)(model).item() == pytest.approx(expected, rel=1e-12)


def test_batchnorm_gamma_beta_are_never_penalized():
    model = mlp(batchnorm=True)   # Linear layers without bias, BatchNorm1d after each
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    names = [n for n, _ in selected_parameters(model, include_bias=True)]
    assert names == ["fc1.weight", "fc2.weight", "out.weight", "out.bias"]
    expected = np_penalty(linear_arrays(model, "weight") + linear_arrays(model, "bias"), 0.0, 1.0)
    assert NormPenalty(l2=1.0, include_bias=True)(model).item() == pytest.approx(expected, rel=1e-12)


def test_frozen_parameters_are_left_out():
    model = mlp()
    model.fc1.weight.requires_grad_(False)
    assert [n for n, _ in selected_parameters(model)] == ["fc2.weight", "out.weight"]


def test_layer_selection():
    model = mlp()
    assert [n for n, _ in selected_parameters(model, layers=["fc2"])] == ["fc2.weight"]
    assert [n for n, _ in selected_parameters(model, layers=["out", "fc1"])] == ["fc1.weight", "out.weight"]
    w2 = model.fc2.weight.detach().numpy()
    assert NormPenalty(l2=2.0, layers=["fc2"])(model).item() == pytest.approx(2.0 * (w2 ** 2).sum(), rel=1e-12)


def test_layer_names_inside_a_pipeline():
    model = Pipeline(nn.Identity(), mlp())
    assert [n for n, _ in selected_parameters(model, layers=["net.fc1"])] == ["net.fc1.weight"]
    # a container name selects every weight layer under it
    assert len(selected_parameters(model, layers=["net"])) == 3


def test_unknown_layer_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as err:
        NormPenalty(l2=0.1, layers=["fc9"])(mlp())
    msg = str(err.value)
    assert "\n" not in msg
    assert "'regularization.penalty_layers'" in msg and "'fc9'" in msg
    assert "fc1, fc2, out" in msg          # the valid layer names
    assert "act1" not in msg               # modules without weights are not offered
    with pytest.raises(ConfigError, match="penalty_layers"):
        selected_parameters(mlp(), layers=["act1"])   # exists, but owns no weight


@pytest.mark.parametrize("kwargs, key", [
    ({"l1": -0.1}, "regularization.l1"), ({"l2": -1e-3}, "regularization.l2"),
    ({"l2": float("nan")}, "regularization.l2"), ({"l1": float("inf")}, "regularization.l1"),
    ({"l2": "0.1"}, "regularization.l2"), ({"layers": "fc1"}, "regularization.penalty_layers"),
    ({"include_bias": 1}, "regularization.penalty_bias"),
])
def test_bad_values_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError, match=f"'{key}'") as err:
        NormPenalty(**kwargs)
    assert "\n" not in str(err.value) and "got" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_error_message_names_field_value_and_range():
    with pytest.raises(ConfigError) as err:
        NormPenalty(l2=-0.1)
    assert str(err.value) == "config key 'regularization.l2' must be a number >= 0.0; got -0.1"


def test_config_round_trip_and_repr():
    pen = NormPenalty(l1=1e-4, l2=1e-3, layers=["fc1"], include_bias=True)
    cfg = pen.get_config()
    assert cfg == {"l1": 1e-4, "l2": 1e-3, "layers": ["fc1"], "include_bias": True}
    assert NormPenalty(**cfg).get_config() == cfg
    assert repr(pen) == "NormPenalty(l1=0.0001, l2=0.001, layers=['fc1'], include_bias=True)"


# --- gradients ---------------------------------------------------------------------------------

def data(seed: int = 1, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 2, generator=g, dtype=torch.float64)


def test_zero_coefficients_are_no_penalty():
    model = mlp()
    X, Y = data()
    pen = NormPenalty(l1=0.0, l2=0.0, include_bias=True)(model)
    assert pen.item() == 0.0 and pen.dim() == 0 and pen.dtype == torch.float64
    ((model(X) - Y) ** 2).mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (((model(X) - Y) ** 2).mean() + pen).backward()
    for a, b in zip(plain, (p.grad for p in model.parameters())):
        assert torch.equal(a, b)


def test_gradient_is_2_l2_w_plus_l1_sign_w():
    model = mlp()
    with torch.no_grad():
        model.fc1.weight[0, 0] = 0.0    # the subgradient of |w| at 0 is 0
    l1, l2 = 0.03, 0.2
    NormPenalty(l1=l1, l2=l2)(model).backward()
    for m in (model.fc1, model.fc2, model.out):
        w = m.weight.detach().numpy()
        np.testing.assert_allclose(m.weight.grad.numpy(), 2 * l2 * w + l1 * np.sign(w), rtol=0, atol=1e-12)
        assert m.bias.grad is None            # biases are not in the penalty's graph
    assert model.fc1.weight.grad[0, 0].item() == 0.0


# --- weight decay vs an L2 penalty ---------------------------------------------------------------

K, LR, WD = 5, 0.05, 0.1


def train(make_opt, penalty=None, seed: int = 0) -> list[torch.Tensor]:
    """K steps of ``make_opt`` on a fixed MSE loss (+ ``penalty``); the final parameters."""
    model = mlp(seed)
    X, Y = data()
    opt = make_opt(model.parameters())
    for _ in range(K):
        loss = ((model(X) - Y) ** 2).mean()
        if penalty is not None:
            loss = loss + penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


# weight decay acts on every parameter, so the matching penalty includes the biases
L2_OF_WD = NormPenalty(l2=WD / 2, include_bias=True)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_weight_decay_equals_l2_penalty_of_half_wd(momentum):
    decayed = train(lambda p: torch.optim.SGD(p, lr=LR, momentum=momentum, weight_decay=WD))
    penalized = train(lambda p: torch.optim.SGD(p, lr=LR, momentum=momentum), L2_OF_WD)
    assert max_diff(decayed, penalized) < 1e-6
    assert max_diff(decayed, train(lambda p: torch.optim.SGD(p, lr=LR, momentum=momentum))) > 1e-3


def test_torch_adam_weight_decay_is_the_l2_penalty():
    # torch's Adam adds wd * w to the gradient before the moment estimates: L2 as a gradient term
    decayed = train(lambda p: torch.optim.Adam(p, lr=LR, weight_decay=WD))
    penalized = train(lambda p: torch.optim.Adam(p, lr=LR), L2_OF_WD)
    assert max_diff(decayed, penalized) < 1e-6
    assert max_diff(decayed, train(lambda p: torch.optim.Adam(p, lr=LR))) > 1e-4


def test_adamw_differs_from_adam_with_l2_penalty():
    adamw = train(lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=WD))
    assert max_diff(adamw, train(lambda p: torch.optim.Adam(p, lr=LR), L2_OF_WD)) > 1e-4
    assert max_diff(adamw, train(lambda p: torch.optim.Adam(p, lr=LR, weight_decay=WD))) > 1e-4


def test_adamw_is_the_decoupled_update_in_numpy():
    """w <- w - lr*wd*w - lr * m_hat / (sqrt(v_hat) + eps); m, v see only the loss's gradient."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    adamw = train(lambda p: torch.optim.AdamW(p, lr=LR, betas=(b1, b2), eps=eps, weight_decay=WD))

    model = mlp()                         # used only to evaluate the loss's gradient at w
    X, Y = data()
    w = [p.detach().numpy().copy() for p in model.parameters()]
    m = [np.zeros_like(a) for a in w]
    v = [np.zeros_like(a) for a in w]
    for t in range(1, K + 1):
        with torch.no_grad():
            for p, a in zip(model.parameters(), w):
                p.copy_(torch.from_numpy(a))
        model.zero_grad()
        ((model(X) - Y) ** 2).mean().backward()
        for i, p in enumerate(model.parameters()):
            g = p.grad.numpy()
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g ** 2
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            w[i] = w[i] - LR * WD * w[i] - LR * m_hat / (np.sqrt(v_hat) + eps)
    assert max_diff(adamw, [torch.from_numpy(a) for a in w]) < 1e-6


def test_wrapped_layers_are_found_by_the_wrapper_name():
    from regulab.nn.models import Regularizers
    model = MLP(5, [4, 3], 2, regularizers=Regularizers(dropconnect=0.5))   # fc1 = DropConnect(Linear)
    names = [n for n, _ in selected_parameters(model, layers=["fc1"])]
    assert names == ["fc1.layer.weight"]
    assert len(selected_parameters(model)) == 3


# --- weight decay of a run acts on the penalty's parameters ---------------------------------------

@pytest.mark.parametrize("penalty_bias", [False, True])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_run_weight_decay_equals_l2_of_half_wd(workdir, penalty_bias, optimizer):
    """``optim.weight_decay = wd`` and ``regularization.l2 = wd/2`` give the same weights, with
    and without biases penalized: the optimizer decays exactly ``selected_parameters``."""
    from regulab.config.core import load_config
    from regulab.runs.prepare import prepare

    def fit(**keys):
        cfg = load_config(None, {"data.dataset": "moons", "data.n_samples": 200, "model.hidden": [8],
                                 "optim.name": optimizer, "optim.lr": 0.1, "train.epochs": 2,
                                 "train.batch_size": 50, "train.early_stopping": False,
                                 "train.progress": False, "train.device": "cpu",
                                 "regularization.penalty_bias": penalty_bias, **keys})
        p = prepare(cfg)
        p.trainer.fit(p.loader, epochs=cfg.train.epochs)
        return [t.detach().clone() for t in p.trainer.model.parameters()]

    decayed, penalized, plain = fit(**{"optim.weight_decay": WD}), fit(**{"regularization.l2": WD / 2}), fit()
    assert max_diff(decayed, penalized) < 1e-6
    assert max_diff(decayed, plain) > 1e-3
