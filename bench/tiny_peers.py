"""A tiny network's whole fit against scikit-learn's MLPClassifier and a hand-written loop.

The issue's comparison: the MNIST-1D MLP (40-100-100-10, ReLU), Adam at 0.01, minibatches of
100, 50 epochs over the same 4,000 training rows (``data.split = [1, 0, 0]``: no validation, as
scikit-learn's fit has none), no early stopping, one thread each (``torch.set_num_threads(1)``,
``threadpoolctl`` for NumPy's BLAS). Timed side by side, alternating, each fit from fresh
weights:

* ``sklearn``: ``MLPClassifier(hidden_layer_sizes=(100, 100), solver="adam",
  learning_rate_init=0.01, batch_size=100, max_iter=50, alpha=0, tol=0)`` ``.fit``;
* ``hand``: the PyTorch loop a user writes (``randperm``, slice, forward, ``cross_entropy``,
  ``zero_grad``, ``backward``, ``torch.optim.Adam`` step);
* ``regulab.train``: the whole run's ``fit_seconds`` (its per-epoch metrics.csv row, store row
  and checkpoint cadence included; the final evaluation is not in it).

The figures are the medians of the per-round ratios to scikit-learn's time.

    python bench/tiny_peers.py [--repeats 5] [--epochs 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings

import torch
from machine import cpu_name, hand_loop  # bench/machine.py, beside this script
from threadpoolctl import threadpool_limits

import regulab as rl
from regulab.nn.models import build_model
from regulab.runs.prepare import prepare


def sklearn_fit(X, y, epochs: int, seed: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(100, 100), solver="adam", learning_rate_init=0.01,
                        batch_size=100, max_iter=epochs, alpha=0.0, tol=0.0,
                        n_iter_no_change=epochs + 1, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)    # max_iter reached: as asked
        clf.fit(X, y)
    return time.perf_counter() - start


def hand_fit(cfg, X, y, epochs: int, seed: int) -> float:
    model = build_model(cfg.model, (X.shape[1],), 10, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    hand_loop(model, X, y, None, None, epochs, 100, 0.01, seed, validate=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = ["data.dataset=mnist1d", "data.split=[1.0, 0.0, 0.0]", "model.hidden=[100, 100]",
                 "optim.lr=0.01", "train.batch_size=100", "train.early_stopping=false",
                 f"train.epochs={args.epochs}", "train.device=cpu", "train.threads=1",
                 "train.progress=false"]
    X, y = prepare(rl.load_config(None, overrides)).splits["train"]
    Xn, yn = X.numpy(), y.numpy()
    times: dict[str, list[float]] = {"sklearn": [], "hand": [], "regulab.train": []}
    with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            cfg = rl.load_config(None, overrides + [f"train.seed={r}"])
            order = [("sklearn", lambda r=r: sklearn_fit(Xn, yn, args.epochs, r)),
                     ("hand", lambda r=r, cfg=cfg: hand_fit(cfg, X, y, args.epochs, r)),
                     ("regulab.train", lambda r=r, cfg=cfg: rl.train(
                         cfg, out=f"{tmp}/run{r}", db=f"sqlite:///{tmp}/r.db", progress=False).results["fit_seconds"])]
            for name, fit in order if r % 2 == 0 else order[::-1]:
                times[name].append(fit())
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, one thread each, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"MLP 40-100-100-10 on MNIST-1D ({len(X)} rows, no validation), Adam lr 0.01, batch 100, "
          f"{args.epochs} epochs, {args.repeats} alternating rounds\n")
    print("| fit | median (s) | / scikit-learn (median of rounds) | range |")
    print("|---|---:|---:|---|")
    for name, values in times.items():
        ratios = [v / s for v, s in zip(values, times["sklearn"])]
        print(f"| {name} | {statistics.median(values):.3f} | **{statistics.median(ratios):.2f}x** | "
              f"{min(ratios):.2f}-{max(ratios):.2f} |")


if __name__ == "__main__":
    main()
