"""Multi-task learning: one shared trunk, several heads, a weighted sum of their losses.

The notes (file 001, "Aprendizaje de multiples tareas"; Goodfellow et al., *Deep Learning*,
2016, section 7.7; Caruana, 1997, "Multitask learning") regularize a network by asking the
same representation to serve related tasks. regulab uses hard parameter sharing: every
hidden layer is shared and each task adds only its own linear output layer (head) on the
last hidden representation ``h(x)``::

    z_t = W_t h(x) + b_t                      head t, t = 0 (the main task), 1, ..., T
    L   = sum_t lambda_t * CE(z_t, y_t)       lambda_0 = multitask.main_weight,
                                              lambda_t = multitask.weights[t - 1]

The auxiliary labels are derived from the main class label ``c`` by a map ``g_t``: built-in
``parity`` (``c mod 2``: even/odd digit) and ``greater_than_4`` (``c > 4``), or a user's map
``multitask.groups.NAME = [g(0), g(1), ..., g(C-1)]`` (one label per class). They are
derived from the training labels as given -- after ``data.label_noise`` has flipped some, so
a noisy label stays consistent across heads.

The model outputs the heads side by side, ``(B, C + K_1 + ... + K_T)``; ``Tasks`` knows the
column ranges. The main head's loss and accuracy are what ``train_loss``/``val_loss``/
``*_acc`` report (and what early stopping watches), so a multi-task run is compared with a
single-task one on the same numbers; ``*_total_loss`` is the weighted objective and
``*_NAME_loss``/``*_NAME_acc`` each auxiliary head's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from regulab.errors import ConfigError, invalid
from regulab.metrics import classification_report

__all__ = ["BUILTIN_TASKS", "Tasks"]

# name -> (label of class c, class names of the task)
BUILTIN_TASKS = {
    "parity": (lambda c: c % 2, ["even", "odd"]),
    "greater_than_4": (lambda c: int(c > 4), ["<=4", ">4"]),
}


class Tasks:
    """The heads of a multi-task classifier: their names, sizes, label maps and loss weights.

    ``Tasks(num_classes, ["parity"], weights=[0.5])`` has heads ``main`` (``num_classes``
    columns) and ``parity`` (2 columns); ``labels`` turns class labels ``(N,)`` into the
    targets ``(N, 1 + T)``; ``losses``/``hits`` score outputs per head.
    """

    def __init__(self, num_classes: int, tasks: Sequence[str], weights: Sequence[float] | None = None,
                 main_weight: float = 1.0, groups: Mapping[str, Sequence[int]] | None = None,
                 classes: Sequence[str] | None = None, label_smoothing: float = 0.0):
        groups = dict(groups or {})
        weights = [1.0] * len(tasks) if weights is None else [float(w) for w in weights]
        if len(weights) != len(tasks):
            raise ConfigError(f"config key 'multitask.weights' must have one weight per task "
                              f"({len(tasks)}: {list(tasks)}); got {list(weights)}")
        self.names = ["main"]
        self.maps = [np.arange(num_classes)]
        self.classes = [list(classes) if classes is not None else [str(c) for c in range(num_classes)]]
        for name in tasks:
            if name in groups:
                m = np.asarray(groups[name], dtype=np.int64)
                if len(m) != num_classes:
                    raise ConfigError(f"config key 'multitask.groups.{name}' must give one label per "
                                      f"class ({num_classes}); got {len(m)} labels")
                names = [str(k) for k in range(int(m.max()) + 1)]
            elif name in BUILTIN_TASKS:
                rule, names = BUILTIN_TASKS[name]
                m = np.array([rule(c) for c in range(num_classes)], dtype=np.int64)
            else:
                raise invalid("multitask.tasks", f"names of tasks: {', '.join([*BUILTIN_TASKS, *groups])} "
                              "(or one defined in [multitask.groups])", name, options=[*BUILTIN_TASKS, *groups])
            if len(np.unique(m)) < 2:
                raise ConfigError(f"config key 'multitask.tasks': task {name!r} gives all {num_classes} "
                                  f"classes the same label {int(m[0])}; it needs at least 2 labels")
            self.names.append(name)
            self.maps.append(m)
            self.classes.append(names)
        self.sizes = [len(c) for c in self.classes]
        self.weights = torch.tensor([float(main_weight), *weights])     # (H,)
        self.label_smoothing = label_smoothing

    @property
    def auxiliary(self) -> list[str]:
        return self.names[1:]

    def labels(self, y: np.ndarray) -> np.ndarray:
        """Class labels ``(N,)`` -> targets ``(N, H)``: column t is ``g_t(y)``."""
        return np.stack([m[y] for m in self.maps], axis=1)

    def split(self, out: Tensor) -> tuple[Tensor, ...]:
        """The heads' outputs ``(B, K_t)`` of the side-by-side output ``(B, sum K_t)``."""
        return out.split(self.sizes, dim=-1)

    def losses(self, out: Tensor, y: Tensor, log_probs: bool = False) -> Tensor:
        """Each head's mean cross-entropy ``(H,)``; ``log_probs``: ``out`` holds log-probabilities
        (Monte-Carlo dropout), scored by their negative log-likelihood without smoothing."""
        return torch.stack([
            F.nll_loss(z, y[:, t]) if log_probs
            else F.cross_entropy(z, y[:, t], label_smoothing=self.label_smoothing)
            for t, z in enumerate(self.split(out))])

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        """The training objective ``sum_t lambda_t CE_t``."""
        return self.losses(out, y) @ self.weights.to(out.device, out.dtype)

    def hits(self, out: Tensor, y: Tensor) -> Tensor:
        """Correct predictions per head ``(H,)``."""
        return torch.stack([(z.argmax(-1) == y[:, t]).sum() for t, z in enumerate(self.split(out))])

    def summarize(self, prefix: str, loss_sums: Tensor, hits: Tensor, n: int) -> dict[str, float]:
        """Per-epoch logs from summed per-head losses and hits over ``n`` examples."""
        losses = (loss_sums / n).tolist()
        accs = (hits.double() / n).tolist()
        logs = {f"{prefix}_loss": losses[0], f"{prefix}_acc": accs[0],
                f"{prefix}_total_loss": float(torch.tensor(losses, dtype=torch.float64)
                                              @ self.weights.double())}
        for name, loss, acc in zip(self.auxiliary, losses[1:], accs[1:]):
            logs[f"{prefix}_{name}_loss"] = loss
            logs[f"{prefix}_{name}_acc"] = acc
        return logs

    def report(self, out: Tensor, y: Tensor) -> dict:
        """evaluation.json's entry: the main head's classification report, plus each auxiliary
        head's under ``"tasks"``."""
        reports = [classification_report(z, y[:, t], self.classes[t]) for t, z in enumerate(self.split(out))]
        return {**reports[0], "tasks": dict(zip(self.auxiliary, reports[1:]))}
