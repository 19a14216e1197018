"""Models whose forward returns more than tensors, made capturable.

dime cuts graphs whose values are tensors; torch.export refuses outputs it does not know
(a transformers DynamicCache), and a key/value cache means nothing in one forward pass. So
a model whose config has `use_cache` captures with the cache off, and a model returning
ModelOutput objects, dicts or nested tuples is wrapped to return its tensors as one flat
tuple, other values (None, caches, numbers) dropped. Each change is said in one log line.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from dime.capture.trace import one_line
from dime.errors import ModelError

log = logging.getLogger(__name__)


def cache_off(name: str, module: nn.Module) -> None:
    """Turn off the key/value cache of a model whose config has `use_cache`, saying so."""
    config = getattr(module, "config", None)
    if getattr(config, "use_cache", None):
        config.use_cache = False
        log.info("%s: config.use_cache turned off for capture (one forward pass needs no key/value cache)", name)


OutputPath = tuple[Any, ...]  # keys and indices from a model's output down to one value


def tensor_paths(out: Any, path: OutputPath = ()) -> tuple[list[OutputPath], list[OutputPath]]:
    """Where a nested output holds tensors, in order, and where it holds other values
    (None is left out: it holds nothing)."""
    if isinstance(out, torch.Tensor):
        return [path], []
    if isinstance(out, dict):  # transformers' ModelOutput is an OrderedDict
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = list(enumerate(out))
    else:
        return [], ([] if out is None else [path])
    tensors: list[OutputPath] = []
    others: list[OutputPath] = []
    for key, value in items:
        t, o = tensor_paths(value, (*path, key))
        tensors += t
        others += o
    return tensors, others


def pick(out: Any, path: OutputPath) -> Any:
    for key in path:
        out = out[key]
    return out


def path_name(path: OutputPath) -> str:
    return "".join(f".{k}" if isinstance(k, str) else f"[{k}]" for k in path).lstrip(".") or "output"


def _plain(out: Any) -> bool:
    """A tensor, or a tuple or list (nested) of tensors: captured as it is."""
    if isinstance(out, torch.Tensor):
        return True
    return type(out) in (tuple, list) and len(out) > 0 and all(_plain(o) for o in out)


class FlatOutputs(nn.Module):
    """Returns the tensors of the wrapped model's output, found where they were in an
    example run (so that tracing, which sees proxies, picks the same), as one flat tuple."""

    # The wrapped model's blocks keep their own names as layers (dime.capture.split).
    inner_prefix = "model."

    def __init__(self, model: nn.Module, paths: list[OutputPath]) -> None:
        super().__init__()
        self.model = model
        self.paths = paths
        if hasattr(model, "config"):
            self.config = model.config

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(*args)
        return tuple(pick(out, p) for p in self.paths)


def tensor_outputs(name: str, module: nn.Module, example: tuple[torch.Tensor, ...]) -> nn.Module:
    """`module`, or a FlatOutputs around it when its output (on `example`) is not tensors."""
    cache_off(name, module)
    with torch.no_grad():
        try:
            out = module.eval()(*example)
        except Exception as e:
            raise ModelError(f"{name}: running it on its example inputs failed: {one_line(e)}") from e
    if _plain(out):
        return module
    tensors, others = tensor_paths(out)
    if not tensors:
        raise ModelError(f"{name}: its output ({type(out).__name__}) holds no tensors")
    note = ""
    if others:
        note = "; dropped: " + ", ".join(f"{path_name(p)} ({type(pick(out, p)).__name__})" for p in others)
    log.info("%s: returns %s; captured as its tensors %s%s", name, type(out).__name__,
             ", ".join(path_name(p) for p in tensors), note)
    return FlatOutputs(module, tensors)
