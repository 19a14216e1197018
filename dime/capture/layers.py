"""Which graph nodes form a layer, when the model has no named default layers.

Nodes are grouped by the block they run inside: top-level children, opened up through
containers (nn.Sequential / ModuleList / ModuleDict), through modules that hold a stack
of blocks somewhere below them (a transformer's encoder) and through any module holding
more than half of the parameters. Parameter-free, cheap modules (identity, dropout,
activations, flatten, pooling) and glue code between blocks join a neighbour rather
than stand alone. Cuts that would carry more tensors than the cuts on either side (the
middle of a skip connection) are dropped. `merge` then joins the cheapest neighbours
until about N layers remain.
"""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
STACK_MIN = 4
# Op names that make a parameter-free module worth a layer of its own.
_HEAVY_OPS = ("matmul", "bmm", "mm", "conv", "linear", "scaled_dot_product", "einsum", "attention")


def is_stack(mod: nn.Module) -> bool:
    """A container of >= STACK_MIN modules of one class: a stack of blocks."""
    if type(mod) not in CONTAINERS:
        return False
    kids = list(mod.children())
    return len(kids) >= STACK_MIN and len({type(k) for k in kids}) == 1


class BlockFinder:
    """Maps a module path (as in nn_module_stack) to the block it belongs to."""

    def __init__(self, root: nn.Module) -> None:
        self.root = root
        self.total_params = sum(p.numel() for p in root.parameters())
        self._stack: dict[int, bool] = {}

    def contains_stack(self, mod: nn.Module) -> bool:
        key = id(mod)
        if key not in self._stack:
            self._stack[key] = is_stack(mod) or any(self.contains_stack(c) for c in mod.children())
        return self._stack[key]

    def opens(self, mod: nn.Module, parent: nn.Module | None = None) -> bool:
        """Whether a block's children become blocks in their place; the items of a stack
        are blocks as they are, containers or not."""
        if self.contains_stack(mod):
            return True
        if type(mod) in CONTAINERS and not (parent is not None and is_stack(parent)):
            return True
        params = sum(p.numel() for p in mod.parameters())
        with_params = [c for c in mod.children() if any(True for _ in c.parameters())]
        if not (self.total_params > 0 and 2 * params > self.total_params):
            return False
        # a lone child holding the parameters (a stage's `blocks`) is opened in turn
        return len(with_params) >= 2 or (len(with_params) == 1 and self.opens(with_params[0], mod))

    def block(self, path: str | None) -> str | None:
        """The block of a node whose innermost module is `path`; None for glue code (a
        node of an opened module's own forward, or of the root)."""
        if not path:
            return None
        parts = path.split(".")
        mod, parent = self.root, None
        key: list[str] = []
        for part in parts:
            if key and not self.opens(mod, parent):
                break
            if not hasattr(mod, part):
                break
            key.append(part)
            mod, parent = getattr(mod, part), mod
        if len(key) == len(parts) and self.opens(mod, parent):
            return None
        return ".".join(key) or None

    def is_cheap(self, key: str, targets: Sequence[str]) -> bool:
        """A parameter-free module whose nodes do no matrix or convolution work."""
        try:
            mod = self.root.get_submodule(key)
        except AttributeError:
            return False
        if any(True for _ in mod.parameters()):
            return False
        return not any(h in t.lower() for t in targets for h in _HEAVY_OPS)


def assign_blocks(finder: BlockFinder, paths: Sequence[str | None], targets: Sequence[str]) -> list[str | None]:
    """Block key per body node; cheap blocks and glue take their neighbour's key."""
    keys = [finder.block(p) for p in paths]
    by_key: dict[str, list[str]] = {}
    for k, t in zip(keys, targets):
        if k is not None:
            by_key.setdefault(k, []).append(t)
    cheap = {k for k, ts in by_key.items() if finder.is_cheap(k, ts)}
    if len(cheap) < len(by_key):  # an all-cheap model keeps its blocks
        keys = [None if k in cheap else k for k in keys]
    for i in range(1, len(keys)):
        if keys[i] is None:
            keys[i] = keys[i - 1]
    for i in range(len(keys) - 2, -1, -1):
        if keys[i] is None:
            keys[i] = keys[i + 1]
    return keys


def drop_skip_cuts(cuts: list[int], count: Callable[[int], int], start: int, end: int) -> list[int]:
    """Drop cuts carrying more tensors than the cuts on both sides, until none does;
    `start`/`end` count the model's inputs and outputs."""
    cuts = list(cuts)
    changed = True
    while changed:
        changed = False
        counts = [start] + [count(p) for p in cuts] + [end]
        for i in range(len(cuts)):
            if counts[i + 1] > counts[i] and counts[i + 1] > counts[i + 2]:
                del cuts[i]
                changed = True
                break
    return cuts


def merge(names: list[str], ends: list[int], costs: list[float], target: int) -> tuple[list[str], list[int]]:
    """Join the adjacent pair of layers with the least summed cost until `target` remain;
    a joined layer is named `first-last` after its first and last original layers."""
    spans = [(n, n) for n in names]
    ends, costs = list(ends), list(costs)
    while len(ends) > max(1, target):
        i = min(range(len(ends) - 1), key=lambda j: (costs[j] + costs[j + 1], j))
        spans[i : i + 2] = [(spans[i][0], spans[i + 1][1])]
        ends[i : i + 2] = [ends[i + 1]]
        costs[i : i + 2] = [costs[i] + costs[i + 1]]
    return [a if a == b else f"{a}-{b}" for a, b in spans], ends
