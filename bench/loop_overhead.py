"""Fit time of regulab's Trainer against a minimal hand-written PyTorch loop, side by side.

Both train the same MLP (40-100-100-10, ReLU, the same initial weights) with Adam (lr 0.01)
on the same MNIST-1D training split (tensors in memory, minibatches of 100 by tensor
slicing of a shuffled index), for the same number of epochs, and both evaluate validation
accuracy after every epoch. The runs alternate (hand, Trainer, hand, Trainer, ...) so that
drift in the machine's speed hits both; the figure is the median of the per-pair ratios.

A second comparison drops the per-epoch validation from both. A third times the whole
``regulab.train`` run (checkpoint, metrics.csv and run-store row every epoch) by its
``fit_seconds``, against the hand loop of the same pair.

    python bench/loop_overhead.py [--epochs 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from machine import cpu_name, hand_loop  # bench/machine.py, beside this script

import regulab as rl
from regulab.data.loader import TensorLoader
from regulab.engine.optimizers import build_optimizer
from regulab.engine.trainer import Trainer, loss_function
from regulab.nn.models import build_model
from regulab.runs.prepare import prepare


def regulab_trainer(model, cfg, X, y, Xv, yv, epochs, seed, validate):
    loader = TensorLoader(X, y, cfg.train.batch_size, generator=torch.Generator().manual_seed(seed))
    trainer = Trainer(model, build_optimizer(cfg.optim, model.parameters()),
                      loss_function("cross_entropy"))
    trainer.fit(loader, (Xv, yv) if validate else None, epochs=epochs)
    return model


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    cfg = rl.load_config(None, ["data.dataset=mnist1d", "model.hidden=[100, 100]", "optim.lr=0.01",
                                "train.batch_size=100", "train.early_stopping=false",
                                f"train.epochs={args.epochs}", "train.device=cpu"])
    p = prepare(cfg)
    X, y = p.splits["train"]
    Xv, yv = p.splits["val"]
    init = build_model(cfg.model, (40,), 10, torch.Generator().manual_seed(0)).state_dict()

    def fresh():
        m = build_model(cfg.model, (40,), 10)
        m.load_state_dict(init)
        return m

    ratios = {"with validation": [], "training only": [], "regulab.train (full run)": []}
    times: dict[str, list[float]] = {"hand": [], "trainer": []}
    for r in range(args.repeats):
        for validate, key in ((True, "with validation"), (False, "training only")):
            pair = [("hand", lambda r=r, v=validate: hand_loop(fresh(), X, y, Xv, yv, args.epochs, 100, 0.01,
                                                                 r, v)),
                    ("trainer", lambda r=r, v=validate: regulab_trainer(fresh(), cfg, X, y, Xv, yv, args.epochs,
                                                                        r, v))]
            if r % 2:
                pair.reverse()
            t = {name: timed(fn) for name, fn in pair}
            ratios[key].append(t["trainer"] / t["hand"])
            if validate:
                times["hand"].append(t["hand"])
                times["trainer"].append(t["trainer"])
        with tempfile.TemporaryDirectory() as tmp:
            hand = timed(lambda r=r: hand_loop(fresh(), X, y, Xv, yv, args.epochs, 100, 0.01, r, True))
            run = rl.train(cfg, out=f"{tmp}/run", db=f"sqlite:///{tmp}/runs.db", progress=False)
            ratios["regulab.train (full run)"].append(run.results["fit_seconds"] / hand)

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {platform.python_version()}")
    print(f"MLP 40-100-100-10 on MNIST-1D ({len(X)} train, {len(Xv)} val), Adam lr 0.01, batch 100, "
          f"{args.epochs} epochs, {args.repeats} alternating pairs")
    print(f"hand loop fit:  median {statistics.median(times['hand']):.3f} s")
    print(f"Trainer fit:    median {statistics.median(times['trainer']):.3f} s")
    for key, values in ratios.items():
        print(f"ratio Trainer/hand, {key:<26} median {statistics.median(values):.3f}  "
              f"(min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
