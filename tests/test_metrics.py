"""Metrics checked against scikit-learn on seeded random data."""

import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from regulab.metrics import (accuracy, classification_report, confusion_matrix, mae, mse,
                             precision_recall_f1, predictions, r2, regression_report)


def _data(n=300, c=5, seed=0, never_predicted=None):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g)
    if never_predicted is not None:
        logits[:, never_predicted] = -1e9  # argmax never picks this class
    y = torch.randint(0, c, (n,), generator=g)
    return logits, y


def test_accuracy_logits_and_predictions():
    logits, y = _data()
    pred = logits.argmax(1)
    expected = skm.accuracy_score(y.numpy(), pred.numpy())
    assert accuracy(logits, y).item() == pytest.approx(expected)
    assert accuracy(pred, y).item() == pytest.approx(expected)
    assert accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])).item() == 0.5


@pytest.mark.parametrize("shape", [(200,), (200, 1)])
def test_accuracy_binary_logits_threshold_at_zero(shape):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(shape, generator=g)
    y = torch.randint(0, 2, (200,), generator=g)
    expected = skm.accuracy_score(y.numpy(), (z.reshape(-1) > 0).long().numpy())
    assert accuracy(z, y).item() == pytest.approx(expected)
    assert accuracy(z, y.float().reshape(-1, 1)).item() == pytest.approx(expected)


def test_predictions_shapes():
    assert predictions(torch.tensor([-0.5, 0.0, 0.1])).tolist() == [0, 0, 1]
    assert predictions(torch.tensor([[0.1, 0.9, 0.0]])).tolist() == [1]
    assert predictions(torch.tensor([3, 1])).tolist() == [3, 1]
    with pytest.raises(ValueError, match="shape"):
        predictions(torch.zeros(2, 3, 4))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    logits, y = _data(seed=seed, never_predicted=3)
    pred = logits.argmax(1)
    cm = confusion_matrix(pred, y, 5)
    expected = skm.confusion_matrix(y.numpy(), pred.numpy(), labels=list(range(5)))
    assert cm.dtype == torch.int64 and cm.shape == (5, 5)
    np.testing.assert_array_equal(cm.numpy(), expected)
    assert cm[:, 3].sum() == 0 and cm.sum() == len(y)
    np.testing.assert_array_equal(confusion_matrix(logits, y, 5).numpy(), expected)


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 3\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_f1_matches_sklearn(seed):
    logits, y = _data(seed=seed, never_predicted=2)
    y[y == 4] = 0  # class 4 never occurs: recall undefined -> 0
    pred = logits.argmax(1)
    out = precision_recall_f1(confusion_matrix(pred, y, 5))
    p, r, f, s = skm.precision_recall_fscore_support(
        y.numpy(), pred.numpy(), labels=list(range(5)), zero_division=0
    )
    for key, ref in (("precision", p), ("recall", r), ("f1", f)):
        assert out[key].dtype == torch.float64
        np.testing.assert_allclose(out[key].numpy(), ref, atol=1e-12)
    np.testing.assert_array_equal(out["support"].numpy(), s)
    assert out["precision"][2] == 0 and out["recall"][4] == 0
    mp, mr, mf, _ = skm.precision_recall_fscore_support(
        y.numpy(), pred.numpy(), labels=list(range(5)), average="macro", zero_division=0
    )
    assert out["macro_precision"].item() == pytest.approx(mp, abs=1e-12)
    assert out["macro_recall"].item() == pytest.approx(mr, abs=1e-12)
    assert out["macro_f1"].item() == pytest.approx(mf, abs=1e-12)


def test_perfect_predictions_reduce_to_ones():
    y = torch.tensor([0, 1, 2, 2, 1])
    out = precision_recall_f1(confusion_matrix(y, y, 3))
    assert out["f1"].tolist() == [1.0, 1.0, 1.0] and out["macro_f1"].item() == 1.0


