"""Confidence intervals for a change against the baseline, from runs over seeds.

**Paired t** (Student, 1908): when a variant's run of seed s and fold f shares its data split and
initial weights with the baseline's run of (s, f), the change is measured per pair,
d_i = x_i - y_i, i = 1..n, and::

    mean = 1/n sum_i d_i     s = sqrt(1/(n-1) sum_i (d_i - mean)^2)
    CI95 = mean -+ t_{0.975, n-1} * s / sqrt(n)

Pairing removes what both runs of a seed share (the split, the initial weights), so the
interval is narrower than comparing the two groups as if independent.

**Welch t** (Welch, 1947), when the runs cannot be paired (seeds that do not match, or a deep
ensemble whose members are seeded ``seed * members``): with n_x, n_y runs and variances
s_x^2, s_y^2::

    se = sqrt(s_x^2/n_x + s_y^2/n_y)
    df = se^4 / ((s_x^2/n_x)^2/(n_x-1) + (s_y^2/n_y)^2/(n_y-1))     (Welch-Satterthwaite)
    CI95 = (mean_x - mean_y) -+ t_{0.975, df} * se

Fewer than 2 pairs (paired) or fewer than 2 runs on a side (Welch): no interval (``None``).

**Seeds to halve the interval**: its width with n pairs is w(n) = 2 t_{0.975, n-1} s / sqrt(n);
assuming the same s, the smallest n' with w(n') <= w(n)/2: about 4n for many seeds, fewer for
few, since the t quantile shrinks too (2 seeds -> 3, 3 -> 5, 5 -> 13, 10 -> 33). For Welch, n
runs on each side with the same variances.
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

__all__ = ["paired_interval", "welch_interval", "interval", "seeds_to_halve", "LEVEL"]

LEVEL = 0.95


def _t(df: float) -> float:
    """t_{(1+LEVEL)/2, df}: the two-sided quantile."""
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def _mean_var(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def paired_interval(x: list[float], y: list[float]) -> tuple[float, float] | None:
    """The 95% interval of mean(x_i - y_i) over pairs (x_i, y_i); ``None`` under 2 pairs."""
    d = [a - b for a, b in zip(x, y, strict=True)]
    if len(d) < 2:
        return None
    m, var = _mean_var(d)
    half = _t(len(d) - 1) * math.sqrt(var / len(d))
    return m - half, m + half


def _welch(vx: float, nx: int, vy: float, ny: int) -> tuple[float, float]:
    """(se, df) of a Welch comparison from the variances and sizes; df is Welch-Satterthwaite's,
    n_x + n_y - 2 when both variances are 0 (the interval is then a point anyway)."""
    ax, ay = vx / nx, vy / ny
    se = math.sqrt(ax + ay)
    den = ax ** 2 / (nx - 1) + ay ** 2 / (ny - 1)
    return se, (se ** 4 / den if den > 0 else nx + ny - 2)


def welch_interval(x: list[float], y: list[float]) -> tuple[float, float] | None:
    """The 95% Welch interval of mean(x) - mean(y); ``None`` under 2 values on a side."""
    if len(x) < 2 or len(y) < 2:
        return None
    (mx, vx), (my, vy) = _mean_var(x), _mean_var(y)
    se, df = _welch(vx, len(x), vy, len(y))
    half = _t(df) * se
    return mx - my - half, mx - my + half


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def interval(x: dict[Any, Any], y: dict[Any, Any], paired: bool) -> dict[str, Any]:
    """The change mean(x) - mean(y) between two groups of runs keyed by (seed, fold): paired
    over the keys both have with finite values when ``paired``, else Welch over each side's
    finite values. Returns ``ci95`` ([lo, hi] or None), ``method`` ("paired t" / "welch t"),
    ``n`` (pairs, or [n_x, n_y]) and ``halve`` (the seeds that would halve the width, or None)."""
    if paired:
        keys = [k for k in x if k in y and _finite(x[k]) and _finite(y[k])]
        xs, ys = [x[k] for k in keys], [y[k] for k in keys]
        ci = paired_interval(xs, ys)
        sd = math.sqrt(_mean_var([a - b for a, b in zip(xs, ys)])[1]) if ci else 0.0
        return {"ci95": None if ci is None else list(ci), "method": "paired t", "n": len(keys),
                "halve": None if ci is None else seeds_to_halve(len(keys), sd)}
    xs, ys = [v for v in x.values() if _finite(v)], [v for v in y.values() if _finite(v)]
    ci = welch_interval(xs, ys)
    halve = None
    if ci is not None:
        (_, vx), (_, vy) = _mean_var(xs), _mean_var(ys)
        halve = seeds_to_halve(min(len(xs), len(ys)), math.sqrt(vx), math.sqrt(vy))
    return {"ci95": None if ci is None else list(ci), "method": "welch t",
            "n": [len(xs), len(ys)], "halve": halve}


def _width(n: int, sx: float, sy: float | None) -> float:
    if sy is None:
        return 2 * _t(n - 1) * sx / math.sqrt(n)
    se, df = _welch(sx ** 2, n, sy ** 2, n)
    return 2 * _t(df) * se


def seeds_to_halve(n: int, sx: float, sy: float | None = None, limit: int = 10_000) -> int | None:
    """The smallest n' > n whose 95% interval is at most half as wide as with n, the standard
    deviations staying ``sx`` (paired differences; or with ``sy``, each side of a Welch
    comparison with n' runs per side); ``None`` when n < 2, the width is 0, or beyond ``limit``."""
    if n < 2 or sx <= 0 and not sy:
        return None
    target = _width(n, sx, sy) / 2
    m = n + 1
    while m <= limit:
        if _width(m, sx, sy) <= target * (1 + 1e-12):
            return m
        m += 1
    return None
