"""Synthetic study results (the ``results.json`` schema of ``regulab.studies.study``) for the
report tests: ``fake_study(kind)`` for every study kind, deterministic (numpy
``default_rng(0)``), with a hostile variant label (``EVIL``) and description for the escaping
tests, runs that stop early at different epochs (``seeds=1`` gives single runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["fake_study", "KINDS", "EVIL", "EXPECTED_FIGURES"]

KINDS = ("compare", "grid", "learning_curve", "capacity", "kfold", "init",
         "dropout_activations", "weights", "transfer", "multitask")
EVIL = '<script>alert(1)</script> & "quotes"'
# figures of fake_study(kind) with the default arguments (regulab.studies.report.plot_plan:
# the report's summary chart and curves, then the kind's own)
EXPECTED_FIGURES = {"compare": 2, "grid": 3, "learning_curve": 3, "capacity": 3, "kfold": 3,
                    "init": 4, "dropout_activations": 3, "weights": 3, "transfer": 3,
                    "multitask": 3}
HEADS = ["parity", "sum"]


def _stat(xs: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0}


def _history(rng: np.random.Generator, level: float, epochs: int, score: str) -> list[dict]:
    t = np.arange(1, epochs + 1)
    train = level + 0.12 - 0.5 * np.exp(-t / 4) + rng.normal(0, 0.005, epochs)
    val = level - 0.45 * np.exp(-t / 4) + rng.normal(0, 0.01, epochs)
    return [{"epoch": int(e), "train_loss": float(1.5 * np.exp(-e / 5)), f"train_{score}": float(a),
             "val_loss": float(1.6 * np.exp(-e / 6)), f"val_{score}": float(b)}
            for e, a, b in zip(t, train, val)]


def _runs(rng: np.random.Generator, i: int, level: float, seeds: list[int], kind: str,
          score: str) -> list[dict[str, Any]]:
    """Variant i's runs: variant 1 stops early at the same epoch in every run, variant 2 at
    different epochs (histories of unequal length), the others train all 20 epochs."""
    runs = []
    for j, seed in enumerate(seeds):
        epochs = {1: 14, 2: 12 + 2 * j}.get(i, 20)
        hist = _history(rng, level, epochs, score)
        res = {f"{s}_{score}": float(level + d + rng.normal(0, 0.01))
               for s, d in (("train", 0.1), ("val", 0.0), ("test", -0.01))}
        res.update(train_loss=0.3, val_loss=0.5, test_loss=0.55, epochs_run=epochs,
                   best_epoch=epochs - (4 if i in (1, 2) else 0), stopped_early=i in (1, 2))
        if kind == "multitask":
            res.update({f"{s}_{h}_acc": float(0.6 + 0.1 * k + rng.normal(0, 0.02))
                        for s in ("val", "test") for k, h in enumerate(HEADS)})
        fold = j if kind == "kfold" else None
        where = f"fold-{fold}" if fold is not None else f"seed-{seed}"
        runs.append({"seed": seed, "fold": fold, "run_dir": f"runs/v{i}/{where}",
                     "results": res, "history": hist})
    return runs


def _layout(kind: str, n: int) -> list[tuple[str | None, float | None]]:
    """(group, x) of each variant."""
    if kind in ("grid", "capacity"):
        return [(None, 10.0 ** (-4 + i) if kind == "grid" else 1000.0 * 4 ** i) for i in range(n)]
    if kind == "learning_curve":
        return [(g, 250.0 * 2 ** i) for g in ("softmax", "mlp") for i in range(n)]
    if kind == "transfer":
        return [("scratch", None)] + [(g, float(i)) for g in ("frozen", "fine-tuned")
                                      for i in range(n)]
    return [(None, None)] * n


def _hist(rng: np.random.Generator, scale: float, bins: int = 30) -> dict[str, list]:
    counts, edges = np.histogram(rng.normal(0, scale, 2000), bins=bins)
    return {"edges": [float(x) for x in edges], "counts": [int(c) for c in counts]}


def _analysis(kind: str, rng: np.random.Generator, names: list[str], seeds: list[int]) -> dict:
    if kind == "grid":
        return {"key": "regularization.l2", "log_x": True}
    if kind == "learning_curve":
        return {"key": "data.train_size", "log_x": True}
    if kind == "capacity":
        return {"key": "model.hidden", "x_label": "parameters", "log_x": True, "label_noise": 0.1}
    if kind == "kfold":
        return {"k": len(seeds)}
    if kind == "transfer":
        return {"x_label": "layers transferred", "source": {"classes": [0, 1, 2, 3, 4], "val_acc": 0.97}}
    if kind == "multitask":
        return {"heads": HEADS}
    if kind == "init":
        curves, depth = [], 6
        for act in ("tanh", "relu"):
            for k, scheme in enumerate(("normal_0.01", "glorot_normal", "he_normal")):
                std = 0.5 * (0.3 + 0.35 * k) ** np.arange(depth)
                curves.append({"activation": act, "scheme": scheme,
                               "act_mean": [0.0] * depth, "act_std": [float(s) for s in std],
                               "grad_std": [float(s) for s in std[::-1] * 1e-3],
                               "saturated": [0.0] * depth,
                               "hist": [{"layer": layer, **_hist(rng, std[layer - 1])}
                                        for layer in (1, 3, depth)]})
        return {"depth": depth, "width": 64, "curves": curves}
    if kind in ("dropout_activations", "weights"):
        hist = []
        for i, name in enumerate(names):
            for layer in (("fc1", "fc2") if kind == "weights" else ("act1", "act2")):
                h = _hist(rng, 0.1 * (i + 1))
                extra = ({"l1": float(rng.uniform(50, 100)), "l2": float(rng.uniform(1, 5))}
                         if kind == "weights" else {"mean": float(rng.uniform(0, 1))})
                hist.append({"variant": name, "layer": layer, **h,
                             "sparsity": float(rng.uniform(0, 0.6)), **extra})
        return {"hist": hist}
    return {}


def fake_study(kind: str, n_variants: int = 3, seeds: int = 3, *, metric: str = "acc") -> dict:
    """A schema-conformant results dict of a study of ``kind`` with ``n_variants`` variants
    (learning_curve and transfer: per group; transfer adds a "scratch" variant; init: none)
    over ``seeds`` seeds (kfold: folds). Variant 1's label is ``EVIL``."""
    if kind not in KINDS:
        raise ValueError(f"The 'kind' parameter of fake_study must be one of {KINDS}. Got {kind!r}.")
    rng = np.random.default_rng(0)
    seed_list = list(range(seeds))
    layout = [] if kind == "init" else _layout(kind, n_variants)
    variants, configs = [], {}
    for i, (group, x) in enumerate(layout):
        name = "baseline" if i == 0 else f"variant-{i}"
        label = EVIL if i == 1 else ("no regularization" if i == 0 else f"dropout p={0.1 * i:.1f}")
        level = 0.70 + 0.03 * ((i * 7) % 5) if metric == "acc" else 0.5 + 0.05 * i
        overrides = {} if i == 0 else {"model.dropout": round(0.1 * i, 2), "model.note": label}
        runs = _runs(rng, i, level, seed_list, kind, metric)
        stats = {f"{s}_{m}": _stat([r["results"][f"{s}_{m}"] for r in runs])
                 for s in ("train", "val", "test") for m in (metric, "loss")}
        stats["gap"] = _stat([r["results"][f"train_{metric}"] - r["results"][f"val_{metric}"]
                              for r in runs])
        variants.append({"name": name, "label": label, "overrides": overrides, "group": group,
                         "x": x, "members": 1, "params": 10_000 * (i + 1), "rank": None,
                         "stats": stats, "delta_test": None, "delta_val": None,
                         "delta_test_ci95": None, "delta_val_ci95": None, "ci_method": None,
                         "ci_n": None, "ci_seeds_to_halve": None,
                         "significant": False, "verdict": "overfit", "advice": "more data, dropout",
                         "runs": runs})
        configs[name] = {"model": {"hidden": [64, 64], "dropout": 0.1 * i, "note": label,
                                   "activation": "relu"},
                         "train": {"epochs": 20, "lr": 0.01, "early_stopping": i in (1, 2),
                                   "max_grad_norm": None},
                         "data": {"dataset": "mnist1d", "train_size": 4000}}
    order = sorted(variants, key=lambda v: -v["stats"][f"val_{metric}"]["mean"])
    for r, v in enumerate(order, start=1):
        v["rank"] = r
    base = variants[0]["stats"] if variants else None
    for v in variants:
        t, b = v["stats"][f"test_{metric}"], base[f"test_{metric}"]
        v["delta_test"] = t["mean"] - b["mean"]
        v["delta_val"] = v["stats"][f"val_{metric}"]["mean"] - base[f"val_{metric}"]["mean"]
        if v is not variants[0] and len(seed_list) >= 2:     # paired t over the seeds
            ci = [scipy_stats.ttest_rel([r["results"][f"{s}_{metric}"] for r in v["runs"]],
                                  [r["results"][f"{s}_{metric}"] for r in variants[0]["runs"]]
                                  ).confidence_interval(0.95) for s in ("test", "val")]
            v["delta_test_ci95"], v["delta_val_ci95"] = ([float(c.low), float(c.high)] for c in ci)
            v.update(ci_method="paired t", ci_n=len(seed_list), ci_seeds_to_halve=4 * len(seed_list))
        ci = v.get("delta_test_ci95")
        v["significant"] = ci is not None and (ci[0] > 0 or ci[1] < 0)
        if v["stats"]["gap"]["mean"] <= 0.05:
            v["verdict"], v["advice"] = "good fit", ""
    return {"name": f"fake-{kind}", "kind": kind,
            "description": 'Does dropout help? p < 0.5 & "weight decay" <b>bold</b>',
            "metric": metric, "seeds": seed_list, "baseline": "baseline" if variants else None,
            "quick": False, "seconds": 123.4,
            "machine": {"cpu": "Fake CPU <x86> & co", "cores": 2, "device": "cpu",
                        "python": "3.11.2", "torch": "2.13.0", "numpy": "2.0.0",
                        "regulab": "0.1.0", "platform": "Linux"},
            "variants": variants, "best": order[0]["name"] if order else None,
            "combination": ({"name": variants[-1]["name"], "parts": [variants[1]["name"],
                                                                     variants[2]["name"]]}
                            if kind == "compare" and len(variants) >= 4 else None),
            "analysis": _analysis(kind, rng, [v["name"] for v in variants], seed_list),
            "configs": configs}
