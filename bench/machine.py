"""What the benchmarks share: the machine they ran on (the study report's own helper), and the
training step of the loop a PyTorch user writes by hand, which several compare against."""

import torch.nn.functional as F

from regulab.studies.aggregate import cpu_name

__all__ = ["cpu_name", "hand_step"]


def hand_step(model, opt, xb, yb) -> None:
    """One step of the hand-written loop: forward, cross-entropy, zero_grad, backward, step."""
    loss = F.cross_entropy(model(xb), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
