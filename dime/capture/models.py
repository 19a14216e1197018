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

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.fx as fx
from torch import nn

from dime.errors import ModelError, UsageError

log = logging.getLogger(__name__)

RANDOM_SEED = 0

# Default layers: (layer name, qualified module name whose last call ends the layer).
# The last layer runs to the model output.
_VGG11_FEATURE_ENDS = (2, 5, 7, 10, 12, 15, 17, 20)
DEFAULT_LAYERS: dict[str, list[tuple[str, str | None]]] = {
    # conv+relu(+pool) groups as in the DIME paper
    "alexnet": [
        ("conv1", "features.2"),
        ("conv2", "features.5"),
        ("conv3", "features.7"),
        ("conv4", "features.9"),
        ("conv5", "features.12"),
        ("fc1", "classifier.2"),
        ("fc2", "classifier.5"),
        ("fc3", None),
    ],
    "vgg11": [(f"conv{i + 1}", f"features.{e}") for i, e in enumerate(_VGG11_FEATURE_ENDS)]
    + [("fc1", "classifier.2"), ("fc2", "classifier.5"), ("fc3", None)],
    "resnet18": [("stem", "maxpool")]
    + [(f"layer{i}_{j}", f"layer{i}.{j}") for i in range(1, 5) for j in range(2)]
    + [("head", None)],
    "vit_b_16": [("conv_proj", "conv_proj"), ("embed", "encoder.dropout")]
    + [(f"encoder_layer_{i}", f"encoder.layers.encoder_layer_{i}") for i in range(12)]
    + [("head", None)],
    "mobilenet_v2": [(f"features_{i}", f"features.{i}") for i in range(19)] + [("head", None)],
}

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "file", "torchvision-cache", "random-init", "callable"
    detail: str

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


