"""What a learning-rate schedule is worth (accuracy, not speed): MNIST-1D with augmentation.

The clinic's best technique on MNIST-1D is augmentation (shift and stretch). With Adam at a
constant 0.01 its runs end in a noisy neighbourhood of a minimum; decaying the rate lets them
settle. Per width of the MLP (40-W-W-10) and schedule, ``--seeds`` runs of ``--epochs`` epochs
(no early stopping: the schedules' horizon is the run), trained as one population per width
(``optim.schedule`` and its keys are member keys), each scored on the test split with its
final weights:

* ``none``: Adam at 0.01 throughout;
* ``cosine``: 5 epochs of linear warm-up, then cosine to 0 over the rest;
* ``step``: times 0.3 every ``epochs // 3`` epochs;
* ``plateau``: times 0.3 when validation accuracy has not improved for 10 epochs.

    python bench/schedules.py [--seeds 3] [--epochs 150] [--widths 100,256]

Prints one row per width and schedule: test accuracy mean ± std over the seeds, the best
validation accuracy, and the population's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import regulab as rl

SCHEDULES = {
    "none": {},
    "cosine": {"optim.schedule": "cosine", "optim.warmup_epochs": 5},
    "step": {"optim.schedule": "step", "optim.gamma": 0.3},        # step_size set from --epochs
    "plateau": {"optim.schedule": "plateau", "optim.gamma": 0.3, "optim.plateau_patience": 10},
}
BASE = {"data.dataset": "mnist1d", "data.split": [0.8, 0.2, 0.0], "data.preprocess": "none",
        "model.kind": "mlp", "optim.name": "adam", "optim.lr": 0.01, "train.early_stopping": False,
        "train.batch_size": 100, "train.progress": False, "train.device": "cpu",
        "image.translate": 0.2, "image.scale": [0.8, 1.2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--widths", default="100,256")
    args = ap.parse_args()
    print(f"MNIST-1D MLP, shift 0.2 and stretch 0.8-1.2, Adam 0.01, batch 100, {args.epochs} epochs, "
          f"{args.seeds} seeds, final weights")
    print("| width | schedule | test accuracy | best validation | population wall time |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for width in (int(w) for w in args.widths.split(",")):
            names, cfgs = [], []
            for name, keys in SCHEDULES.items():
                if name == "step":
                    keys = {**keys, "optim.step_size": max(1, args.epochs // 3)}
                for seed in range(args.seeds):
                    names.append(name)
                    cfgs.append(rl.load_config(None, {**BASE, **keys, "model.hidden": [width, width],
                                                      "train.epochs": args.epochs, "train.seed": seed}))
            start = time.perf_counter()
            runs = rl.train_population(cfgs, [Path(tmp) / f"w{width}-{k}" for k in range(len(cfgs))])
            wall = time.perf_counter() - start
            for name in SCHEDULES:
                mine = [r for n, r in zip(names, runs) if n == name]
                test = [r.results["test_acc"] for r in mine]
                val = [max(h["val_acc"] for h in r.history) for r in mine]
                print(f"| {width} | {name} | {statistics.mean(test):.3f} ± {statistics.stdev(test):.3f} | "
                      f"{statistics.mean(val):.3f} | {wall:.0f} s (all {len(cfgs)} runs) |")


if __name__ == "__main__":
    main()
