"""The report's plots: one function per plot kind, each returning an inline SVG string, drawn
as ``regulab.report.svg`` says (a ``Figure`` under the report's rc, text kept as text, the same
bytes for the same results).

Each function takes a study's results dict (the schema in ``regulab.studies.study``) and, where
a plot is drawn two ways, a parameter that says which; none asks the study's kind (the kinds in
``regulab.studies.kinds`` choose their plots).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import numpy as np
from matplotlib.ticker import MaxNLocator

from regulab.report.svg import WIDTH, figure, num, plain, shared_legend, to_svg, variant_label

__all__ = ["summary_chart", "training_curves", "score_curve", "kfold_chart", "transfer_chart",
           "init_statistics", "init_histograms", "layer_histograms", "head_chart", "confusion_chart",
           "score_key", "score_name", "by_rank", "init_activations", "has_clean_train", "MAX_PANELS",
           "MAX_ROWS", "MAX_COLS", "MAX_CELL_TEXT"]

COLS = 4              # small multiples: columns of the training-curve grid
MAX_PANELS = 24       # training curves of at most this many variants (the best ranked)
MAX_ROWS, MAX_COLS = 8, 6   # histogram grids: variants (or schemes) x layers
SPLITS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
LINESTYLES, MARKERS = ("-", "--", ":", "-."), "osD^vP"
# the training curves' lines: (history key prefix, legend name, line style)
CURVES = (("train", "train", "-"), ("val", "val", "-"), ("clean_train", "train, eval mode", "--"))
MAX_CELL_TEXT = 20    # a confusion matrix prints each cell's count up to this many classes


# --- shared helpers -------------------------------------------------------------------------

def score_key(results: dict[str, Any]) -> str:
    """The score's field suffix: "r2" for regression studies, else "acc"."""
    return "r2" if results.get("metric") == "r2" else "acc"


def score_name(results: dict[str, Any]) -> str:
    return "R²" if score_key(results) == "r2" else "accuracy"


def by_rank(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Variants by rank (1 first); unranked ones last, in the study's order."""
    return sorted(variants, key=lambda v: (v.get("rank") is None, v.get("rank") or 0))


def init_activations(results: dict[str, Any]) -> list[str]:
    """An init study's activations, in the order of its curves."""
    curves = (results.get("analysis") or {}).get("curves") or []
    return list(dict.fromkeys(str(c.get("activation")) for c in curves))


def _stat(v: dict[str, Any], key: str) -> tuple[float, float]:
    """(mean, std) of a variant's stat; nan when missing, std 0 when only the mean is known."""
    s = (v.get("stats") or {}).get(key) or {}
    mean, std = num(s.get("mean")), num(s.get("std"))
    return mean, (0.0 if math.isnan(std) and not math.isnan(mean) else std)


def _runs_stat(values: list[Any]) -> tuple[float, float]:
    xs = [x for x in map(num, values) if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


# --- plots for every kind -------------------------------------------------------------------

def summary_chart(results: dict[str, Any]) -> str:
    """Test score mean ± std per variant (horizontal bars, best rank on top), the baseline's
    mean as a dashed line; beside it, when any variant has ``delta_test_ci95``, each change in
    test score against the baseline with its 95% interval as error bars (filled: the interval
    excludes 0)."""
    vs, key = by_rank(results["variants"]), f"test_{score_key(results)}"
    means, stds = np.array([[*_stat(v, key)] for v in vs]).T
    base = next((v for v in vs if v["name"] == results.get("baseline")), None)
    colors = ["#98a2b3" if v is base else "#2e6fd8" if v["name"] == results.get("best")
              else "#7ea6e8" for v in vs]
    cis = [v.get("delta_test_ci95") if isinstance(v.get("delta_test_ci95"), list) else None
           for v in vs]
    with figure(WIDTH, 1.0 + 0.3 * len(vs)) as fig:
        ax = fig.add_subplot(1, 2 if any(cis) else 1, 1)
        y = np.arange(len(vs))
        ax.barh(y, np.nan_to_num(means), xerr=stds, color=colors, height=0.7, capsize=3,
                error_kw={"elinewidth": 1, "ecolor": "#333"})
        ax.set_yticks(y, [variant_label(v) for v in vs])
        ax.set_ylim(len(vs) - 0.5, -0.5)      # rank 1 on top, no empty margins
        ax.grid(axis="y", visible=False)
        ok = ~np.isnan(means)
        if ok.any():
            lo, hi = np.min((means - stds)[ok]), np.max((means + stds)[ok])
            pad = max(0.1 * (hi - lo), 0.01)
            ax.set_xlim(lo - pad, hi + pad)
        if base is not None and not math.isnan(_stat(base, key)[0]):
            ax.axvline(_stat(base, key)[0], color="#111", ls="--", lw=1,
                       label=f"baseline: {variant_label(base, 30)}")
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0))
        ax.set_xlabel(f"test {score_name(results)} (mean ± std over runs)")
        if any(cis):
            right = fig.add_subplot(1, 2, 2, sharey=ax)
            _delta_panel(right, vs, cis, colors)
            right.set_xlabel(f"Δ test {score_name(results)} vs baseline (95% CI)")
        return to_svg(fig, "summary")


