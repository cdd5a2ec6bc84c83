"""Plots of the choices a study makes on validation: tuned strengths and the combination search.

A variant whose strength was tuned carries ``tuned``::

    {"key": "regularization.l2", "values": [1e-5, 1e-4, 1e-3, 1e-2], "val_mean": [...],
     "val_std": [...], "train_mean": [...], "chosen": 1e-3, "log_x": true, "method": "grid"}

(``values`` may be non-numbers, lists say: then they sit at evenly spaced positions, labelled
with their text). A study that searched for the best combination carries ``search``::

    {"method": "optuna-tpe", "keys": [...], "metric": "val_acc", "direction": "maximize",
     "trials": [{"number": 0, "parts": [...], "params": {...}, "value": 0.81, "seeds": 1}, ...],
     "best": {"number": 3, "params": {...}, "value": 0.83}}

(``direction`` optional: a metric named ``*_loss`` or ``*_mse`` is minimized, any other
maximized). Both choices look at validation only; the test split is scored once, for what was
chosen. A value that is missing, None or NaN is left out of a line, never drawn as 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from regulab.report.plots import SPLITS, by_rank, score_key, score_name
from regulab.report.svg import WIDTH, figure, num, plain, shared_legend, to_svg, variant_label
from regulab.report.text import MISSING, esc, fmt

__all__ = ["tuned_variants", "tuned_curves", "search_trials", "search_table", "top_trials",
           "maximizes", "value_text", "MAX_TUNED", "TOP_TRIALS"]

MAX_TUNED = 12        # panels of tuned-strength curves (the best ranked variants)
TOP_TRIALS = 5        # rows of the search's table of trials
TUNED_COLS = 3


def value_text(x: Any) -> str:
    """A config value as short text: 0.001, 1e-5, [0.1, 0.5], true, relu."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, (int, float)):
        return f"{x:.3g}".replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(value_text(i) for i in x) + "]"
    return "–" if x is None else str(x)


