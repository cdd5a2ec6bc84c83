"""The end of a run: the final model scored once on every split, and the files that say so.

``finish`` evaluates train, validation and test (unless ``eval.test`` is off) with the final
weights -- by weight scaling, or by Monte-Carlo dropout (``eval.dropout_inference``) -- and
writes ``model.safetensors``, ``evaluation.json`` (per-class precision/recall/F1 and confusion
matrices, or MSE/R^2/MAE) and ``results.json`` (which marks a finished run), and the run's row
in the store. ``evaluate(run_dir)`` scores a saved run again (a sweep's best trial on test);
``add_test(run_dir)`` scores a run trained with ``eval.test = false`` on its test split once,
after a choice made on validation, and records it as if the run had (a study's tuned strength).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from regulab import metrics
from regulab.callbacks import EarlyStopping
from regulab.config.core import Config, load_config
from regulab.data.stream import chunks
from regulab.diagnose import diagnose
from regulab.io import atomic_write, finite_json, load_tensors, save_tensors
from regulab.nn.models import Pipeline
from regulab.regularize.mc_dropout import mc_predict
from regulab.runs.prepare import Prepared, prepare
from regulab.runs.store import RunStore

__all__ = ["Run", "final_outputs", "scores", "noisy_test", "report", "finish", "restored", "evaluate", "add_test"]


@dataclass
class Run:
    """What a finished run returns: results, per-epoch history, the model and where it lives."""
    config: Config
    results: dict[str, Any]
    history: list[dict[str, float]]
    model: Pipeline
    run_dir: Path
    evaluation: dict[str, Any] = field(default_factory=dict)


def final_outputs(p: Prepared, X) -> torch.Tensor:
    """The final model's outputs: by weight scaling (a plain eval-mode forward), or the log of
    Monte-Carlo dropout probabilities (``eval.dropout_inference``), which act as logits."""
    e, t = p.cfg.eval, p.trainer
    if e.dropout_inference == "scale":
        return t.predict(X)
    aggregate = "mean" if e.dropout_inference == "mc_mean" else "geometric"
    heads = t.tasks.sizes if t.tasks is not None else None
    with t.evaluation_mode():
        probs = torch.cat([mc_predict(t.model, xb, e.mc_samples, aggregate=aggregate,
                                      generator=p.noise, heads=heads)
                           for xb in chunks(X, e.batch_size)])
    return probs.clamp_min(1e-12).log()


def scores(p: Prepared, out: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
    """Loss and accuracy (or MSE and R^2) of final outputs, as the Trainer logs them per epoch."""
    mc = p.cfg.eval.dropout_inference != "scale"    # log-probabilities: the loss is their NLL
    return p.trainer.scores(out, y, prefix, log_probs=mc)


def noisy_test(p: Prepared) -> dict[str, float]:
    """``eval.noise_snr``: the test split's scores with white noise added to every clip at that
    SNR (drawn from ``data.seed``, the same noise for every run), as ``test_noisy_*``."""
    snr = p.cfg.eval.noise_snr
    if snr is None or "test" not in p.splits or not p.cfg.eval.test:
        return {}
    from regulab.modalities.audio.augment import add_noise
    X, y = p.splits["test"]
    g = torch.Generator(device=X.device).manual_seed(p.cfg.data.seed)
    noisy = add_noise(X.flatten(1), snr, g).view_as(X)
    return scores(p, final_outputs(p, noisy), y, "test_noisy")


def report(p: Prepared, out: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """``evaluation.json``'s entry of one split: per-class precision, recall, F1 and the
    confusion matrix, each head's (multi-task), or MSE, R^2 and MAE."""
    t = p.trainer
    if p.task == "regression":
        return metrics.regression_report(out, y)
    if t.tasks is not None:
        return t.tasks.report(out, y)
    logits = torch.cat([-out, out], 1) if t.binary else out
    return metrics.classification_report(logits, y.long(), p.dataset.classes)


