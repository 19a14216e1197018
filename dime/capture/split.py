"""Models → layers → bundles, by torch.fx graph capture.

A model is traced once; its graph's nodes, in execution order, are split by *cuts*
into layers. A bundle (layers first..last) is rebuilt as a small GraphModule whose
positional inputs are the tensors live at the cut before `first` and whose output is
the tuple of tensors live at the cut after `last`. For DAG models a cut carries every
live tensor (skip connections included), so running the bundles of any chain in
order reproduces the full model.

Which nodes form a layer (the placement decision) is kept apart from how a bundle is
built (the splitting mechanics), as in torch.fx's `split_module`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch import nn

from dime.capture.inputs import InputSpec
from dime.capture.layers import BlockFinder, assign_blocks, drop_skip_cuts, merge
from dime.capture.trace import capture, module_paths, one_line
from dime.capture.weights import WeightsInfo
from dime.errors import ModelError

log = logging.getLogger(__name__)


class SplitModel:
    """A captured model, split into named layers; builds bundles of consecutive layers."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        example_inputs: tuple[torch.Tensor, ...],
        layers: Sequence[tuple[str, str | None]] | None = None,
        weights: WeightsInfo | None = None,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        input_specs: Sequence[InputSpec] | None = None,
        target_layers: int | None = None,
        capture_method: str = "auto",
        vocab_size: int | None = None,
    ) -> None:
        self.name = name
        self.weights = weights or WeightsInfo("callable", "")
        self.preprocess = preprocess
        self.example_inputs = example_inputs
        self.input_specs: tuple[InputSpec, ...] = tuple(input_specs) if input_specs else tuple(
            InputSpec(f"input_{i}", t.dtype, tuple(t.shape)) for i, t in enumerate(example_inputs)
        )
        self.vocab_size = vocab_size
        module.eval()
        self._root = module  # fx rebuilds containers as plain Modules: blocks are found on the original
        self._use(capture(name, module, example_inputs, capture_method))
        try:
            self._values = self._run_example(example_inputs)
        except ModelError as e:
            # fx traced, but its graph does not run (e.g. it mutates a list fx made immutable)
            if capture_method != "auto" or self.capture != "fx":
                raise
            log.info("%s: the torch.fx graph does not run (%s); trying torch.export", name, e)
            self._use(capture(name, module, example_inputs, "export"))
            self._values = self._run_example(example_inputs)
        self._last_use = self._last_uses()
        if target_layers is not None and target_layers < 1:
            raise ModelError(f"{name}: --layers must be >= 1, got {target_layers}")
        if layers is None:
            layers = self._auto_layers()
        names: list[str] = [n for n, _ in layers]
        if len(set(names)) != len(names):
            raise ModelError(f"{name}: duplicate layer names in {names}")
        # _ends[i]: index of the last graph node of layer i
        ends = self._resolve_ends(layers)
        if target_layers is not None and target_layers < len(ends):
            costs = [float(c) for c in self._layer_costs(ends)]
            names, ends = merge(names, ends, costs, target_layers)
        self.layer_names: list[str] = names
        self._ends = ends
        self.cut_bytes: list[int] = [self._cut_bytes(k) for k in range(len(self.layer_names) + 1)]
        self.param_bytes: list[int] = [self._param_bytes(k) for k in range(len(self.layer_names))]

    # ---- analysis -------------------------------------------------------------------
    def _use(self, captured: tuple[fx.GraphModule, str]) -> None:
        self.graph_module, self.capture = captured
        self._nodes: list[fx.Node] = list(self.graph_module.graph.nodes)
        self._index = {n: i for i, n in enumerate(self._nodes)}
        self._flops: dict[fx.Node, int] = {}

    def _run_example(self, inputs: tuple[torch.Tensor, ...]) -> dict[fx.Node, Any]:
        from torch.utils.flop_counter import FlopCounterMode

        values: dict[fx.Node, Any] = {}
        flops = self._flops
        counter = FlopCounterMode(display=False)

        class Recorder(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                before = counter.get_total_flops()
                try:
                    out = super().run_node(n)
                except Exception as e:
                    raise ModelError(f"running node {n.name!r} ({n.op} {n.target}) failed: {one_line(e)}") from e
                values[n] = out
                flops[n] = counter.get_total_flops() - before
                return out

        with torch.no_grad(), counter:
            try:
                Recorder(self.graph_module).run(*inputs)
            except ModelError as e:  # fx's Interpreter appends the node's listing to the message
                raise ModelError(one_line(e)) from e.__cause__
        return values

    def _last_uses(self) -> list[int]:
        last = []
        for i, n in enumerate(self._nodes):
            users = [self._index[u] for u in n.users]
            last.append(max(users) if users else -1)
        return last

    def _body_range(self) -> tuple[int, int]:
        """Indices of the first and last computing node (placeholders, get_attr and output excluded)."""
        first = next(i for i, n in enumerate(self._nodes) if n.op not in ("placeholder", "get_attr"))
        last = next(i for i in range(len(self._nodes) - 1, -1, -1) if self._nodes[i].op != "output")
        return first, last

    def _live_after(self, pos: int) -> list[fx.Node]:
        """Values defined at or before node index `pos` and used after it (get_attr excluded)."""
        return [
            n
            for i, n in enumerate(self._nodes[: pos + 1])
            if n.op != "get_attr" and self._last_use[i] > pos
        ]

    def _cut_pos(self, k: int) -> int:
        """Node index after which cut k sits."""
        if k == 0:
            return self._body_range()[0] - 1
        return self._ends[k - 1]

    def live_tensors(self, k: int) -> list[fx.Node]:
        """The tensors that cross cut k (cut 0: the model inputs)."""
        if k == len(self.layer_names):
            out = self._nodes[-1]
            return [n for n in _flatten_nodes(out.args[0]) if isinstance(self._values.get(n), torch.Tensor)]
        return [n for n in self._live_after(self._cut_pos(k)) if isinstance(self._values[n], torch.Tensor)]

    def cut_specs(self, k: int) -> list[tuple[tuple[int, ...], torch.dtype]]:
        """Shape and dtype of each tensor crossing cut k, in live_tensors(k) order, as
        seen in the traced example run: what a receiver allocates before the bytes come."""
        return [(tuple(self._values[n].shape), self._values[n].dtype) for n in self.live_tensors(k)]

    def _cut_bytes(self, k: int) -> int:
        return sum(_tensor_bytes(self._values[n]) for n in self.live_tensors(k))

    def _layer_nodes(self, k: int) -> list[fx.Node]:
        return self._nodes[self._cut_pos(k) + 1 : self._ends[k] + 1]

    def _param_bytes(self, k: int) -> int:
        """Bytes of the parameters and buffers layer k uses (shared ones count in each user)."""
        seen: dict[int, int] = {}
        for n in self._layer_nodes(k):
            if n.op == "call_module":
                sub = self.graph_module.get_submodule(str(n.target))
                for t in [*sub.parameters(), *sub.buffers()]:
                    seen[id(t)] = _tensor_bytes(t)
            for a in n.all_input_nodes:
                if a.op == "get_attr":
                    t = _get_attr(self.graph_module, str(a.target))
                    if isinstance(t, torch.Tensor):
                        seen[id(t)] = _tensor_bytes(t)
        return sum(seen.values())

    def _layer_costs(self, ends: Sequence[int]) -> list[int]:
        """FLOPs per layer in the example run (nodes, where a layer counts none)."""
        costs, lo = [], self._body_range()[0]
        for e in ends:
            nodes = self._nodes[lo : e + 1]
            costs.append(sum(self._flops.get(n, 0) for n in nodes) or len(nodes))
            lo = e + 1
        return costs

    @property
    def layer_flops(self) -> list[int]:
        return [sum(self._flops.get(n, 0) for n in self._layer_nodes(k)) for k in range(len(self.layer_names))]

    def describe(self) -> list[str]:
        """The layers as printed by the CLIs: parameter bytes, FLOPs and bytes at each cut."""
        lines = [f"capture: torch.{self.capture}; inputs: {', '.join(map(str, self.input_specs))}",
                 f"{'layer':<28} {'param_bytes':>13} {'flops':>14} {'bytes_in':>12}"]
        for k, name in enumerate(self.layer_names):
            lines.append(f"{name:<28} {self.param_bytes[k]:>13} {self.layer_flops[k]:>14} {self.cut_bytes[k]:>12}")
        lines.append(f"{'(output)':<28} {'':>13} {'':>14} {self.cut_bytes[-1]:>12}")
        return lines

    # ---- layers ---------------------------------------------------------------------
    def _resolve_ends(self, layers: Sequence[tuple[str, str | None]]) -> list[int]:
        first, last = self._body_range()
        by_name = {n.name: i for i, n in enumerate(self._nodes)}
        ends = []
        for lname, marker in layers:
            if marker is None:
                ends.append(last)
                continue
            if marker in by_name and self._nodes[by_name[marker]].op not in ("placeholder", "output", "get_attr"):
                ends.append(by_name[marker])
                continue
            # a wrapper's child answers to its own module names too
            marks = (marker, getattr(self._root, "inner_prefix", "") + marker)
            hits = [
                i
                for i, n in enumerate(self._nodes)
                if any(k == m or k.startswith(m + ".") for k in module_paths(n) for m in marks)
            ]
            if not hits:
                raise ModelError(f"{self.name}: layer {lname!r}: no graph node or module named {marker!r}")
            ends.append(max(hits))
        if ends[-1] != last:
            raise ModelError(f"{self.name}: the last layer must end at the model output (give it no end)")
        prev = first - 1
        for (lname, _), e in zip(layers, ends):
            if e <= prev:
                raise ModelError(f"{self.name}: layer {lname!r} is empty or out of order")
            prev = e
        for (lname, _), e in zip(layers[:-1], ends[:-1]):
            bad = [n.name for n in self._live_after(e) if not _can_cross(self._values[n])]
            if bad:
                raise ModelError(f"{self.name}: the cut after layer {lname!r} carries non-tensor values {bad}")
        return ends

    def _auto_layers(self) -> list[tuple[str, str | None]]:
        first, last = self._body_range()
        body = self._nodes[first : last + 1]
        paths = [(module_paths(n) or [None])[-1] for n in body]
        targets = [str(getattr(n.target, "__name__", n.target)) for n in body]
        for i, n in enumerate(body):
            if n.op == "call_module":  # fx leaf modules: what they run is in their class
                targets[i] = type(self.graph_module.get_submodule(str(n.target))).__name__
        keys = assign_blocks(BlockFinder(self._root), paths, targets)
        candidates = [
            first + i
            for i in range(len(keys) - 1)
            if keys[i] != keys[i + 1] and all(_can_cross(self._values[n]) for n in self._live_after(first + i))
        ]
        live = lambda p: sum(isinstance(self._values[n], torch.Tensor) for n in self._live_after(p))  # noqa: E731
        n_in = len(self._live_after(first - 1))
        n_out = len([n for n in _flatten_nodes(self._nodes[-1].args[0]) if isinstance(self._values.get(n), torch.Tensor)])
        cuts = drop_skip_cuts(candidates, live, n_in, n_out)
        layers: list[tuple[str, str | None]] = []
        start = first
        for p in cuts + [last]:
            key = keys[start - first] or f"layer{len(layers)}"
            prefix = getattr(self._root, "inner_prefix", "")  # a wrapper's child: named as the model's own blocks
            if prefix and key.startswith(prefix):
                key = key[len(prefix):]
            lname = key.replace(".", "_")
            while lname in (n for n, _ in layers):
                lname += "_"
            layers.append((lname, self._nodes[p].name if p != last else None))
            start = p + 1
        log.info("%s: %d layers chosen automatically", self.name, len(layers))
        return layers

    # ---- bundles --------------------------------------------------------------------
    def index(self, layer: str | int) -> int:
        if isinstance(layer, int):
            if not 0 <= layer < len(self.layer_names):
                raise ModelError(f"{self.name}: layer index {layer} out of range 0..{len(self.layer_names) - 1}")
            return layer
        try:
            return self.layer_names.index(layer)
        except ValueError:
            raise ModelError(f"{self.name}: no layer {layer!r}; layers: {', '.join(self.layer_names)}") from None

    def bundle_name(self, first: str | int, last: str | int) -> str:
        return "+".join(self.layer_names[self.index(first) : self.index(last) + 1])

    def bundle(self, first: str | int, last: str | int) -> fx.GraphModule:
        """A module running layers first..last: takes the tensors live at the cut before
        `first` as positional arguments, returns a tuple of those live after `last`."""
        i, j = self.index(first), self.index(last)
        if j < i:
            raise ModelError(f"{self.name}: bundle {first}..{last} is empty")
        graph = fx.Graph()
        env: dict[fx.Node, Any] = {}
        for n in self.live_tensors(i):
            env[n] = graph.placeholder(n.name)
        lo = self._cut_pos(i) + 1
        hi = self._ends[j]
        # Non-tensor values crossing the cut (shape numbers) are frozen at traced values.
        for n in self._live_after(self._cut_pos(i)):
            if n not in env:
                env[n] = self._values[n]

        def lookup(a: fx.Node) -> Any:
            if a not in env:
                if a.op == "get_attr":
                    env[a] = graph.node_copy(a, lookup)
                else:
                    raise ModelError(f"{self.name}: node {a.name!r} is used in bundle {first}..{last} but not available")
            return env[a]

        for n in self._nodes[lo : hi + 1]:
            if n.op in ("placeholder", "output"):
                continue
            if n.op == "get_attr":
                continue  # copied where used
            env[n] = graph.node_copy(n, lookup)
        outs = tuple(lookup(n) for n in self.live_tensors(j + 1))
        graph.output(outs)
        gm = fx.GraphModule(self.graph_module, graph, class_name=f"Bundle_{self.layer_names[i]}_{self.layer_names[j]}")
        gm.eval()
        return gm

    def run_layers(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run every layer in order (one bundle each); equals the full model's output."""
        vals: tuple[torch.Tensor, ...] = inputs
        for k in range(len(self.layer_names)):
            vals = self.bundle(k, k)(*vals)
        return vals

    def to(self, device: torch.device) -> "SplitModel":
        """Move the captured graph (which the bundles share) and the original model."""
        self.graph_module.to(device)
        self._root.to(device)
        return self

    def forward_full(self, *inputs: torch.Tensor) -> Any:
        """The original (eager) model's output: what the layers must reproduce."""
        return self._root(*inputs)


def _flatten_nodes(a: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(a, out.append)
    return out


def _can_cross(v: Any) -> bool:
    """A value a cut can carry: a tensor (sent) or a constant holding no tensor (frozen)."""
    return isinstance(v, torch.Tensor) or _is_constant(v)


def _is_constant(v: Any) -> bool:
    if isinstance(v, (int, float, bool, str, type(None), torch.Size, torch.dtype, torch.device)):
        return True
    if isinstance(v, (tuple, list)):
        return all(_is_constant(x) for x in v)
    return False


def _get_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part, None)
    return obj


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
