"""Graph capture: torch.fx first, torch.export (non-strict) where fx cannot trace.

Both give an fx.GraphModule whose nodes carry `nn_module_stack` (the modules a node
runs inside), which is all the layer choice needs. export's unlifted module keeps
parameters as get_attr nodes, like fx; its input guards are dropped, because bundles
are rebuilt from the nodes and the example shapes are checked by SplitModel itself.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from dime.errors import ModelError, first_line

log = logging.getLogger(__name__)

CAPTURES = ("fx", "export")


def capture(name: str, module: nn.Module, example_inputs: tuple[torch.Tensor, ...],
            method: str = "auto") -> tuple[fx.GraphModule, str]:
    """The model's graph and the capture that gave it ("fx" or "export")."""
    if method not in ("auto", *CAPTURES):
        raise ModelError(f"unknown capture {method!r}; choose auto, fx or export")
    fx_error = None
    if method in ("auto", "fx"):
        try:
            return _fx_trace(module, len(example_inputs)), "fx"
        except Exception as e:  # fx raises many kinds
            fx_error = one_line(e)
            if method == "fx":
                raise ModelError(f"{name}: torch.fx cannot trace this model: {fx_error}") from e
            log.info("%s: torch.fx cannot trace (%s); trying torch.export", name, fx_error)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(module, example_inputs, strict=False)
            gm = ep.module()
    except Exception as e:
        why = f"torch.export failed: {one_line(e)}"
        if fx_error:
            why = f"torch.fx failed: {fx_error}; {why}"
        raise ModelError(f"{name}: cannot capture this model ({why})") from e
    _drop_guards(gm)
    return gm, "export"


def _fx_trace(module: nn.Module, n_inputs: int) -> fx.GraphModule:
    """torch.fx; a `forward(self, *args)` (a wrapper) gets one placeholder per input,
    where fx would otherwise make `args` one proxy that cannot be unpacked."""
    code = inspect.unwrap(type(module).forward).__code__
    if code.co_argcount == 1 and code.co_flags & inspect.CO_VARARGS:
        return fx.symbolic_trace(module, concrete_args=tuple(fx.PH for _ in range(n_inputs)))
    return fx.symbolic_trace(module)


def _drop_guards(gm: fx.GraphModule) -> None:
    graph = gm.graph
    for n in list(graph.nodes):
        if n.users:
            continue
        if (n.op == "call_module" and n.target == "_guards_fn") or (
            n.op == "call_function" and "assert" in getattr(n.target, "__name__", str(n.target))
        ):
            graph.erase_node(n)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")
    graph.lint()
    gm.recompile()


def module_paths(node: fx.Node) -> list[str]:
    """Qualified names of the modules `node` runs inside, outermost first (root excluded)."""
    stack: dict[str, Any] = node.meta.get("nn_module_stack") or {}
    out = []
    for key, value in stack.items():
        path = value[0] if isinstance(value, tuple) and value and isinstance(value[0], str) else key.split("@")[0]
        if path.startswith("L['self']."):
            path = path[len("L['self']."):]
        if path:
            out.append(path)
    return out


def one_line(e: BaseException) -> str:
    """An exception's first line, at most 300 characters: for one-line error messages."""
    text = first_line(e)
    return text if len(text) <= 300 else text[:297] + "..."
