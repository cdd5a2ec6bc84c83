"""Bias and variance graded, the diagnosis, and a study's verdicts and advice on constructed
cases (the numbers recomputed here by hand)."""

from __future__ import annotations

import math

import pytest

from regulab.diagnose import BIAS_GRADES, VARIANCE_GRADES, against, assess, diagnose, grade
from regulab.studies import aggregate, verdicts
from regulab.studies.spec import Variant


@pytest.mark.parametrize("train, val, expected", [
    (0.99, 0.97, "good fit"),                  # bias 0.01, gap 0.02
    (0.80, 0.78, "underfit"),                  # bias 0.20, gap 0.02
    (1.00, 0.60, "overfit"),                   # bias 0.00, gap 0.40
    (0.70, 0.50, "underfit and overfit"),      # bias 0.30, gap 0.20
    (0.90, 0.85, "good fit"),                  # both exactly on the thresholds: low
    (math.nan, 0.5, "underfit"),
])
def test_diagnose_names_bias_and_variance(train, val, expected):
    assert diagnose(train, val) == expected
    assert assess(train, val)["diagnosis"] == expected


def test_grades_and_their_thresholds():
    assert BIAS_GRADES == (0.10, 0.25) and VARIANCE_GRADES == (0.05, 0.15)
    assert [grade(x, (0.05, 0.15)) for x in (0.0, 0.05, 0.051, 0.15, 0.151, math.nan)] == \
        ["low", "low", "moderate", "moderate", "high", "high"]
    a = assess(0.70, 0.50)
    assert a["bias"] == pytest.approx(0.30) and a["variance"] == pytest.approx(0.20)
    assert (a["bias_grade"], a["variance_grade"]) == ("high", "high")
    b = assess(0.84, 0.80)
    assert (b["bias_grade"], b["variance_grade"]) == ("moderate", "low")


def test_a_configured_reference_moves_the_bias():
    # a task whose best possible accuracy is 0.85: train 0.84 is a fit, not underfit
    a = assess(0.84, 0.82, reference=0.85)
    assert a["bias"] == pytest.approx(0.01) and a["diagnosis"] == "good fit"
    assert assess(0.84, 0.82)["diagnosis"] == "underfit"


def test_gap_closed_and_train_cost():
    base, reg = assess(1.00, 0.60), assess(0.92, 0.77)      # gaps 0.40 and 0.15
    out = against(reg, base)
    assert out["gap_closed"] == pytest.approx((0.40 - 0.15) / 0.40)      # 62.5%
    assert out["train_cost"] == pytest.approx(0.08)
    assert against(assess(1.0, 0.5), assess(0.9, 0.9))["gap_closed"] is None    # no gap to close
    assert against(assess(1.0, 0.4), base)["gap_closed"] == pytest.approx(-0.5)  # wider


def _entry(name, train, val, overrides=None):
    runs = [{"seed": s, "fold": None,
             "results": {"train_acc": train, "val_acc": val, "test_acc": val, "train_loss": 0.1,
                         "val_loss": 1.0, "test_loss": 1.0}} for s in range(2)]
    return aggregate.summarize(Variant(name, overrides or {}, label=name), runs, 10)


def _study():
    entries = [_entry("base", 1.00, 0.60),
               _entry("drop", 0.92, 0.77, {"model.dropout": 0.3}),         # the best on val
               _entry("l2", 0.97, 0.70, {"regularization.l2": 1e-3}),
               _entry("drop-big", 0.65, 0.62, {"model.dropout": 0.7}),     # too strong
               _entry("both", 0.75, 0.25, {"optim.weight_decay": 0.1})]
    verdicts.verdicts(entries, "base", "acc")
    return {e["name"]: e for e in entries}


def test_verdicts_on_a_constructed_study():
    e = _study()
    assert e["base"]["verdict"] == "overfit (high variance, low bias)"
    assert e["drop"]["verdict"] == "overfit (moderate variance, low bias)"
    assert e["drop-big"]["verdict"] == "underfit (low variance, high bias)"
    assert e["both"]["verdict"] == "underfit and overfit (high variance, moderate bias)"
    fit = e["drop"]["fit"]
    assert fit["gap_closed"] == pytest.approx(0.625) and fit["train_cost"] == pytest.approx(0.08)
    assert fit["bias"] == pytest.approx(0.08) and fit["variance"] == pytest.approx(0.15)
    assert e["base"]["fit"]["gap_closed"] is None


def test_advice_follows_the_numbers():
    e = _study()
    drop = e["drop"]["advice"]
    assert "closes 62% of the baseline's gap at a cost of 0.08 train accuracy" in drop
    # the best single technique still leaves a gap: combine it with the next best on validation
    # that changes another key (l2, 0.70; not drop-big, 0.62, which shares model.dropout)
    assert "Gap still 0.15 after the best single technique: combine it with l2" in drop
    big = e["drop-big"]["advice"]
    assert "closes 92% of the baseline's gap at a cost of 0.35 train accuracy" in big  # 0.37/0.4
    assert "Train accuracy 0.65: too strong, lower the strength or train longer" in big
    assert "gap 0.40" in e["base"]["advice"] and "drop" in e["base"]["advice"]
    assert "closes 32% of the baseline's gap" in e["l2"]["advice"]      # (0.40 - 0.27) / 0.40
    assert "validation +0.100 against the baseline" in e["l2"]["advice"]
    assert "widens the baseline's gap by 25% at a cost of 0.25 train accuracy" in e["both"]["advice"]


def test_advice_names_what_the_forward_step_found_adds_most():
    """With a forward step, the best technique's partner is the one whose pair gained most on
    validation, even when it is not the next best alone; none gained: no partner."""
    entries = [_entry("base", 1.00, 0.60), _entry("drop", 0.92, 0.77, {"model.dropout": 0.3}),
               _entry("l2", 0.97, 0.70, {"regularization.l2": 1e-3}),
               _entry("ls", 1.00, 0.61, {"regularization.label_smoothing": 0.1})]
    forward = [{"partner": None, "gain": 0.0}, {"partner": "l2", "gain": 0.004},
               {"partner": "ls", "gain": 0.021}]
    verdicts.verdicts(entries, "base", "acc", forward=forward)
    assert "combine it with ls (+0.021 on validation merged with it)" in entries[1]["advice"]
    verdicts.verdicts(entries, "base", "acc", forward=[{"partner": "ls", "gain": -0.01}])
    assert entries[1]["advice"].endswith("after the best single technique: add data or augmentation")


def test_a_good_fit_has_nothing_to_fix():
    entries = [_entry("base", 1.00, 0.60), _entry("good", 0.95, 0.93, {"model.dropout": 0.3})]
    verdicts.verdicts(entries, "base", "acc")
    good = entries[1]
    assert good["verdict"] == "good fit (low variance, low bias)"
    assert "closes 95% of the baseline's gap at a cost of 0.05 train accuracy" in good["advice"]
    assert "nothing left to fix" in good["advice"]
