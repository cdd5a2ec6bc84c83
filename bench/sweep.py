"""Sweep throughput (trials per minute): ``regulab sweep`` against plain Optuna with a
hand-written PyTorch loop, side by side in one process.

Both search the same space (Adam's lr in [1e-4, 3e-2], log; dropout in [0, 0.5]) with TPE
(seed 0) for the same number of trials, each training the same MLP (40-100-100-10, ReLU,
dropout after each hidden layer) on the same MNIST-1D split (tensors in memory, minibatches
of 100) for the same number of epochs, scoring validation accuracy after every epoch, no
pruning. Storage: both on a SQLite file in a temporary directory (the plain study with
Optuna's default ``RDBStorage``, no heartbeat); a third row runs the plain study in memory.
The regulab side pays for what a sweep is for: a run directory, run-store rows, a checkpoint
per epoch, heartbeats, the cross-process lock, and the best model scored on test once.
Two regulab arms: trials one at a time (``population = 1``), and the default, where the worker
trains up to 8 trials at once as one batched model (the space is all population member keys).
The arms alternate over repeats; the figure is the median of the per-repeat ratios.

    python bench/sweep.py [--trials 12] [--epochs 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import optuna
import torch
import torch.nn.functional as F
from machine import cpu_name  # bench/machine.py, beside this script

import regulab as rl
from regulab.runs.prepare import prepare
from regulab.sweeps.spec import sweep_from_dict

BASE = {"data": {"dataset": "mnist1d"}, "model": {"hidden": [100, 100]},
        "train": {"batch_size": 100, "early_stopping": False, "progress": False, "device": "cpu"}}


def hand_objective(X, y, Xv, yv, epochs: int, batch_size: int):
    """The objective a PyTorch user writes by hand around their loop."""
    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optim.lr", 1e-4, 3e-2, log=True)
        p = trial.suggest_float("model.dropout", 0.0, 0.5)
        torch.manual_seed(trial.number)
        model = torch.nn.Sequential(torch.nn.Linear(40, 100), torch.nn.ReLU(), torch.nn.Dropout(p),
                                    torch.nn.Linear(100, 100), torch.nn.ReLU(), torch.nn.Dropout(p),
                                    torch.nn.Linear(100, 10))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(trial.number)
        for epoch in range(1, epochs + 1):
            model.train()
            perm = torch.randperm(len(X), generator=g)
            for i in range(0, len(X), batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(model(X[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                acc = (model(Xv).argmax(1) == yv).float().mean().item()
            trial.report(acc, epoch)
        return acc
    return objective


def plain(objective, trials: int, storage) -> float:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", storage=storage,
                                sampler=optuna.samplers.TPESampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


def regulab_sweep(trials: int, epochs: int, tmp: str, name: str, population: int) -> float:
    spec = sweep_from_dict({
        "sweep": {"name": name, "sampler": "tpe", "trials": trials, "seed": 0, "metric": "val_acc",
                  "population": population},
        "base": {**BASE, "train": {**BASE["train"], "epochs": epochs}},
        "space": {"optim.lr": {"low": 1e-4, "high": 3e-2, "log": True},
                  "model.dropout": {"low": 0.0, "high": 0.5}}})
    start = time.perf_counter()
    rl.sweep(spec, out=f"{tmp}/{name}", db=f"sqlite:///{tmp}/regulab.db", progress=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = rl.load_config(None, {**{f"train.{k}": v for k, v in BASE["train"].items()},
                                "data.dataset": "mnist1d", "model.hidden": [100, 100]})
    p = prepare(cfg)
    (X, y), (Xv, yv) = p.splits["train"], p.splits["val"]
    objective = hand_objective(X, y, Xv, yv, args.epochs, 100)
    seconds: dict[str, list[float]] = {"plain Optuna, in memory": [], "plain Optuna, SQLite": [],
                                       "regulab sweep, SQLite, one trial at a time": [],
                                       "regulab sweep, SQLite, populations of 8": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            arms = [("plain Optuna, in memory", lambda: plain(objective, args.trials, None)),
                    ("plain Optuna, SQLite",
                     lambda r=r: plain(objective, args.trials, f"sqlite:///{tmp}/plain-{r}.db")),
                    ("regulab sweep, SQLite, one trial at a time",
                     lambda r=r: regulab_sweep(args.trials, args.epochs, tmp, f"s{r}", 1)),
                    ("regulab sweep, SQLite, populations of 8",
                     lambda r=r: regulab_sweep(args.trials, args.epochs, tmp, f"p{r}", 8))]
            for key, fn in (arms if r % 2 == 0 else arms[::-1]):
                seconds[key].append(fn())

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, optuna {optuna.__version__}, python {platform.python_version()}")
    print(f"TPE, {args.trials} trials of {args.epochs} epochs, MLP 40-100-100-10 on MNIST-1D "
          f"({len(X)} train, {len(Xv)} val), batch 100, one worker, {args.repeats} alternating repeats\n")
    print("| arm | trials/min (median) | s/trial | ratio to plain SQLite |")
    print("|---|---:|---:|---:|")
    base = seconds["plain Optuna, SQLite"]
    for key, values in seconds.items():
        ratio = statistics.median(b / v for b, v in zip(base, values))
        med = statistics.median(values)
        print(f"| {key} | {60 * args.trials / med:.1f} | {med / args.trials:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