class SplitModel:
    """A traced model, split into named layers; builds bundles of consecutive layers."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        example_inputs: tuple[torch.Tensor, ...],
        layers: Sequence[tuple[str, str | None]] | None = None,
        weights: WeightsInfo | None = None,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
    ) -> None:
        self.name = name
        self.weights = weights or WeightsInfo("callable", "")
        self.preprocess = preprocess
        self.example_inputs = example_inputs
        module.eval()
        self._root = module  # the GraphModule rebuilds containers as plain Modules
        try:
            self.graph_module = fx.symbolic_trace(module)
        except Exception as e:  # fx raises many kinds: say which model failed
            raise ModelError(f"{name}: torch.fx cannot trace this model: {e}") from e
        self._nodes: list[fx.Node] = list(self.graph_module.graph.nodes)
        self._index = {n: i for i, n in enumerate(self._nodes)}
        self._values = self._run_example(example_inputs)
        self._last_use = self._last_uses()
        if layers is None:
            layers = self._auto_layers()
        self.layer_names: list[str] = [n for n, _ in layers]
        if len(set(self.layer_names)) != len(self.layer_names):
            raise ModelError(f"{name}: duplicate layer names in {self.layer_names}")
        # _ends[i]: index of the last graph node of layer i
        self._ends = self._resolve_ends(layers)
        self.cut_bytes: list[int] = [self._cut_bytes(k) for k in range(len(self.layer_names) + 1)]

    # ---- analysis -------------------------------------------------------------------
    def _run_example(self, inputs: tuple[torch.Tensor, ...]) -> dict[fx.Node, Any]:
        values: dict[fx.Node, Any] = {}

        class Recorder(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                try:
                    out = super().run_node(n)
                except Exception as e:
                    raise ModelError(f"running node {n.name!r} ({n.op} {n.target}) failed: {e}") from e
                values[n] = out
                return out

        with torch.no_grad():
            Recorder(self.graph_module).run(*inputs)
        return values

    def _last_uses(self) -> list[int]:
        last = []
        for i, n in enumerate(self._nodes):
            users = [self._index[u] for u in n.users]
            last.append(max(users) if users else -1)
        return last

    def _body_range(self) -> tuple[int, int]:
        """Indices of the first and last computing node (placeholders and output excluded)."""
        first = next(i for i, n in enumerate(self._nodes) if n.op != "placeholder")
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

    # ---- layers ---------------------------------------------------------------------
    def _module_keys(self, node: fx.Node) -> list[str]:
        stack = node.meta.get("nn_module_stack") or {}
        return [k.split("@")[0] for k in stack.keys()]

    def _resolve_ends(self, layers: Sequence[tuple[str, str | None]]) -> list[int]:
        first, last = self._body_range()
        by_name = {n.name: i for i, n in enumerate(self._nodes)}
        ends = []
        for lname, marker in layers:
            if marker is None:
                ends.append(last)
                continue
            if marker in by_name and self._nodes[by_name[marker]].op not in ("placeholder", "output"):
                ends.append(by_name[marker])
                continue
            hits = [
                i
                for i, n in enumerate(self._nodes)
                if any(k == marker or k.startswith(marker + ".") for k in self._module_keys(n))
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
            bad = [n.name for n in self._live_after(e) if not _is_constant(self._values[n])]
            if bad:
                raise ModelError(f"{self.name}: the cut after layer {lname!r} carries non-tensor values {bad}")
        return ends

    def _block_key(self, node: fx.Node) -> str | None:
        """The block a node belongs to: top-level children, expanded through containers
        and through modules holding a long homogeneous stack (a transformer's layers)."""
        keys = self._module_keys(node)
        if not keys:
            return None
        path = keys[-1].split(".")
        mod: nn.Module = self._root
        key: list[str] = []
        for part in path:
            if key and not (type(mod) in _CONTAINERS or _holds_stack(mod)):
                break
            if not hasattr(mod, part):
                break
            key.append(part)
            mod = getattr(mod, part)
        return ".".join(key) or None

    def _auto_layers(self) -> list[tuple[str, str | None]]:
        first, last = self._body_range()
        keys: list[str | None] = [self._block_key(self._nodes[i]) for i in range(first, last + 1)]
        # functional nodes (flatten, add) join the block before them, or after at the start
        for i in range(1, len(keys)):
            if keys[i] is None:
                keys[i] = keys[i - 1]
        for i in range(len(keys) - 2, -1, -1):
            if keys[i] is None:
                keys[i] = keys[i + 1]
        candidates = [
            first + i for i in range(len(keys) - 1) if keys[i] != keys[i + 1]
        ]
        counts = {p: len(self._live_after(p)) for p in candidates}
        ok = [
            p
            for p in candidates
            if all(isinstance(self._values[n], torch.Tensor) for n in self._live_after(p))
        ]
        if not ok:
            return [("model", None)]
        fewest = min(counts[p] for p in ok)
        cuts = [p for p in ok if counts[p] == fewest]
        layers: list[tuple[str, str | None]] = []
        start = first
        for p in cuts + [last]:
            key = keys[start - first] or f"layer{len(layers)}"
            name = key.replace(".", "_")
            while name in (n for n, _ in layers):
                name += "_"
            layers.append((name, self._nodes[p].name if p != last else None))
            start = p + 1
        log.info("%s: %d layers chosen automatically at cuts with %d live tensor(s)", self.name, len(layers), fewest)
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

    def forward_full(self, *inputs: torch.Tensor) -> Any:
        return self.graph_module(*inputs)


def resolve_torch_device(text: str, flag: str = "--torch-device") -> torch.device:
    """`cpu`, `cuda`, `cuda:N`, ... as a torch.device; one-line UsageError when unusable here."""
    try:
        device = torch.device(text)
    except RuntimeError as e:
        raise UsageError(f"{flag}: {e}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {text}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{flag} {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def _holds_stack(mod: nn.Module, min_len: int = 4) -> bool:
    """True when `mod` has a container child holding >= min_len modules of one class."""
    for child in mod.children():
        if type(child) in _CONTAINERS:
            kids = list(child.children())
            if len(kids) >= min_len and len({type(k) for k in kids}) == 1:
                return True
    return False


def _flatten_nodes(a: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(a, out.append)
    return out


def _is_constant(v: Any) -> bool:
    if isinstance(v, (int, float, bool, str, type(None), torch.Size, torch.dtype, torch.device)):
        return True
    if isinstance(v, (tuple, list)):
        return all(_is_constant(x) for x in v)
    return isinstance(v, torch.Tensor)


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# ---- loading ------------------------------------------------------------------------
def _torchvision_builder(name: str) -> tuple[Callable[..., nn.Module], Any]:
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise ModelError(
            f"unknown model {name!r}: give a torchvision classification model name "
            f"(e.g. {', '.join(DEFAULT_LAYERS)}) or package.module:callable"
        ) from None
    try:
        weights_enum = tvm.get_model_weights(name)
        default = weights_enum.DEFAULT
    except (ValueError, AttributeError):
        default = None
    return builder, default


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
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


def _apply_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ModelError(f"weights {path} do not fit the model: {' '.join(first[:2])}") from e


def load_model(
    name: str,
    weights: str | Path | None = None,
    cuts: Sequence[str] | None = None,
    input_shape: Sequence[int] | None = None,
) -> SplitModel:
    """Load a model and split it into layers.

    name: a torchvision classification model (default layers for the five named in
    DEFAULT_LAYERS, automatic layers otherwise) or "package.module:callable"
    returning an nn.Module. cuts: optional module/node names after which to cut.
    Weights come from `weights` (a state-dict file), else torchvision's local cache,
    else a seeded random init; never from the network.
    """
    if ":" in name and not Path(name).exists():
        return _load_callable(name, weights, cuts, input_shape)
    builder, default = _torchvision_builder(name)
    torch.manual_seed(RANDOM_SEED)
    try:
        module = builder(weights=None)
    except Exception as e:
        raise ModelError(f"cannot build {name}: {e}") from e
    info = _load_weights(module, name, weights, default)
    if default is not None:
        preprocess = default.transforms()
        size = int(preprocess.crop_size[0])
    else:
        preprocess, size = None, 224
    shape = tuple(input_shape) if input_shape else (1, 3, size, size)
    example = (torch.zeros(shape),)
    layers = _layers_from_cuts(cuts) if cuts else DEFAULT_LAYERS.get(name)
    log.info("%s: weights from %s", name, info)
    return SplitModel(name, module, example, layers, info, preprocess or _imagenet_preprocess(size))


def _load_weights(module: nn.Module, name: str, weights: str | Path | None, default: Any) -> WeightsInfo:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file not found: {path}")
        _apply_state_dict(module, _read_state_dict(path), path)
        return WeightsInfo("file", str(path))
    if default is not None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
        if cached.is_file():
            _apply_state_dict(module, _read_state_dict(cached), cached)
            return WeightsInfo("torchvision-cache", str(cached))
    return WeightsInfo("random-init", f"seed={RANDOM_SEED}; no local weights for {name}")


def _layers_from_cuts(cuts: Sequence[str]) -> list[tuple[str, str | None]]:
    layers: list[tuple[str, str | None]] = [(c.replace(".", "_"), c) for c in cuts]
    layers.append(("tail", None))
    return layers


def _load_callable(
    spec: str, weights: str | Path | None, cuts: Sequence[str] | None, input_shape: Sequence[int] | None
) -> SplitModel:
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"cannot import {spec}: {e}") from e
    torch.manual_seed(RANDOM_SEED)
    module = fn()
    if not isinstance(module, nn.Module):
        raise ModelError(f"{spec} returned {type(module).__name__}, not an nn.Module")
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file not found: {path}")
        _apply_state_dict(module, _read_state_dict(path), path)
        info = WeightsInfo("file", str(path))
    else:
        info = WeightsInfo("callable", f"as built by {spec} (seed={RANDOM_SEED})")
    shape = tuple(input_shape) if input_shape else (1, 3, 224, 224)
    layers = _layers_from_cuts(cuts) if cuts else None
    return SplitModel(spec, module, (torch.zeros(shape),), layers, info, _imagenet_preprocess(shape[-1]))


def _imagenet_preprocess(size: int) -> Callable[[Any], torch.Tensor]:
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(int(size * 256 / 224)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
