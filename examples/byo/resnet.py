"""A residual CNN of one's own, as regulab takes it: any nn.Module class (or a function
returning one). regulab gives it the techniques of the notes without changing this file.

    regulab train examples/byo/digits_resnet.toml
    regulab study examples/byo/clinic.toml --quick
"""

import torch
from torch import nn


class Block(nn.Module):
    """x -> relu(x + bn(conv(relu(bn(conv(x))))))  (He et al., 2016)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(ch)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class ResNet(nn.Module):
    """stem conv -> residual blocks -> global average pool -> dropout -> linear head."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: int = 2, classes: int = 10,
                 drop: float = 0.0):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.pool(self.blocks(torch.relu(self.stem(x)))).flatten(1)
        return self.head(self.drop(h))
