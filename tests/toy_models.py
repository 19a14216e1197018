"""Small models for fast tests (importable as `toy_models:<fn>` with tests/ on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class SkipNet(nn.Module):
    """A chain with a long skip connection, so some cuts carry two tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        c = self.conv3(b) + a
        return self.fc(torch.flatten(self.pool(c), 1))


def skipnet() -> nn.Module:
    return SkipNet()


def not_a_module() -> int:
    return 3
