"""Where a model's weights come from: a state-dict file, a local cache or a seeded init."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dime.errors import ModelError
from dime.fileio import check_input_file


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "file", "torchvision-cache", "random-init", "callable"
    detail: str

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot read weights {path}: {e}") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
    if not isinstance(obj, dict):
        raise ModelError(f"{path} holds no state dict")
    return obj


def apply_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ModelError(f"weights {path} do not fit the model: {' '.join(first[:2])}") from e


def file_weights(module: nn.Module, weights: str | Path) -> WeightsInfo:
    path = check_input_file(weights, "weights file", error=ModelError)
    apply_state_dict(module, read_state_dict(path), path)
    return WeightsInfo("file", str(path))
