"""A user's network as a functional population (``torch.func``) against its K separate fits.

K members of a small user MLP (``UserMLP``: 40-100-100-10, ReLU, written as a user writes it;
Adam lr 0.01, batch 100, MNIST-1D 3,200 training / 800 validation examples, validation every
epoch), differing in seed and L2, are trained three ways side by side, alternating, on one
thread (``torch.set_num_threads(1)``):

* ``separate``: the K prepared runs fitted one after another (``Trainer.fit``), what a study
  did with a user's network before;
* ``functional``: the K runs as one functional population (``Population(functional=True)``:
  ``vmap`` over ``functional_call`` of the user's module);
* ``stacked``: the same architecture as regulab's own MLP, as a stacked population
  (``StackedNet``), the path regulab's networks take -- what the generality costs.

Only the loops are timed (runs prepared before); the figure is the median over repeats of
separate / functional (how many times faster the population is) and functional / stacked.

``--dropout P``: every member drops each hidden unit with probability P, each member drawing
its masks from its own generator in its run's order (``engine.population.draws``).

    python bench/population_func.py [--epochs 5] [--repeats 3] [--members 4 16] [--dropout 0.2]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from machine import cpu_name  # bench/machine.py, beside this script
from torch import nn

from regulab.config.core import config_from_dict
from regulab.runs.population import population_of
from regulab.runs.prepare import prepare


class UserMLP(nn.Module):
    """A user's MLP: 40-100-100-10, ReLU in its forward, dropout after each hidden layer (its
    probability 0 unless ``model.dropout`` sets it)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(40, 100), nn.Linear(100, 100), nn.Linear(100, 10)
        self.drop1, self.drop2 = nn.Dropout(0.0), nn.Dropout(0.0)

    def forward(self, x):
        return self.out(self.drop2(torch.relu(self.fc2(self.drop1(torch.relu(self.fc1(x)))))))


BASE = {"name": "bench", "data": {"dataset": "mnist1d", "split": [0.8, 0.2, 0.0], "preprocess": "none"},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"batch_size": 100, "early_stopping": False, "progress": False, "device": "cpu",
                  "threads": 1}}


def config(epochs: int, seed: int, user: bool, dropout: float = 0.0):
    d = copy.deepcopy(BASE)
    d["train"].update(epochs=epochs, seed=seed)
    d["model"] = {"factory": UserMLP} if user else {"kind": "mlp", "hidden": [100, 100], "activation": "relu"}
    d["model"]["dropout"] = dropout
    d["regularization"] = {"l2": (0.0, 1e-4, 1e-3, 1e-2)[seed % 4]}
    return config_from_dict(d)


def time_separate(cfgs, epochs: int) -> float:
    preps = [prepare(c) for c in cfgs]
    start = time.perf_counter()
    for p in preps:
        p.trainer.fit(p.loader, p.splits["val"], epochs=epochs)
    return time.perf_counter() - start


def time_population(cfgs, epochs: int) -> float:
    pop = population_of([prepare(c) for c in cfgs])
    start = time.perf_counter()
    pop.fit(epochs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--members", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="every member's dropout after each hidden layer: each draws its own masks")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prepare(config(1, 0, True))       # MNIST-1D generated and cached before any timing
    rows = []
    for K in args.members:
        user = [config(args.epochs, k, True, args.dropout) for k in range(K)]
        own = [config(args.epochs, k, False, args.dropout) for k in range(K)]
        times = []
        for _ in range(args.repeats):
            times.append((time_separate(user, args.epochs), time_population(user, args.epochs),
                          time_population(own, args.epochs)))
        sep, fun, stk = (statistics.median(t[i] for t in times) for i in range(3))
        rows.append((K, sep, fun, stk, statistics.median(s / f for s, f, _ in times),
                     statistics.median(f / s for _, f, s in times)))
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, 1 torch thread, torch {torch.__version__}")
    print(f"user MLP 40-100-100-10 on MNIST-1D, dropout {args.dropout}, Adam lr 0.01, batch 100, {args.epochs} epochs, "
          f"median of {args.repeats}\n")
    print("| K | K separate fits (s) | functional population (s) | stacked population (s) | "
          "separate / functional | functional / stacked |")
    print("|---:|---:|---:|---:|---:|---:|")
    for K, sep, fun, stk, speedup, cost in rows:
        print(f"| {K} | {sep:.2f} | {fun:.2f} | {stk:.2f} | **{speedup:.2f}x** | {cost:.2f}x |")


if __name__ == "__main__":
    main()
