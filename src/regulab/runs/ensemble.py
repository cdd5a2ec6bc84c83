"""Ensembles of independently trained networks: deep ensembles and bagging.

An ensemble of K members predicts the arithmetic mean of their class probabilities::

    p(y | x) = 1/K * sum_k softmax(f_k(x))

- **Deep ensemble** (Lakshminarayanan et al., 2017): the members differ only by their random
  seed (initialization, minibatch order, dropout masks), trained on the same data.
- **Bagging** (Breiman, 1996, "Bagging predictors"): each member is also trained on its own
  bootstrap resample of the training split (n draws with replacement, ``data.bootstrap``).

Averaging reduces the variance part of the error: the members' mistakes are partly
independent, so the ensemble is usually better than its average member (the notes' "model
averaging"). Each member is a normal run (its own run directory and run-store row) under
``OUT/member-K``; the ensemble's results go to ``OUT/ensemble.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from regulab.config.core import Config
from regulab.checks import MAX_MEMBERS, MAX_SEED
from regulab.errors import ConfigError, quote
from regulab.io import atomic_write, check_out_dir, finite_json
from regulab.runs.evaluate import Run
from regulab.runs.run import train

__all__ = ["EnsembleResult", "train_ensemble", "ensemble_probabilities"]


@dataclass
class EnsembleResult:
    members: list[Run]
    results: dict[str, float]     # ensemble and member-average val/test loss and accuracy
    run_dir: Path


@torch.no_grad()
def ensemble_probabilities(models: list[torch.nn.Module], X: torch.Tensor,
                           num_classes: int | None = None) -> torch.Tensor:
    """The mean of the members' softmax probabilities on raw inputs ``X`` (eval mode).
    ``num_classes``: only the first ``num_classes`` outputs (a multi-task model's main head)."""
    return torch.stack([F.softmax(m.eval()(X)[:, :num_classes], dim=1) for m in models]).mean(0)


def _raw_splits(cfg: Config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Raw (not preprocessed) train, validation and test arrays: the same for every member
    (the training split without any bootstrap resample)."""
    from regulab.runs.prepare import load_data, split_arrays
    arrays = split_arrays(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, bootstrap=False)),
                     load_data(cfg))
    # a lazily read dataset (regulab.data.stream.Rows) is read here, whole
    return {k: (torch.as_tensor(np.asarray(X), dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))
            for k, (X, y) in arrays.items()}


def train_ensemble(cfg: Config, members: int = 5, *, bagging: bool = False,
                   out: str | Path | None = None, db: str | None = None,
                   progress: bool | None = None) -> EnsembleResult:
    """Train ``members`` runs of ``cfg`` (seeds train.seed, train.seed + 1, ...), each on a
    bootstrap resample when ``bagging``, and evaluate their averaged predictions once. The
    members train as one population (``regulab.runs.population``) when their network has a
    stacked form, else one after another; the results are the same."""
    if not isinstance(members, int) or isinstance(members, bool) or not 2 <= members <= MAX_MEMBERS:
        raise ConfigError(f"ensemble members must be an integer from 2 to {MAX_MEMBERS} (MAX_MEMBERS); "
                          f"got {quote(members)}")
    if cfg.train.seed + members - 1 > MAX_SEED:     # the members' seeds, as their configs hold them
        raise ConfigError(f"config key 'train.seed' must leave the members' seeds (seed + k) <= {MAX_SEED}; "
                          f"got {cfg.train.seed} with {members} members")
    if cfg.train.loss not in ("auto", "cross_entropy"):
        raise ConfigError(f"an ensemble averages class probabilities: config key 'train.loss' must "
                          f"be auto or cross_entropy; got {cfg.train.loss!r}")
    out = Path(out) if out is not None else Path("runs") / f"{cfg.name}-ensemble"
    check_out_dir(out)
    cfgs = [dataclasses.replace(cfg, name=f"{cfg.name}-member{k}",
                                train=dataclasses.replace(cfg.train, seed=cfg.train.seed + k),
                                data=dataclasses.replace(cfg.data, bootstrap=bagging or cfg.data.bootstrap))
            for k in range(members)]
    outs = [out / f"member-{k}" for k in range(members)]
    from regulab.engine.population.eligibility import population_key
    from regulab.runs.population import train_population
    if population_key(cfgs[0]) is not None:     # members differ only in their seeds: at once
        runs = train_population(cfgs, outs, db=db, progress=progress)
    else:
        runs = [train(c, out=o, db=db, progress=progress) for c, o in zip(cfgs, outs)]
    if runs[0].results.get("train_acc") is None:
        raise ConfigError("an ensemble averages class probabilities: the dataset must be a "
                          "classification task")
    # the main head's classes (a multi-task model has more outputs); None: every output, for a
    # run with neither a validation nor a test split to report them
    n_classes = next((len(e["classes"]) for e in runs[0].evaluation.values()), None)
    results: dict[str, float] = {"members": members, "bagging": bagging}
    for name, (X, y) in _raw_splits(cfg).items():
        models = [r.model.to("cpu") for r in runs]
        probs = ensemble_probabilities(models, X, n_classes)
        results[f"{name}_acc"] = float((probs.argmax(1) == y).double().mean())
        results[f"{name}_loss"] = float(F.nll_loss(probs.clamp_min(1e-12).log(), y))
        accs = [r.results[f"{name}_acc"] for r in runs]
        results[f"member_{name}_acc_mean"] = float(np.mean(accs))
        results[f"member_{name}_acc_std"] = float(np.std(accs))
    atomic_write(out / "ensemble.json", json.dumps(finite_json(results), indent=2))
    return EnsembleResult(runs, results, out)
