"""Confidence intervals of a change against the baseline, checked against scipy.stats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from regulab.studies import aggregate, intervals
from regulab.studies.spec import Variant

X = [0.81, 0.79, 0.84, 0.80, 0.83]      # a variant's test accuracy, seeds 0..4
Y = [0.78, 0.77, 0.80, 0.79, 0.78]      # the baseline's, same seeds


def test_paired_interval_is_scipy_ttest_rel():
    lo, hi = intervals.paired_interval(X, Y)
    ref = stats.ttest_rel(X, Y).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)
    # by hand: mean of the differences -+ t(0.975, 4) * s / sqrt(5)
    d = np.subtract(X, Y)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-12)


def test_welch_interval_is_scipy_welch():
    x, y = [0.81, 0.79, 0.84, 0.80], [0.70, 0.78, 0.74, 0.75, 0.72, 0.77]
    lo, hi = intervals.welch_interval(x, y)
    ref = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_pairing_narrows_what_the_seeds_share():
    # each seed shifts both runs alike: paired, the change is clear; unpaired, it is not
    base = [0.60, 0.70, 0.80, 0.65, 0.75]
    var = [b + 0.02 + e for b, e in zip(base, [0.001, -0.002, 0.0, 0.002, -0.001])]
    lo, hi = intervals.paired_interval(var, base)
    assert lo > 0
    lo_w, hi_w = intervals.welch_interval(var, base)
    assert lo_w < 0 < hi_w and hi_w - lo_w > 10 * (hi - lo)


def test_fewer_than_two_pairs_give_no_interval():
    assert intervals.paired_interval([0.8], [0.7]) is None
    assert intervals.welch_interval([0.8], [0.7, 0.6]) is None
    out = intervals.interval({(0, None): 0.8, (1, None): None}, {(0, None): 0.7, (1, None): 0.6},
                             paired=True)
    assert out == {"ci95": None, "method": "paired t", "n": 1, "halve": None}


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_seeds_to_halve_from_the_t_quantiles(n):
    def width(k):
        return 2 * stats.t.ppf(0.975, k - 1) * 0.02 / np.sqrt(k)
    m = intervals.seeds_to_halve(n, 0.02)
    assert width(m) <= width(n) / 2 < width(m - 1)
    # the t quantile shrinks with n too, so fewer than 4x the seeds do (3 for 2, 13 for 5),
    # approaching 4x as t nears its normal limit
    assert m <= 4 * n
    if n >= 10:
        assert m >= 3 * n
    assert intervals.seeds_to_halve(1, 0.02) is None and intervals.seeds_to_halve(3, 0.0) is None


def _entry(name, tests, seeds, members=1):
    runs = [{"seed": s, "fold": None, "results": {"train_acc": 1.0, "val_acc": t, "test_acc": t,
                                                  "train_loss": 0.1, "val_loss": 1.0, "test_loss": 1.0}}
            for s, t in zip(seeds, tests)]
    return aggregate.summarize(Variant(name, members=members), runs, 10)


def test_against_baseline_pairs_by_seed_else_welch():
    entries = [_entry("base", Y, range(5)), _entry("same", X[::-1], range(4, -1, -1)),
               _entry("shifted", X, range(10, 15)), _entry("ensemble", X, range(5), members=3),
               _entry("one", X[:1], [0])]
    aggregate.against_baseline(entries, "base", "acc")
    base, same, shifted, ens, one = entries
    assert base["delta_test_ci95"] is None and not base["significant"]
    # runs listed in another order still pair by seed
    ref = stats.ttest_rel(X, Y).confidence_interval(0.95)
    assert same["ci_method"] == "paired t" and same["ci_n"] == 5
    assert same["delta_test_ci95"] == pytest.approx([ref.low, ref.high])
    assert same["delta_val_ci95"] == pytest.approx([ref.low, ref.high])
    assert ref.low > 0 and same["significant"]
    welch = stats.ttest_ind(X, Y, equal_var=False).confidence_interval(0.95)
    for e in (shifted, ens):
        assert e["ci_method"] == "welch t" and e["ci_n"] == [5, 5]
        assert e["delta_test_ci95"] == pytest.approx([welch.low, welch.high])
    assert one["delta_test_ci95"] is None and not one["significant"]
    assert one["delta_test"] == pytest.approx(X[0] - np.mean(Y))
    assert same["ci_seeds_to_halve"] == intervals.seeds_to_halve(5, np.std(np.subtract(X, Y), ddof=1))


def test_star_follows_the_interval_not_the_stds():
    # a change larger than both stds whose interval still holds 0 (2 seeds, t(0.975, 1) = 12.7)
    entries = [_entry("base", [0.60, 0.62], [0, 1]), _entry("a", [0.65, 0.70], [0, 1])]
    aggregate.against_baseline(entries, "base", "acc")
    a = entries[1]
    assert a["delta_test"] > max(a["stats"]["test_acc"]["std"], entries[0]["stats"]["test_acc"]["std"])
    assert a["delta_test_ci95"][0] < 0 < a["delta_test_ci95"][1] and not a["significant"]