def tuned_variants(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The variants with a ``tuned`` record holding at least one value, best ranked first."""
    return [v for v in by_rank(results.get("variants") or [])
            if isinstance(v.get("tuned"), dict) and v["tuned"].get("values")]


def _series(t: dict[str, Any], key: str, n: int) -> np.ndarray:
    """``t[key]`` as n floats (nan where missing)."""
    xs = [num(x) for x in (t.get(key) or [])][:n]
    return np.array(xs + [math.nan] * (n - len(xs)))


def _positions(t: dict[str, Any]) -> tuple[np.ndarray, list[str] | None, bool]:
    """(x positions, tick labels for categorical values or None, log scale)."""
    values = t["values"]
    xs = np.array([num(x) for x in values])
    if np.isnan(xs).any():      # not all numbers: categories at 0, 1, ...
        return np.arange(len(values), dtype=float), [plain(value_text(x), 14) for x in values], False
    return xs, None, bool(t.get("log_x")) and bool((xs > 0).all())


def _chosen(t: dict[str, Any]) -> int | None:
    """The index of the chosen value among ``values`` (compared as text: 0.001 == 1e-3)."""
    texts = [value_text(x) for x in t["values"]]
    chosen = value_text(t.get("chosen"))
    return texts.index(chosen) if chosen in texts else None


def _tuned_panel(ax: Any, t: dict[str, Any], score: str) -> None:
    n = len(t["values"])
    xs, ticks, log = _positions(t)
    val, std, train = (_series(t, k, n) for k in ("val_mean", "val_std", "train_mean"))
    std = np.nan_to_num(std)
    order = np.argsort(xs, kind="stable")
    xs, val, std, train = xs[order], val[order], std[order], train[order]
    ok = ~np.isnan(val)
    ax.plot(xs[ok], val[ok], color=SPLITS["val"], marker="o", ms=3.5, lw=1.4, label=f"validation {score}")
    ax.fill_between(xs[ok], (val - std)[ok], (val + std)[ok], color=SPLITS["val"], alpha=0.2, lw=0)
    ok = ~np.isnan(train)
    ax.plot(xs[ok], train[ok], color=SPLITS["train"], ls="--", marker=".", lw=1.2, label=f"train {score}")
    i = _chosen(t)
    if i is not None:
        j = int(np.nonzero(order == i)[0][0])
        ax.axvline(xs[j], color="#555", ls=":", lw=1)
        if not math.isnan(val[j]):
            ax.plot([xs[j]], [val[j]], marker="*", ms=11, color="#d62728", ls="none",
                    label="chosen (on validation)")
    if log:
        ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(np.arange(n), [ticks[k] for k in order], rotation=30 if n > 3 else 0,
                      ha="right" if n > 3 else "center")
    ax.set_xlabel(plain(t.get("key") or "value", 40))


def tuned_curves(results: dict[str, Any]) -> str:
    """One small panel per tuned variant (at most ``MAX_TUNED``, best ranked first): the
    validation score (mean ± std over seeds) and the train score (dashed) against each value
    tried, the chosen value starred."""
    score = score_name(results)
    vs = tuned_variants(results)[:MAX_TUNED]
    cols = min(TUNED_COLS, len(vs))
    rows = math.ceil(len(vs) / cols)
    with figure(WIDTH if cols > 1 else WIDTH * 0.5, 0.8 + 2.4 * rows) as fig:
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, v in zip(axes.flat, vs):
            t = v["tuned"]
            _tuned_panel(ax, t, score)
            how = f" · {plain(t['method'], 12)}" if t.get("method") else ""
            how += " · at the grid's edge" if t.get("at_edge") else ""
            ax.set_title(f"{variant_label(v, 30)}: {plain(value_text(t.get('chosen')), 16)}{how}",
                         fontsize=8.5)
        for i, ax in enumerate(axes.flat):
            ax.set_visible(i < len(vs))
        for ax in axes[:, 0]:
            ax.set_ylabel(score)
        shared_legend(fig, axes.flat[:len(vs)])
        return to_svg(fig, "tuned")


def maximizes(search: dict[str, Any]) -> bool:
    """Whether the search maximizes its metric (its ``direction``, else by the metric's name)."""
    if search.get("direction") in ("maximize", "minimize"):
        return search["direction"] == "maximize"
    return not str(search.get("metric") or "").endswith(("loss", "mse"))


def _trials(search: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials with a number, by number."""
    trials = [t for t in search.get("trials") or [] if isinstance(t, dict) and not math.isnan(num(t.get("number")))]
    return sorted(trials, key=lambda t: num(t["number"]))


def top_trials(search: dict[str, Any], n: int = TOP_TRIALS) -> list[dict[str, Any]]:
    """The ``n`` best trials with a value (best first; ties by number)."""
    sign = -1.0 if maximizes(search) else 1.0
    scored = [t for t in _trials(search) if not math.isnan(num(t.get("value")))]
    return sorted(scored, key=lambda t: (sign * num(t["value"]), num(t["number"])))[:n]


def search_trials(results: dict[str, Any]) -> str:
    """The combination search: each trial's validation score by trial number (dots), the best
    so far (a step line) and the best trial (a star)."""
    search = results["search"]
    trials = _trials(search)
    x = np.array([num(t["number"]) for t in trials])
    y = np.array([num(t.get("value")) for t in trials])
    best = (np.fmax if maximizes(search) else np.fmin).accumulate(y) if len(y) else y
    with figure(WIDTH * 0.75, 3.6) as fig:
        ax = fig.add_subplot()
        ok = ~np.isnan(y)
        ax.scatter(x[ok], y[ok], s=16, color="#7ea6e8", zorder=4, label="trial")
        ax.step(x, best, where="post", color="#2e6fd8", lw=1.5, label="best so far")
        top = search.get("best") or {}
        bx, by = num(top.get("number")), num(top.get("value"))
        if not (math.isnan(bx) or math.isnan(by)):
            ax.plot([bx], [by], marker="*", ms=13, color="#d62728", ls="none",
                    label=f"best: trial {bx:.0f}")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))       # trials are numbered
        metric = search.get("metric") or f"val_{score_key(results)}"
        ax.set_ylabel(plain(metric, 40))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, "search")


def search_table(results: dict[str, Any]) -> str:
    """The combination search's best trials (``TOP_TRIALS``): each one's values of the
    searched keys and its validation score."""
    search = results.get("search")
    if not isinstance(search, dict) or not search.get("trials"):
        return ""
    top = top_trials(search)
    keys = list(search.get("keys") or dict.fromkeys(k for t in top for k in t.get("params") or {}))
    metric = esc(search.get("metric") or f"val_{score_key(results)}")
    with_parts = any("parts" in t for t in top)     # which techniques each trial merged
    head = ["Trial", *(["Techniques"] if with_parts else []), *(f"<code>{esc(k)}</code>" for k in keys),
            metric, "Seeds"]
    rows = "".join(
        f'<tr><td class="num">{esc(t.get("number"))}</td>'
        + (f'<td>{esc(" + ".join(map(str, t.get("parts") or [])))}</td>' if with_parts else "")
        + "".join(f'<td class="num">{esc(value_text((t.get("params") or {}).get(k)))}</td>' for k in keys)
        + f'<td class="num">{fmt(t.get("value"))}</td><td class="num">'
        f'{esc(t.get("seeds") if t.get("seeds") is not None else MISSING)}</td></tr>' for t in top)
    best = search.get("best") or {}
    return (f'<h2 id="search">Combination search</h2>\n<p>{esc(search.get("method") or "?")}: '
            f"{len(search['trials'])} trials, each scored on validation ({metric}); the test split "
            f"chose nothing. Best: trial {esc(best.get('number', MISSING))}, {fmt(best.get('value'))}. "
            f"The {len(top)} best trials:</p>\n"
            '<div class="scroll"><table class="search">\n<thead><tr>'
            + "".join(f"<th>{h}</th>" for h in head) + f"</tr></thead>\n<tbody>{rows}</tbody></table></div>")
