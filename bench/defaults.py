"""The defaults against published baselines: ``regulab train`` on a config that sets only
``[data] dataset`` and ``[model]``, several seeds, against the figure a paper gives for that
network on that data.

Setups (each config file holds nothing but these keys; ``--set train.seed=K`` picks the seed):

* ``mnist1d-logistic``: MNIST-1D, ``model.kind = "linear"`` (multinomial logistic regression,
  40 -> 10). Greydanus (2020), "Scaling down Deep Learning", arXiv:2011.14439, table 1:
  logistic regression 32% test accuracy.
* ``mnist1d-mlp``: MNIST-1D, MLP 40-100-100-10 ReLU, the paper's MLP. Same table: 68%.
* ``mnist-mlp800``: full MNIST, MLP 784-800-10 ReLU, cross-entropy. Simard, Steinkraus and
  Platt (2003), "Best practices for convolutional neural networks applied to visual document
  analysis", ICDAR, table 1 (2-layer MLP, 800 hidden units, cross-entropy, no distortions):
  1.6% test error, i.e. 98.4% accuracy. About 10 minutes a seed on one core (``--only``).

Two more setups are reported beside them, not defaults: ``mnist1d-mlp-paper``, the paper's own
training of its MLP (every one of the 4,000 training rows, no validation split, no early
stopping, 150 epochs = 6,000 steps of 100, Adam lr 0.01, last weights), and ``--old``, each
setup again with the defaults before issue 14 (``train.monitor = "val_loss"``, patience 10,
50 epochs, Adam lr 0.001).

    python bench/defaults.py [--seeds 3] [--only mnist1d-logistic,mnist1d-mlp] [--old]
                             [--set optim.lr=0.001]

Each run is ``regulab train`` itself (``regulab.cli.main``), in a temporary directory, on the
CPU (``train.device = "cpu"``) with one torch thread, so the figures do not depend on the
device; the table gives test accuracy mean ± std over the seeds, each seed's figure, and the
epochs run and kept (the best epoch early stopping restored).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name  # bench/machine.py, beside this script

from regulab.cli import main

# name -> (config file text, extra --set overrides, published test accuracy, where it is from)
SETUPS = {
    "mnist1d-logistic": ('[data]\ndataset = "mnist1d"\n[model]\nkind = "linear"\n', [],
                         0.32, "Greydanus 2020, table 1: logistic regression"),
    "mnist1d-mlp": ('[data]\ndataset = "mnist1d"\n[model]\nkind = "mlp"\nhidden = [100, 100]\n', [],
                    0.68, "Greydanus 2020, table 1: MLP"),
    "mnist1d-mlp-paper": ('[data]\ndataset = "mnist1d"\n[model]\nkind = "mlp"\nhidden = [100, 100]\n',
                          ["data.split=[1.0, 0.0, 0.0]", "train.early_stopping=false",
                           "train.epochs=150", "optim.lr=0.01"],
                          0.68, "Greydanus 2020, table 1: MLP (the paper's training)"),
    "mnist-mlp800": ('[data]\ndataset = "mnist"\n[model]\nkind = "mlp"\nhidden = [800]\n', [],
                     0.984, "Simard et al. 2003, table 1: MLP 800 HU, cross-entropy"),
}
DEFAULT_SETUPS = "mnist1d-logistic,mnist1d-mlp,mnist1d-mlp-paper"
# the defaults before issue 14, for the --old comparison
OLD = ["train.monitor=val_loss", "train.patience=10", "train.epochs=50", "optim.lr=0.001"]


def run(name: str, seed: int, tmp: Path, old: bool, extra: list[str]) -> dict:
    text, sets, _, _ = SETUPS[name]
    cfg = tmp / f"{name}.toml"
    cfg.write_text(text)
    out = tmp / f"{name}-{'old-' if old else ''}{seed}"
    sets = [*sets, *(OLD if old else []), *extra, f"train.seed={seed}", "train.device=cpu"]
    args = ["train", str(cfg), "--out", str(out), "--db", f"sqlite:///{tmp}/runs.db", "--quiet"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):     # its summary line: the table says it
        code = main([*args, *[a for s in sets for a in ("--set", s)]])
    if code != 0:
        raise SystemExit(f"{name} seed {seed}: regulab train failed (exit code {code})")
    results = json.loads((out / "results.json").read_text())
    return {**results, "seconds": time.perf_counter() - start}


def row(name: str, runs: list[dict], old: bool, extra: list[str]) -> str:
    _, _, paper, source = SETUPS[name]
    accs = [r["test_acc"] for r in runs]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    seeds = " / ".join(f"{a:.3f}" for a in accs)
    epochs = " / ".join(f"{r['epochs_run']}:{r['best_epoch']}" for r in runs)
    label = f"{name} (old defaults)" if old else name
    label += "".join(f" --set {s}" for s in extra)
    return (f"| {label} | {paper:.3f} ({source}) | **{statistics.mean(accs):.3f} ± {std:.3f}** | {seeds} "
            f"| {epochs} | {runs[0]['n_train']} | {statistics.mean(r['seconds'] for r in runs):.0f} |")


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default=DEFAULT_SETUPS, help=f"comma-separated, of {', '.join(SETUPS)}")
    ap.add_argument("--old", action="store_true", help="also run each setup with the old defaults")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run (a default's alternative, e.g. optim.lr=0.001)")
    args = ap.parse_args()
    names = args.only.split(",")
    for n in names:
        if n not in SETUPS:
            raise SystemExit(f"--only: unknown setup '{n}' (allowed: {', '.join(SETUPS)})")
    torch.set_num_threads(args.threads)
    print(f"# {cpu_name()}, {os.cpu_count()} CPUs, {args.threads} torch thread(s); torch {torch.__version__}, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| setup | published test acc | regulab test acc, mean ± std | per seed | epochs run:kept "
          "| training rows | s per run |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for old in (False, True) if args.old and SETUPS[name][1] == [] else (False,):
                runs = [run(name, seed, Path(tmp), old, args.set) for seed in range(args.seeds)]
                print(row(name, runs, old, args.set), flush=True)


if __name__ == "__main__":
    main_()