@pytest.mark.parametrize("k", [None, 1, 3])
def test_regression_metrics_match_sklearn(k):
    g = torch.Generator().manual_seed(7)
    shape = (150,) if k is None else (150, k)
    y = torch.randn(shape, generator=g) * 3 + 1
    pred = y + torch.randn(shape, generator=g)
    yn, pn = y.numpy().astype(np.float64), pred.numpy().astype(np.float64)
    assert mse(pred, y).item() == pytest.approx(skm.mean_squared_error(yn, pn), rel=1e-10)
    assert mae(pred, y).item() == pytest.approx(skm.mean_absolute_error(yn, pn), rel=1e-10)
    assert r2(pred, y).item() == pytest.approx(skm.r2_score(yn, pn), rel=1e-10)


def test_r2_special_cases():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert r2(y, y).item() == 1.0
    assert r2(torch.full_like(y, 2.5), y).item() == pytest.approx(0.0)  # predicting the mean
    const = torch.ones(4)
    assert r2(const, const).item() == 1.0  # SS_tot = 0, exact: 1 (sklearn force_finite)
    assert r2(const * 2, const).item() == skm.r2_score(const.numpy(), 2 * const.numpy()) == 0.0


def test_regression_shape_handling():
    y = torch.arange(6.0)
    assert mse(y.reshape(6, 1), y).item() == 0.0  # (N, 1) vs (N,) is not broadcast to (N, N)
    with pytest.raises(ValueError, match="same shape"):
        mse(torch.zeros(5), y)


def test_classification_report_json_ready():
    logits, y = _data(n=120, c=3, seed=4, never_predicted=1)
    rep = classification_report(logits, y, ["cat", "dog", "fish"])
    json.dumps(rep)  # plain Python types only
    pred = logits.argmax(1).numpy()
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y.numpy(), pred))
    assert rep["classes"] == ["cat", "dog", "fish"]
    assert rep["confusion_matrix"] == skm.confusion_matrix(y.numpy(), pred).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(y.numpy(), pred, zero_division=0)
    for i, name in enumerate(rep["classes"]):
        row = rep["per_class"][name]
        assert row["precision"] == pytest.approx(p[i]) and row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i]) and row["support"] == s[i]
    assert rep["per_class"]["dog"]["precision"] == 0.0
    assert rep["macro"]["f1"] == pytest.approx(f.mean())


def test_classification_report_binary_logits():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(100, 1, generator=g)
    y = torch.randint(0, 2, (100,), generator=g)
    rep = classification_report(z, y, ["neg", "pos"])
    pred = (z[:, 0] > 0).long().numpy()
    assert rep["confusion_matrix"] == skm.confusion_matrix(y.numpy(), pred).tolist()
    assert rep["per_class"]["pos"]["f1"] == pytest.approx(skm.f1_score(y.numpy(), pred))


def test_classification_report_rejects_bad_classes():
    logits, y = _data(n=10, c=3)
    with pytest.raises(ValueError, match="2 names but logits have 3 columns"):
        classification_report(logits, y, ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        classification_report(logits, y, ["a", "a", "b"])


def test_regression_report():
    y = torch.tensor([[1.0], [2.0], [4.0]])
    pred = torch.tensor([[1.5], [2.0], [3.0]])
    rep = regression_report(pred, y)
    assert set(rep) == {"mse", "r2", "mae"} and all(isinstance(v, float) for v in rep.values())
    assert rep["mse"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert rep["mae"] == pytest.approx(0.5)
    assert rep["r2"] == pytest.approx(skm.r2_score(y.numpy(), pred.numpy()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda():
    logits, y = _data()
    cm = confusion_matrix(logits.cuda(), y.cuda(), 5)
    assert cm.device.type == "cuda"
    np.testing.assert_array_equal(cm.cpu().numpy(), confusion_matrix(logits, y, 5).numpy())
    assert r2(y.cuda().float(), y.cuda().float()).item() == 1.0
