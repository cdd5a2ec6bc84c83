"""What the benchmarks share: the machine they ran on (the study report's own helper), and the
loop a PyTorch user writes by hand (its step), which several compare against."""

import torch
import torch.nn.functional as F

from regulab.studies.aggregate import cpu_name

__all__ = ["cpu_name", "hand_step", "hand_loop"]


def hand_step(model, opt, xb, yb) -> None:
    """One step of the hand-written loop: forward, cross-entropy, zero_grad, backward, step."""
    loss = F.cross_entropy(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def hand_loop(model, X, y, Xv, yv, epochs, batch_size, lr, seed, validate):
    """The loop a PyTorch user writes by hand: Adam, minibatches sliced from a shuffled index,
    ``validate``: the validation accuracy after each epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(X)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            hand_step(model, opt, X[idx], y[idx])
        if validate:
            model.eval()
            with torch.no_grad():
                (model(Xv).argmax(1) == yv).float().mean().item()      # the validation a user runs
    return model
