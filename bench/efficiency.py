"""Training efficiency: achieved FLOP/s of regulab's training loop as a fraction of peak.

The network is the 784-1024-1024-10 MLP (ReLU) on full MNIST (60,000 training images, all
of them in the training split), minibatches of 256, plain SGD (lr 0.01) so that the
optimizer adds little, trained by ``regulab``'s ``Trainer`` exactly as ``regulab train``
does (data resident as tensors, shuffled by index) -- without per-epoch validation, which
is not training.

FLOPs counted per example, with a multiply-add as 2 FLOPs (the matrix products only):

    forward   2 * sum_l n_in_l * n_out_l
    backward  2 * sum_l n_in_l * n_out_l        (weight gradients)
            + 2 * sum_{l > 1} n_in_l * n_out_l  (input gradients; none for the first layer)

Peak: the best of several ``torch.mm`` of 4096 x 4096 float32 matrices on the same machine
and threads ("machine peak"), and of the three forward products at this batch size ("at
these shapes"), measured in the same run.

When the efficiency is below 0.6 the script prints where the time of one training step
goes (each part timed separately over many steps): gathering the batch, the forward
products, the backward pass, the optimizer step, and the rest of the loop.

    python bench/efficiency.py [--epochs 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F
from machine import cpu_name  # bench/machine.py, beside this script

from regulab.config.core import config_from_dict
from regulab.runs.prepare import prepare

LAYERS = [784, 1024, 1024, 10]


def flops_per_example() -> float:
    pairs = list(zip(LAYERS, LAYERS[1:]))
    forward = sum(2 * a * b for a, b in pairs)
    backward = forward + sum(2 * a * b for a, b in pairs[1:])
    return forward + backward


def mm_flops(m: int, k: int, n: int, repeats: int = 10) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best


def shapes_peak(batch: int) -> float:
    """FLOP/s of the forward products at this batch size, best of many (an attainable peak)."""
    pairs = list(zip(LAYERS, LAYERS[1:]))
    total = sum(2 * batch * a * b for a, b in pairs)
    mats = [(torch.randn(batch, a), torch.randn(a, b)) for a, b in pairs]
    best = float("inf")
    for _ in range(50):
        start = time.perf_counter()
        for x, w in mats:
            x @ w
        best = min(best, time.perf_counter() - start)
    return total / best


def config(batch: int, epochs: int):
    return config_from_dict({
        "name": "efficiency",
        "data": {"dataset": "mnist", "split": [0.999, 0.001, 0.0], "preprocess": "standardize"},
        "model": {"kind": "mlp", "hidden": LAYERS[1:-1], "activation": "relu"},
        "optim": {"name": "sgd", "lr": 0.01},
        "train": {"epochs": epochs, "batch_size": batch, "early_stopping": False, "progress": False,
                  "device": "cpu"}})


def breakdown(p, steps: int = 60) -> dict[str, float]:
    """Seconds per step of each part of a training step, timed apart."""
    net, opt, X, y = p.trainer.model, p.trainer.optimizer, *p.splits["train"]
    batch = p.cfg.train.batch_size
    parts = dict.fromkeys(["gather batch", "forward", "loss", "backward", "optimizer step"], 0.0)
    order = torch.randperm(len(X))
    for i in range(steps + 5):
        t0 = time.perf_counter()
        idx = order[i * batch:(i + 1) * batch]
        xb, yb = X[idx], y[idx]
        t1 = time.perf_counter()
        out = net(xb)
        t2 = time.perf_counter()
        loss = F.cross_entropy(out, yb)
        t3 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        if i >= 5:
            for key, dt in zip(parts, [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4]):
                parts[key] += dt / steps
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    p = prepare(config(args.batch, args.epochs))
    n = len(p.splits["train"][0])
    peak = max(mm_flops(4096, 4096, 4096) for _ in range(3))
    at_shapes = shapes_peak(args.batch)
    start = time.perf_counter()
    p.trainer.fit(p.loader, None, epochs=args.epochs)     # no validation: training only
    seconds = time.perf_counter() - start
    achieved = flops_per_example() * n * args.epochs / seconds
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    print(f"MLP {'-'.join(map(str, LAYERS))} on MNIST ({n} training images), batch {args.batch}, "
          f"SGD, {args.epochs} epochs in {seconds:.1f} s; {flops_per_example() / 1e6:.2f} MFLOP per example\n")
    print("| measure | GFLOP/s | fraction of machine peak |")
    print("|---|---:|---:|")
    print(f"| machine peak: torch.mm 4096 x 4096 float32 | {peak / 1e9:.1f} | 1.00 |")
    print(f"| peak at these shapes: the 3 forward products, batch {args.batch} | {at_shapes / 1e9:.1f} | "
          f"{at_shapes / peak:.2f} |")
    print(f"| achieved: regulab training (forward + backward + SGD) | {achieved / 1e9:.1f} | "
          f"**{achieved / peak:.2f}** |")
    parts = breakdown(p)
    step = seconds / (args.epochs * len(p.loader))
    print(f"\nwhere one training step's time goes ({step * 1e3:.1f} ms per step in the run above):\n")
    print("| part | ms per step | share | GFLOP/s of its products |")
    print("|---|---:|---:|---:|")
    pairs = list(zip(LAYERS, LAYERS[1:]))
    fwd = sum(2 * args.batch * a * b for a, b in pairs)
    flops = {"forward": fwd, "backward": flops_per_example() * args.batch - fwd}
    total = sum(parts.values())
    for key, dt in parts.items():
        rate = f"{flops[key] / dt / 1e9:.1f}" if key in flops else ""
        print(f"| {key} | {dt * 1e3:.2f} | {dt / total:.0%} | {rate} |")
    print(f"| rest of the loop (metrics, bookkeeping) | {max(step - total, 0) * 1e3:.2f} | | |")


if __name__ == "__main__":
    main()
