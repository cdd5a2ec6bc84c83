"""Intra-op threads (``train.threads``): where more than one pays, and a run next to a busy process.

1. Per workload, the fit time with 1 thread against every core, alternating, median of
   ``--repeats``: the MNIST-1D MLP 40-W-W-10 (Adam, batch 100, ``--epochs`` epochs, no early
   stopping) alone and as populations of K seeds. With each its work per step,
   ``6 * parameters * batch * K`` (``regulab.engine.threads.step_flops``), which ``"auto"``
   compares with ``SMALL_STEP_FLOPS``.
2. The MNIST-1D MLP (40-100-100-10) on an idle machine against the same next to a process that
   keeps one core busy (a Python loop), with ``train.threads`` "auto" and with every core (the
   behaviour before ``train.threads``): the slowdown each suffers.

    python bench/threads.py [--repeats 3] [--epochs 40]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import regulab as rl
from regulab.engine import threads
from regulab.runs.prepare import prepare

WORKLOADS = [(100, 1), (100, 3), (150, 1), (150, 12), (150, 64), (256, 12)]     # (width, members)


def config(width: int, seed: int, n: int | str, epochs: int):
    return rl.load_config(None, {"data.dataset": "mnist1d", "model.hidden": [width, width],
                                 "train.epochs": epochs, "train.early_stopping": False,
                                 "train.progress": False, "train.device": "cpu",
                                 "train.seed": seed, "train.threads": n})


def fit_seconds(width: int, members: int, n: int | str, epochs: int, tmp: Path) -> float:
    cfgs = [config(width, s, n, epochs) for s in range(members)]
    outs = [Path(tempfile.mkdtemp(dir=tmp)) / f"m{k}" for k in range(members)]
    runs = rl.train_population(cfgs, outs) if members > 1 else [rl.train(cfgs[0], out=outs[0])]
    return runs[0].results["fit_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    cores = threads.cores()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{cores} cores; fit seconds, median of {args.repeats}, {args.epochs} epochs")
        print(f"| network | members | MFLOP per step | 1 thread | {cores} threads | {cores} / 1 | auto gives |")
        print("|---|---|---|---|---|---|---|")
        for width, members in WORKLOADS:
            flops = threads.step_flops(prepare(config(width, 0, 1, args.epochs)).trainer.model, 100, members)
            times = {1: [], cores: []}
            for _ in range(args.repeats):
                for n in times:
                    times[n].append(fit_seconds(width, members, n, args.epochs, tmp))
            one, many = statistics.median(times[1]), statistics.median(times[cores])
            print(f"| 40-{width}-{width}-10 | {members} | {flops / 1e6:.0f} | {one:.2f} | {many:.2f} | "
                  f"{many / one:.2f} | {threads.choose('auto', flops)} |")

        print("\nThe MNIST-1D MLP 40-100-100-10 next to a process that keeps one core busy")
        print("| train.threads | idle | next to a busy process | slowdown |")
        print("|---|---|---|---|")
        for n in ("auto", cores):
            idle, busy = [], []
            for _ in range(args.repeats):
                idle.append(fit_seconds(100, 1, n, args.epochs, tmp))
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    busy.append(fit_seconds(100, 1, n, args.epochs, tmp))
                finally:
                    spinner.kill()
                    spinner.wait()
            a, b = statistics.median(idle), statistics.median(busy)
            print(f"| {n} | {a:.2f} s | {b:.2f} s | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