def finish(p: Prepared, run_dir: Path, store: RunStore | None, run_id: int,
            fit_seconds: float) -> Run:
    """Evaluate train/val/test once with the final weights and write the result files
    (``store`` None: a data-parallel rank other than 0, which writes nothing)."""
    t = p.trainer
    results: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    for name, (X, y) in p.splits.items():
        if name == "test" and not p.cfg.eval.test:
            continue            # a sweep's trials: the test split is scored once, at the end
        out = final_outputs(p, X)
        results.update(scores(p, out, y, name))
        if name != "train":
            evaluation[name] = report(p, out, y)
    results.update(noisy_test(p))
    stopper = next((cb for cb in t.callbacks if isinstance(cb, EarlyStopping)), None)
    score = "r2" if p.task == "regression" else "acc"
    results.update({f"n_{name}": len(X) for name, (X, _) in p.splits.items()})
    if p.loader.rows_per_batch < p.cfg.train.batch_size:     # the whole training split, one batch
        results["batch_size_used"] = p.loader.rows_per_batch
    results.update(
        best_epoch=stopper.best_epoch if stopper else t.epoch, epochs_run=t.epoch,
        stopped_early=bool(stopper and stopper.stopped_epoch), fit_seconds=round(fit_seconds, 3),
        # what early stopping watched, train.monitor "auto" resolved (None: no early stopping)
        monitor=stopper.monitor if stopper else None,
        # no validation split (data.split = [1, 0, 0]): nothing to compare training with
        diagnosis=diagnose(results[f"train_{score}"], results[f"val_{score}"]) if "val" in p.splits else None)
    if store is None:
        return Run(p.cfg, results, t.history, p.pipeline, run_dir, evaluation)
    save_tensors(run_dir / "model.safetensors", p.pipeline.state_dict())
    atomic_write(run_dir / "model.json", json.dumps(p.model_info(), indent=1))
    if p.text is not None:      # the fitted text features: vocabulary and idf, or word vectors
        atomic_write(run_dir / "text_features.json", json.dumps(p.text.state_dict()))
    atomic_write(run_dir / "evaluation.json", json.dumps(evaluation, indent=2))
    atomic_write(run_dir / "results.json", json.dumps(finite_json(results), indent=2))
    store.finish(run_id, "completed", finite_json(results))
    return Run(p.cfg, results, t.history, p.pipeline, run_dir, evaluation)


def restored(run_dir: Path, model: Any = None, data: Any = None) -> Prepared:
    """A finished run prepared again from its ``config.toml`` (test split on; ``model`` and
    ``data``: the user's objects, when it was given them from Python) with its saved weights."""
    cfg = load_config(run_dir / "config.toml", {"eval.test": True}).with_code(model, data)
    p = prepare(cfg)
    p.pipeline.load_state_dict(load_tensors(run_dir / "model.safetensors")[0])
    return p


def evaluate(run_dir: str | Path, splits: tuple[str, ...] = ("test",), *, model: Any = None,
             data: Any = None) -> dict[str, float]:
    """The scores of a finished run's saved model on ``splits`` (prepared again from its
    ``config.toml``, with the test split on), as ``results.json`` names them; ``model`` and
    ``data``: the user's objects again, when the run was given them from Python."""
    p = restored(Path(run_dir), model, data)
    out: dict[str, float] = {}
    for name in splits:
        if name in p.splits:
            X, y = p.splits[name]
            out.update(scores(p, final_outputs(p, X), y, name))
    return out


def add_test(run_dir: str | Path, *, model: Any = None, data: Any = None,
             db: str | None = None) -> dict[str, float]:
    """Score a finished run trained with ``eval.test = false`` on its test split, once, and
    record it as ``finish`` would have: the test scores join ``results.json`` (and the run's
    row in the store ``db``), the test report joins ``evaluation.json``. For a choice made on
    validation first (a study's tuned strength, its searched combination): the candidates
    that lost are never scored on test. Returns the test scores."""
    run_dir = Path(run_dir)
    p = restored(run_dir, model, data)
    if "test" not in p.splits:
        return {}
    X, y = p.splits["test"]
    out = final_outputs(p, X)
    test = {**scores(p, out, y, "test"), **noisy_test(p)}
    results = {**json.loads((run_dir / "results.json").read_text()), **finite_json(test)}
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    evaluation["test"] = report(p, out, y)
    atomic_write(run_dir / "evaluation.json", json.dumps(evaluation, indent=2))
    atomic_write(run_dir / "results.json", json.dumps(results, indent=2))
    store = RunStore(db)
    run_id = store.find_run(str(run_dir.resolve()))
    if run_id is not None:
        store.finish(run_id, "completed", results)
    return test
