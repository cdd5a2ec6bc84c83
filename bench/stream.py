"""Images per second of streamed data against resident data and a hand-written DataLoader loop.

The same small CNN (``model.kind = "cnn"``, the same initial weights), Adam, batch 64, on the same
map-style dataset of 32x32 RGB images (decoded images held as uint8, converted to float per item,
as an image folder's items are once read): regulab with the data resident (collated once into
tensors, ``TensorLoader``), regulab streaming it (``data.resident = false``: a DataLoader with
``data.workers`` workers, preprocessing on the device), and the loop a PyTorch user writes by hand
over ``torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=W)``. Each
times ``epochs`` epochs of training (no per-epoch validation, no run directory); the three run
alternately (rotating their order), and the figure is the median of the per-round ratios.

    python bench/stream.py [--n 4096] [--epochs 2] [--repeats 5] [--workers 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from machine import cpu_name, hand_step  # bench/machine.py, beside this script

import regulab as rl
from regulab.runs.prepare import prepare


class Images(torch.utils.data.Dataset):
    """``n`` 32x32 RGB images of 10 classes, held decoded as uint8 (N, 3, 32, 32)."""

    def __init__(self, n: int):
        g = np.random.default_rng(0)
        self.y = g.integers(0, 10, n)
        self.pixels = (g.random((n, 3, 32, 32)) * 128 + self.y[:, None, None, None] * 12).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.pixels[i].astype(np.float32) / 255.0, int(self.y[i])


def regulab_fit(cfg, data, epochs: int) -> tuple[float, int]:
    p = prepare(cfg.with_code(data=data))
    start = time.perf_counter()
    p.trainer.fit(p.loader, None, epochs=epochs)
    return time.perf_counter() - start, len(p.loader.y)


def hand_fit(cfg, data, epochs: int, workers: int, n_train: int) -> float:
    """The loop a PyTorch user writes: a DataLoader over the training rows, forward, loss, step."""
    p = prepare(cfg.with_code(data=data))
    model = p.trainer.model                      # the same network, the same initial weights
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    rows = torch.utils.data.Subset(data, range(n_train))
    loader = torch.utils.data.DataLoader(rows, batch_size=cfg.train.batch_size, shuffle=True,
                                         num_workers=workers, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            hand_step(model, opt, xb, yb)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the training process")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = Images(args.n)
    base = {"model.kind": "cnn", "model.channels": [8, 16], "model.kernel_size": 3, "model.hidden": [32],
            "optim.name": "adam", "optim.lr": 0.001, "train.batch_size": 64, "train.early_stopping": False,
            "train.device": "cpu", "train.progress": False, "data.workers": args.workers}
    resident = rl.load_config(None, {**base, "data.resident": True})
    streamed = rl.load_config(None, {**base, "data.resident": False})
    paths = {"resident": lambda: regulab_fit(resident, data, args.epochs),
             "streamed": lambda: regulab_fit(streamed, data, args.epochs)}
    seconds: dict[str, list[float]] = {"resident": [], "streamed": [], "hand DataLoader": []}
    n_train = 0
    for r in range(args.repeats):
        order = ["resident", "streamed", "hand DataLoader"]
        order = order[r % 3:] + order[:r % 3]
        for name in order:
            if name == "hand DataLoader":
                seconds[name].append(hand_fit(resident, data, args.epochs, args.workers, n_train or args.n))
            else:
                t, n_train = paths[name]()
                seconds[name].append(t)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, python {platform.python_version()}, no GPU, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"CNN conv 8-16 (3x3) + dense 32 on {n_train} 32x32 RGB training images, batch 64, "
          f"{args.epochs} epochs, {args.workers} workers, {args.repeats} rounds")
    for name, values in seconds.items():
        print(f"{name:<16} median {statistics.median(values):.3f} s  "
              f"{n_train * args.epochs / statistics.median(values):8.0f} images/s")
    for name in ("streamed", "hand DataLoader"):
        ratios = [a / b for a, b in zip(seconds[name], seconds["resident"])]
        print(f"ratio {name}/resident time: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})")
    ratios = [a / b for a, b in zip(seconds["streamed"], seconds["hand DataLoader"])]
    print(f"ratio streamed/hand DataLoader time: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
