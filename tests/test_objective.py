"""The one objective of both engines (``regulab.engine.objective``) against its formulas,
recomputed in NumPy: the losses (cross-entropy with label smoothing, BCE, MSE), the hits and
the epoch summary, for one network ``(B, ...)`` and for a population ``(K, B, ...)`` -- whose
member k must give what member k alone gives. And one R^2: a multi-output regression run's
``val_r2`` (results.json) equals evaluation.json's ``r2`` and ``sklearn.metrics.r2_score``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import r2_score

import regulab as rl
from regulab.engine.objective import Objective, loss_function, member_cross_entropy
from regulab.metrics import r2, r2_from_sums
from regulab.regularize.multitask import Tasks

K, B, C = 3, 16, 5
EPS = [0.0, 0.1, 0.3]


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def ce_numpy(z: np.ndarray, y: np.ndarray, eps: float) -> float:
    """(1 - eps) * nll + eps * mean_c(-log p_c), averaged over the batch."""
    logp = log_softmax(z)
    nll = -logp[np.arange(len(y)), y]
    return float(((1 - eps) * nll + eps * (-logp.mean(axis=-1))).mean())


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(K, B, C, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (K, B), generator=g)
    return z, y


def test_single_cross_entropy_is_the_formula():
    z, y = batch()
    for eps in EPS:
        got = loss_function("cross_entropy", eps)(z[0], y[0])
        assert float(got) == pytest.approx(ce_numpy(z[0].numpy(), y[0].numpy(), eps), rel=1e-12)


@pytest.mark.parametrize("eps", [EPS, [0.0] * K, [0.2] * K])
def test_stacked_cross_entropy_is_each_members_single_loss(eps):
    z, y = batch(1)
    stacked = Objective("cross_entropy", eps, members=K)(z, y)
    assert stacked.shape == (K,)
    for k in range(K):
        expected = ce_numpy(z[k].numpy(), y[k].numpy(), eps[k])
        assert float(stacked[k]) == pytest.approx(expected, rel=1e-6)
        assert float(stacked[k]) == pytest.approx(float(F.cross_entropy(z[k], y[k], label_smoothing=eps[k])),
                                                  rel=1e-6)
        assert float(member_cross_entropy(z, y, torch.tensor(eps))[k]) == pytest.approx(expected, rel=1e-6)
    # the check is not passed by the wrong formula: unsmoothed differs where eps > 0
    plain = Objective("cross_entropy", members=K)(z, y)
    assert [bool(torch.isclose(plain[k], stacked[k])) for k in range(K)] == [e == 0 for e in eps]


def test_mse_and_bce_are_the_formulas():
    g = torch.Generator().manual_seed(2)
    out, y = torch.randn(K, B, 2, generator=g, dtype=torch.float64), torch.randn(K, B, 2, generator=g,
                                                                                  dtype=torch.float64)
    stacked = Objective("mse", members=K)(out, y)
    for k in range(K):
        expected = ((out[k].numpy() - y[k].numpy()) ** 2).mean()
        assert float(stacked[k]) == pytest.approx(expected, rel=1e-12)
        assert float(loss_function("mse")(out[k], y[k])) == pytest.approx(expected, rel=1e-12)
    z, t = torch.randn(B, 1, generator=g, dtype=torch.float64), torch.randint(0, 2, (B,), generator=g)
    s = 1 / (1 + np.exp(-z.numpy()[:, 0]))
    expected = -(t.numpy() * np.log(s) + (1 - t.numpy()) * np.log(1 - s)).mean()
    assert float(loss_function("bce")(z, t)) == pytest.approx(expected, rel=1e-12)


def test_hits_count_correct_predictions_or_sum_squared_errors():
    z, y = batch(3)
    stacked = Objective("cross_entropy", members=K).hits(z, y)
    for k in range(K):
        expected = int((z[k].numpy().argmax(-1) == y[k].numpy()).sum())
        assert int(stacked[k]) == expected == int(Objective("cross_entropy").hits(z[k], y[k]))
    logits = torch.tensor([[0.5], [-1.0], [2.0]])
    assert int(Objective("bce").hits(logits, torch.tensor([1.0, 1.0, 1.0]))) == 2   # z > 0 is class 1
    out, t = torch.randn(K, B, 2, dtype=torch.float64), torch.randn(K, B, 2, dtype=torch.float64)
    sse = Objective("mse", members=K).hits(out, t)
    assert sse.shape == (K, 2)
    np.testing.assert_allclose(sse.numpy(), ((out - t).numpy() ** 2).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(Objective("mse").hits(out[0], t[0]).numpy(), sse[0].numpy(), rtol=1e-12)


def test_summary_gives_loss_and_accuracy_or_mse_and_sklearns_r2():
    logs = Objective().summary("val", torch.tensor(12.0), torch.tensor(7), 10, torch.zeros(10))
    assert logs == {"val_loss": 1.2, "val_acc": 0.7}
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3)) * [1.0, 10.0, 0.1]       # outputs on different scales
    pred = y + rng.normal(size=(50, 3)) * 0.5
    sse = torch.from_numpy(((pred - y) ** 2).sum(axis=0))
    logs = Objective("mse").summary("val", torch.tensor(0.0), sse, 50, torch.from_numpy(y))
    assert logs["val_mse"] == pytest.approx(((pred - y) ** 2).mean(), rel=1e-12)
    assert logs["val_r2"] == pytest.approx(r2_score(y, pred), rel=1e-12)
    # the uniform average, not the variance-weighted one (which differs here)
    assert abs(r2_score(y, pred, multioutput="variance_weighted") - r2_score(y, pred)) > 0.1


def test_r2_from_sums_is_sklearns_default_with_force_finite():
    assert float(r2_from_sums(torch.tensor([1.0, 0.0]), torch.tensor([4.0, 0.0]))) == 0.875
    assert float(r2_from_sums(torch.tensor([1.0]), torch.tensor([0.0]))) == 0.0
    y = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])           # first output constant
    for pred in (y + 0.1, y.copy()):
        assert float(r2(torch.from_numpy(pred), torch.from_numpy(y))) == pytest.approx(r2_score(y, pred))


def test_multitask_delegates_to_tasks():
    tasks = Tasks(4, ["parity"], weights=[0.5], label_smoothing=0.1)
    g = torch.Generator().manual_seed(0)
    out = torch.randn(8, 6, generator=g)
    y = torch.from_numpy(tasks.labels(np.arange(8) % 4))
    obj = Objective("cross_entropy", 0.1, tasks=tasks)
    total, parts = obj.losses(out, y)
    main, aux = out[:, :4], out[:, 4:]
    expected = [ce_numpy(main.double().numpy(), y[:, 0].numpy(), 0.1),
                ce_numpy(aux.double().numpy(), y[:, 1].numpy(), 0.1)]
    np.testing.assert_allclose(parts.numpy(), expected, rtol=1e-5)
    assert float(total) == pytest.approx(expected[0] + 0.5 * expected[1], rel=1e-5)
    assert obj.hits(out, y).tolist() == [int((main.argmax(1) == y[:, 0]).sum()),
                                         int((aux.argmax(1) == y[:, 1]).sum())]


def test_a_population_objective_refuses_what_has_no_stacked_form():
    with pytest.raises(ValueError, match="cross_entropy or mse"):
        Objective("bce", members=2)
    with pytest.raises(ValueError, match="loss must be"):
        Objective("hinge")


def test_multi_output_regression_reports_one_r2(workdir):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    W = rng.normal(size=(4, 2))
    y = (X @ W * [1.0, 20.0] + rng.normal(size=(300, 2)) * [0.3, 2.0]).astype(np.float32)
    np.savez(workdir / "two.npz", X=X, y=y)
    cfg = rl.load_config(None, {"data.dataset": f"npz:{workdir / 'two.npz'}", "data.task": "regression",
                                "model.hidden": [16], "optim.lr": 0.01, "train.epochs": 3,
                                "train.batch_size": 32, "train.progress": False, "train.device": "cpu"})
    run = rl.train(cfg, out=workdir / "run", progress=False)
    results = json.loads((run.run_dir / "results.json").read_text())
    evaluation = json.loads((run.run_dir / "evaluation.json").read_text())
    from regulab.runs.prepare import prepare
    p = prepare(cfg)
    p.pipeline.load_state_dict(run.model.state_dict())
    Xv, yv = p.splits["val"]
    pred = p.trainer.predict(Xv).double().numpy()
    expected = r2_score(yv.double().numpy(), pred)
    assert results["val_r2"] == pytest.approx(evaluation["val"]["r2"], rel=1e-5)
    assert results["val_r2"] == pytest.approx(expected, rel=1e-5)
    assert run.history[-1]["val_r2"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - r2_score(yv.double().numpy(), pred, multioutput="variance_weighted")) > 1e-3


def test_one_networks_outputs_may_have_more_dimensions():
    """A user's network with per-position logits ``(B, C, T)``: classes on dimension 1, as
    ``F.cross_entropy`` reads them; every position counts."""
    g = torch.Generator().manual_seed(4)
    z, y = torch.randn(6, 3, 5, generator=g), torch.randint(0, 3, (6, 5), generator=g)
    obj = Objective("cross_entropy", 0.1)
    assert torch.equal(obj(z, y), F.cross_entropy(z, y, label_smoothing=0.1))
    assert int(obj.hits(z, y)) == int((z.argmax(1) == y).sum())
