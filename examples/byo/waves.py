"""A user's own 1-D data and network, as regulab takes them from a Python file.

``load`` returns a dict of map-style ``torch.utils.data.Dataset``s of ``(x, y)`` (the user's own
train/test split; regulab splits validation off ``train`` by ``data.split``); ``ConvNet1d`` is
an ``nn.Module`` class. ``waves.toml`` names both:

    regulab train examples/byo/waves.toml
"""

import math

import torch
from torch import nn


class Waves(torch.utils.data.Dataset):
    """``n`` noisy waves of 64 samples, each a sine, a square or a triangle wave (the label) of a
    random frequency and phase; item ``i`` is drawn from ``(seed, i)``, so nothing is stored."""

    classes = ("sine", "square", "triangle")

    def __init__(self, n: int, seed: int, noise: float = 0.8):
        self.n, self.seed, self.noise = n, seed, noise

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        label = i % 3
        freq, phase = 1 + 3 * torch.rand((), generator=g), 2 * math.pi * torch.rand((), generator=g)
        t = torch.linspace(0, 1, 64)
        s = torch.sin(2 * math.pi * freq * t + phase)
        wave = [s, torch.sign(s), 2 / math.pi * torch.asin(s)][label]
        x = wave + self.noise * torch.randn(64, generator=g)
        return x.unsqueeze(0), label              # (1, 64): one channel


def load():
    """The data ``data.dataset = "python:waves.py:load"`` names."""
    return {"train": Waves(1500, seed=0), "test": Waves(500, seed=1)}


class ConvNet1d(nn.Module):
    """Two conv blocks, global average pooling, dropout and a linear head."""

    def __init__(self, channels: int = 16, classes: int = 3, drop: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(channels, channels, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1))
        self.drop = nn.Dropout(drop)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.drop(self.features(x).flatten(1)))
