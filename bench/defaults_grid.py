"""How the training defaults were chosen: early stopping replayed on whole training curves.

Early stopping changes nothing about training until it stops it, so one run per seed with early
stopping off, validation and test scored after every epoch, says where every stopping rule would
have ended: for each monitor (``val_loss``, ``val_acc``) and patience, walk the epochs as
``regulab.callbacks.EarlyStopping`` does (an epoch improves when it beats the best so far;
stop after ``patience`` epochs without), restore the best epoch's weights and read its test
accuracy. The runs are regulab's own (``prepare`` then ``Trainer.fit``, a config holding only
the setup's keys and the values under test), so a replayed rule equals a run with it.

Setups: MNIST-1D logistic regression, MLP 40-100-100-10 and regulab's CNN (``model.kind =
"cnn"``, channels [32, 32], kernel 5), and scikit-learn's 8x8 digits with the default MLP;
at Adam lr 0.001 and 0.01; ``--epochs`` (200, the default cap) epochs per run.

    python bench/defaults_grid.py [--seeds 5] [--epochs 200] [--only mnist1d-mlp,digits-mlp]

Prints, per setup and learning rate, the test accuracy of the last epoch (no early stopping)
and of each rule, mean ± std over the seeds, with the epochs each seed stopped at and kept.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import regulab as rl
from regulab.callbacks import Callback, improves, monitor_mode
from regulab.runs.prepare import prepare

SETUPS = {
    "mnist1d-logistic": {"data.dataset": "mnist1d", "model.kind": "linear"},
    "mnist1d-mlp": {"data.dataset": "mnist1d", "model.kind": "mlp", "model.hidden": [100, 100]},
    "mnist1d-cnn": {"data.dataset": "mnist1d", "model.kind": "cnn"},
    "digits-mlp": {"data.dataset": "digits"},
}
RATES = (0.001, 0.01)
RULES = [("val_loss", 10), ("val_loss", 30)] + [("val_acc", p) for p in (10, 20, 30, 50)]


class TestScore(Callback):
    """Adds the test split's scores to every epoch's logs (a benchmark's view, not a run's)."""

    def __init__(self, test):
        self.test = test

    def on_epoch_end(self, trainer, logs):
        logs.update(trainer.evaluate(*self.test, prefix="test"))


def curve(setup: dict, lr: float, seed: int, epochs: int) -> list[dict]:
    cfg = rl.load_config(None, {**setup, "optim.lr": lr, "train.seed": seed, "train.epochs": epochs,
                                "train.early_stopping": False, "train.device": "cpu",
                                "train.progress": False})
    p = prepare(cfg)
    p.trainer.callbacks.append(TestScore(p.splits["test"]))
    return p.trainer.fit(p.loader, p.splits["val"], epochs=epochs)


def replay(history: list[dict], monitor: str, patience: int) -> tuple[float, int, int]:
    """(test accuracy of the epoch kept, epoch stopped at, epoch kept) under early stopping."""
    mode, best, kept, wait = monitor_mode(monitor), None, 0, 0
    for logs in history:
        if improves(logs[monitor], best, 0.0, mode):
            best, kept, wait = logs[monitor], logs["epoch"], 0
        else:
            wait += 1
            if wait >= patience:
                break
    return history[kept - 1]["test_acc"], logs["epoch"], kept


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--only", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| setup | lr | rule | test acc, mean ± std | stopped at : kept, per seed |")
    print("|---|---|---|---|---|")
    for name in args.only.split(","):
        for lr in RATES:
            curves = [curve(SETUPS[name], lr, seed, args.epochs) for seed in range(args.seeds)]
            last = [h[-1]["test_acc"] for h in curves]
            print(f"| {name} | {lr} | none, {args.epochs} epochs | {cell(last)} | |")
            for monitor, patience in RULES:
                runs = [replay(h, monitor, patience) for h in curves]
                epochs = " / ".join(f"{stop}:{kept}" for _, stop, kept in runs)
                print(f"| {name} | {lr} | {monitor}, patience {patience} | {cell([r[0] for r in runs])} "
                      f"| {epochs} |", flush=True)


if __name__ == "__main__":
    main()