def _delta_panel(ax: Any, vs: list[dict[str, Any]], cis: list[Any], colors: list[str]) -> None:
    """Each variant's change with its interval; hollow markers where the interval holds 0."""
    for i, (v, ci, c) in enumerate(zip(vs, cis, colors)):
        d = num(v.get("delta_test"))
        if math.isnan(d):
            continue
        # an interval of no width may miss its mean by a rounding: never a negative bar
        err = [[max(d - ci[0], 0.0)], [max(ci[1] - d, 0.0)]] if ci else None
        ax.errorbar([d], [i], xerr=err, fmt="o", color=c, ecolor="#333", elinewidth=1,
                    capsize=3, markerfacecolor=c if v.get("significant") else "white")
    ax.axvline(0.0, color="#111", ls="--", lw=1)
    ax.tick_params(labelleft=False)
    ax.grid(axis="y", visible=False)


def has_clean_train(results: dict[str, Any]) -> bool:
    """Whether any run's history holds the clean train score (``train.eval_train``)."""
    key = f"clean_train_{score_key(results)}"
    return any(key in h for v in results.get("variants") or [] for r in v.get("runs") or []
               for h in r.get("history") or [])


def _curve_panel(ax: Any, v: dict[str, Any], score: str) -> None:
    runs = [r for r in v.get("runs") or [] if r.get("history")]
    for split, name, ls in CURVES:
        color = SPLITS[split.removeprefix("clean_")]
        ys = [np.array([num(h.get(f"{split}_{score}")) for h in r["history"]]) for r in runs]
        if split.startswith("clean_") and not any(np.isfinite(y).any() for y in ys):
            continue                              # not logged (train.eval_train = false)
        xs = [np.array([num(h.get("epoch", i + 1)) for i, h in enumerate(r["history"])])
              for r in runs]
        if len({len(y) for y in ys}) == 1:       # equal lengths: mean and a ± std band
            stack = np.vstack(ys)
            m = np.nanmean(stack, axis=0)
            s = np.nanstd(stack, axis=0, ddof=1) if len(ys) > 1 else np.zeros_like(m)
            ax.plot(xs[0], m, color=color, ls=ls, lw=1.4, label=name)
            ax.fill_between(xs[0], m - s, m + s, color=color, alpha=0.2 if ls == "-" else 0.1, lw=0)
        else:                                     # runs stopped at different epochs: each run
            for i, (x, y) in enumerate(zip(xs, ys)):
                ax.plot(x, y, color=color, ls=ls, lw=0.8, alpha=0.7, label=name if i == 0 else None)
    res = [r.get("results") or {} for r in v.get("runs") or []]
    best = [num(r.get("best_epoch")) for r in res]
    early = any(r.get("stopped_early") for r in res) or any(
        b < num(r.get("epochs_run")) for b, r in zip(best, res))
    best = [b for b in best if not math.isnan(b)]
    if early and best:
        ax.axvline(float(np.mean(best)), color="#555", ls="--", lw=1, label="best epoch (mean)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))


def training_curves(results: dict[str, Any]) -> str:
    """Small multiples, one panel per variant (at most ``MAX_PANELS``, best ranked first):
    train and validation score per epoch, mean over runs with a ± std band (each run thinly
    when their lengths differ), the clean train score (eval mode, ``train.eval_train``) dashed
    where the runs logged it, and the mean best epoch when early stopping cut training."""
    score = score_key(results)
    vs = [v for v in by_rank(results["variants"])
          if any(r.get("history") for r in v.get("runs") or [])][:MAX_PANELS]
    cols = min(COLS, len(vs))
    rows = math.ceil(len(vs) / cols)
    with figure(WIDTH, 0.7 + 2.0 * rows) as fig:
        axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
        for ax, v in zip(axes.flat, vs):
            _curve_panel(ax, v, score)
            rank = f"#{v['rank']} " if v.get("rank") is not None else ""
            ax.set_title(rank + variant_label(v, 34), fontsize=8.5)
        for i, ax in enumerate(axes.flat):
            ax.set_visible(i < len(vs))
            ax.set_xlabel("epoch" if i + cols >= len(vs) else "")   # the lowest in each column
        for ax in axes[:, 0]:
            ax.set_ylabel(score_name(results))
        if score == "r2":      # early epochs can be far below zero: keep the useful range
            lo, hi = axes[0, 0].get_ylim()
            axes[0, 0].set_ylim(max(lo, -0.5), hi)
        shared_legend(fig, axes.flat[:len(vs)])
        return to_svg(fig, "curves")


# --- plots some kinds choose ------------------------------------------------------------------

def score_curve(results: dict[str, Any], error: bool = False) -> str:
    """Train/val/test score (``error``: error = 1 - score, with the label noise ``analysis``
    holds as a dotted line) against each variant's x, mean ± std band, one line style per
    group; ``analysis`` gives the axis (``x_label`` or ``key``) and ``log_x``."""
    a, score = results.get("analysis") or {}, score_key(results)
    vs = [v for v in results["variants"] if v.get("x") is not None]
    groups = list(dict.fromkeys(v.get("group") for v in vs))
    with figure(WIDTH * 0.75, 4.2) as fig:
        ax = fig.add_subplot()
        for gi, g in enumerate(groups):
            pts = sorted((float(v["x"]), v) for v in vs if v.get("group") == g)
            x = np.array([p[0] for p in pts])
            for split, color in SPLITS.items():
                m, s = np.array([[*_stat(v, f"{split}_{score}")] for _, v in pts]).T
                m = 1 - m if error else m
                name = split if g is None else f"{split} · {plain(g, 24)}"
                ax.plot(x, m, color=color, ls=LINESTYLES[gi % 4], marker=MARKERS[gi % 6], ms=4,
                        lw=1.4, label=name)
                ax.fill_between(x, m - s, m + s, color=color, alpha=0.15, lw=0)
        noise = num(a.get("label_noise"))
        if error and noise > 0:
            ax.axhline(noise, color="#555", ls=":", lw=1, label=f"label noise {noise:g}")
        if a.get("log_x") and len(vs) and min(float(v["x"]) for v in vs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(plain(a.get("x_label") or a.get("key") or "x", 60))
        name = score_name(results)
        ax.set_ylabel(f"error (1 − {name})" if error else name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))     # outside: never on data
        return to_svg(fig, "score-curve")


def kfold_chart(results: dict[str, Any]) -> str:
    """Each fold's test score as a dot (one colour per fold), the mean ± std over folds
    as a bar with caps, one column per variant."""
    vs, score = by_rank(results["variants"]), score_key(results)
    with figure(WIDTH * 0.75 if len(vs) <= 8 else WIDTH, 4.4) as fig:
        ax = fig.add_subplot()
        folds = sorted({r.get("fold") or 0 for v in vs for r in v.get("runs") or []})
        offsets = dict(zip(folds, np.linspace(-0.18, 0.18, len(folds)) if len(folds) > 1 else [0]))
        colors = matplotlib.colormaps["tab10"]
        for f in folds:
            pts = [(i + offsets[f], num((r.get("results") or {}).get(f"test_{score}")))
                   for i, v in enumerate(vs) for r in v.get("runs") or [] if (r.get("fold") or 0) == f]
            ax.scatter(*zip(*pts), s=16, color=colors(f % 10), zorder=5, label=f"fold {f}")
        m, s = np.array([[*_stat(v, f"test_{score}")] for v in vs]).T
        ax.errorbar(np.arange(len(vs)), m, yerr=s, fmt="_", ms=22, mew=2, color="#111", capsize=6,
                    elinewidth=1.2, zorder=4, label="mean ± std")
        ax.set_xticks(np.arange(len(vs)), [variant_label(v, 24) for v in vs],
                      rotation=30 if len(vs) > 4 else 0, ha="right" if len(vs) > 4 else "center")
        ax.grid(axis="x", visible=False)
        ax.set_ylabel(f"test {score_name(results)}")
        ax.legend(ncols=min(len(folds) + 1, 6), loc="lower center", bbox_to_anchor=(0.5, 1.0))
        return to_svg(fig, "kfold")


def transfer_chart(results: dict[str, Any]) -> str:
    """Test score against layers transferred, one line per group, the scratch
    variant's mean (± std band) as a horizontal line."""
    a, score = results.get("analysis") or {}, score_key(results)
    vs = [v for v in results["variants"] if v.get("x") is not None and v.get("group") != "scratch"]
    scratch = [v for v in results["variants"] if v.get("group") == "scratch"]
    with figure(WIDTH * 0.75, 4.0) as fig:
        ax = fig.add_subplot()
        colors = matplotlib.colormaps["tab10"]
        for gi, g in enumerate(dict.fromkeys(v.get("group") for v in vs)):
            pts = sorted((float(v["x"]), *_stat(v, f"test_{score}")) for v in vs if v.get("group") == g)
            x, m, s = np.array(pts).T
            ax.plot(x, m, color=colors(gi), marker=MARKERS[gi % 6], ms=4, lw=1.4,
                    label=plain(g if g is not None else "transferred", 30))
            ax.fill_between(x, m - s, m + s, color=colors(gi), alpha=0.15, lw=0)
        for v in scratch[:1]:
            m, s = _stat(v, f"test_{score}")
            ax.axhline(m, color="#555", ls="--", lw=1.2, label=f"scratch: {variant_label(v, 30)}")
            ax.axhspan(m - s, m + s, color="#555", alpha=0.08, lw=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(plain(a.get("x_label") or "layers transferred", 60))
        ax.set_ylabel(f"test {score_name(results)}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_svg(fig, "transfer")


def init_statistics(results: dict[str, Any], activation: str) -> str:
    """Standard deviation of the activations and of the gradients per layer (log y),
    one line per init scheme, for one activation."""
    curves = [c for c in results["analysis"]["curves"] if str(c.get("activation")) == activation]
    with figure(WIDTH, 3.4) as fig:
        axes = fig.subplots(1, 2)
        for ax, key, what in ((axes[0], "act_std", "activation"), (axes[1], "grad_std", "gradient")):
            for i, c in enumerate(curves):
                y = np.array([num(x) for x in c.get(key) or []])
                ax.plot(np.arange(1, len(y) + 1), y, marker=MARKERS[i % 6], ms=3, lw=1.3,
                        label=plain(c.get("scheme"), 30))
            ax.set_yscale("log", nonpositive="mask")
            ax.set_xlabel("layer")
            ax.set_ylabel(f"{what} std")
            ax.set_title(f"{plain(activation, 20)}: {what} std per layer")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0].legend()
        return to_svg(fig, f"init-stats-{init_activations(results).index(activation)}")


def _pick(items: list[Any], n: int) -> list[Any]:
    """At most ``n`` items, evenly spaced, first and last kept."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def _hist_grid(rows: list[Any], cols: list[Any], find: Any, title: Any, log: bool,
               prefix: str) -> str:
    """A rows x cols grid of histograms; ``find(row, col)`` gives a histogram dict or None,
    ``title(row, col, hist)`` the panel's title."""
    with figure(WIDTH, 0.3 + 1.75 * len(rows)) as fig:
        axes = fig.subplots(len(rows), len(cols), squeeze=False)
        for r, row in enumerate(rows):
            for c, col in enumerate(cols):
                ax, h = axes[r, c], find(row, col)
                if not h or not h.get("counts"):
                    ax.set_visible(False)
                    continue
                counts = np.array([num(x) for x in h["counts"]])
                edges = np.array([num(x) for x in h["edges"]])
                if log:     # empty bins sit on the baseline, below the axis
                    ax.stairs(np.where(counts > 0, counts, 0.5), edges, baseline=0.5, fill=True,
                              color="#2e6fd8", alpha=0.7)
                    ax.set_yscale("log")
                    ax.set_ylim(bottom=0.5)
                else:
                    ax.stairs(counts, edges, fill=True, color="#2e6fd8", alpha=0.7)
                ax.set_title(title(row, col, h), fontsize=7.5)
                ax.tick_params(labelsize=7)
                ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
                ax.grid(visible=False)
        return to_svg(fig, prefix)


def init_histograms(results: dict[str, Any], activation: str) -> str:
    """Activation histograms per scheme (rows) at up to ``MAX_COLS`` layers (columns)."""
    curves = [c for c in results["analysis"]["curves"]
              if str(c.get("activation")) == activation and c.get("hist")][:MAX_ROWS]
    layers = _pick(sorted({h.get("layer") for c in curves for h in c["hist"]},
                          key=lambda x: (num(x), str(x))), MAX_COLS)
    return _hist_grid(
        curves, layers,
        lambda c, layer: next((h for h in c["hist"] if h.get("layer") == layer), None),
        lambda c, layer, h: f"{plain(c.get('scheme'), 24)} · layer {plain(layer, 10)}",
        log=False, prefix=f"init-hist-{init_activations(results).index(activation)}")


def layer_histograms(results: dict[str, Any], norms: bool = False) -> str:
    """Histograms of ``analysis["hist"]`` per variant (rows, best ranked first, at most
    ``MAX_ROWS``) and layer (columns, at most ``MAX_COLS``), log counts; titles carry sparsity
    (and with ``norms`` the L1 and L2 norms, of weights)."""
    hist = results["analysis"]["hist"]
    variants = {v["name"]: v for v in results["variants"]}
    names = list(dict.fromkeys(h.get("variant") for h in hist))
    order = [v["name"] for v in by_rank(results["variants"]) if v["name"] in names]
    rows = (order + [n for n in names if n not in order])[:MAX_ROWS]
    cols = list(dict.fromkeys(h.get("layer") for h in hist))[:MAX_COLS]

    def title(name: str, layer: Any, h: dict[str, Any]) -> str:
        head = f"{variant_label(variants.get(name, {'name': name}), 26)} · {plain(layer, 12)}"
        nums = [("sparsity", h.get("sparsity"))] + (
            [("L1", h.get("l1")), ("L2", h.get("l2"))] if norms else [])
        return head + "\n" + "  ".join(f"{k} {num(x):.3g}" for k, x in nums if x is not None)

    return _hist_grid(
        rows, cols,
        lambda name, layer: next((h for h in hist if h.get("variant") == name
                                  and h.get("layer") == layer), None),
        title, log=True, prefix="hist")


def head_chart(results: dict[str, Any]) -> str:
    """Test accuracy of each auxiliary head, grouped bars (one per variant),
    mean ± std over runs."""
    heads = list(results["analysis"]["heads"])
    vs = by_rank(results["variants"])
    width = 0.8 / len(vs)
    with figure(WIDTH * 0.75, 3.6 + 0.18 * math.ceil(len(vs) / 3)) as fig:
        ax = fig.add_subplot()
        colors = matplotlib.colormaps["tab20" if len(vs) > 10 else "tab10"]
        tops = []
        for j, v in enumerate(vs):
            ms = np.array([_runs_stat([(r.get("results") or {}).get(f"test_{h}_acc")
                                       for r in v.get("runs") or []]) for h in heads])
            x = np.arange(len(heads)) - 0.4 + width * (j + 0.5)
            ax.bar(x, np.nan_to_num(ms[:, 0]), width * 0.9, yerr=ms[:, 1], capsize=2,
                   color=colors(j % colors.N), label=variant_label(v, 30), error_kw={"elinewidth": 1})
            tops += list(ms[:, 0] - np.nan_to_num(ms[:, 1]))
        finite = [t for t in tops if not math.isnan(t)]
        if finite:
            ax.set_ylim(bottom=max(0.0, min(finite) - 0.05))
        ax.set_xticks(np.arange(len(heads)), [plain(h, 20) for h in heads])
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("test accuracy of the head")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=3)
        return to_svg(fig, "heads")


def confusion_chart(results: dict[str, Any]) -> str:
    """``results["confusion"]`` (a variant's test confusion matrix summed over its runs) as a
    heatmap: rows the true class, columns the predicted one, each cell's count printed (up to
    ``MAX_CELL_TEXT`` classes) and its colour the count's share of its row, so a rare class
    shows as clearly as a common one (the diagonal is each class's recall)."""
    c = results["confusion"]
    classes = [plain(x, 16) for x in c["classes"]]
    counts = np.array([[num(x) for x in row] for row in c["matrix"]], dtype=float)     # (C, C)
    rows = np.nansum(counts, axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(classes)
    side = min(WIDTH * 0.7, 2.4 + 0.42 * n)
    with figure(side + 1.0, side) as fig:
        ax = fig.add_subplot()
        image = ax.imshow(np.nan_to_num(share), cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
        if n <= MAX_CELL_TEXT:
            for (i, j), x in np.ndenumerate(counts):
                ax.text(j, i, "–" if math.isnan(x) else f"{x:.0f}", ha="center", va="center",
                        fontsize=8 if n <= 10 else 6.5, color="white" if share[i, j] > 0.5 else "#1d2330")
        ax.set_xticks(np.arange(n), classes, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
        ax.set_yticks(np.arange(n), classes)
        ax.grid(visible=False)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        return to_svg(fig, "confusion")
