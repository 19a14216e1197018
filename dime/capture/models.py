"""Models by name: torchvision, timm, Hugging Face transformers or a callable, split
into layers (dime.capture.split.SplitModel).

Weights come from a given state-dict file, a local cache or a seeded random init;
nothing is ever downloaded: every builder is called with its pretrained and backbone
weights off.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dime.capture import inputs as model_inputs
from dime.capture.inputs import InputSpec, parse_inputs
from dime.capture.outputs import tensor_outputs
from dime.capture.split import SplitModel
from dime.capture.weights import (
    WeightsInfo,
    apply_state_dict,
    file_weights,
    read_state_dict,
)
from dime.errors import ModelError, UsageError

__all__ = ["DEFAULT_LAYERS", "RANDOM_SEED", "SplitModel", "WeightsInfo", "load_model", "resolve_torch_device"]

log = logging.getLogger(__name__)

RANDOM_SEED = 0
TOKENS = 128  # sequence length of a token model's default input

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


# ---- loading ------------------------------------------------------------------------
def _torchvision_builder(name: str) -> tuple[Callable[..., nn.Module], Any]:
    import torchvision.models as tvm

    try:
        builder = tvm.get_model_builder(name)
    except ValueError:
        raise ModelError(
            f"unknown model {name!r}: give a torchvision model name (e.g. {', '.join(DEFAULT_LAYERS)}), "
            f"timm:NAME, hf:bert, hf:gpt2, hf:FOLDER or package.module:callable"
        ) from None
    try:
        weights_enum = tvm.get_model_weights(name)
        default = weights_enum.DEFAULT
    except (ValueError, AttributeError):
        default = None
    return builder, default


def no_download_kwargs(builder: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments turning off every pretrained-weight download the builder knows."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return {}
    kw: dict[str, Any] = {}
    for name, value in (("weights", None), ("weights_backbone", None), ("pretrained", False),
                        ("pretrained_backbone", False)):
        if name in params:
            kw[name] = value
    return kw


def load_model(
    name: str,
    weights: str | Path | None = None,
    cuts: Sequence[str] | None = None,
    input_shape: Sequence[int] | None = None,
    inputs: Sequence[InputSpec] | str | None = None,
    layers: int | None = None,
    capture: str = "auto",
) -> SplitModel:
    """Load a model and split it into layers.

    name: a torchvision model (default layers for the five named in DEFAULT_LAYERS,
    automatic layers otherwise), `timm:NAME`, `hf:bert` / `hf:gpt2` / `hf:bert-tiny` /
    `hf:gpt2-tiny` / `hf:FOLDER` (optionally `:key=value,...` config overrides), or
    "package.module:callable" returning an nn.Module. cuts: module/node names after
    which to cut. input_shape: one float input of that shape; inputs: named input specs
    (`input_ids:int64:1x128,...`) instead. layers: merge the cheapest neighbours until
    about that many layers remain. capture: auto (fx, else export), fx or export.
    Weights come from `weights` (a state-dict file), else a local cache, else a seeded
    random init; never from the network.
    """
    specs = parse_inputs(inputs) if isinstance(inputs, str) else (tuple(inputs) if inputs else None)
    if input_shape and specs:
        raise UsageError("give --input-shape or --inputs, not both")
    given = specs  # named by --inputs: their names must be the forward's arguments
    if input_shape:
        specs = (InputSpec("x", torch.float32, tuple(int(d) for d in input_shape)),)
        model_inputs.check_size(specs, "--input-shape")
    if name.startswith("hf:"):
        from dime.capture.hf import build_hf

        built = build_hf(name[3:], weights, specs)
        module, specs, default_layers, info, vocab = built.module, built.inputs, built.layers, built.weights, built.vocab_size
        preprocess = None
        name = built.name
        from_callable = False
    else:
        torch.manual_seed(RANDOM_SEED)
        from_callable = ":" in name and not name.startswith("timm:") and not Path(name).exists()
        prep = ImagePrep()
        if name.startswith("timm:"):
            module, size = _build_timm(name[5:])
            info = file_weights(module, weights) if weights else WeightsInfo("random-init", f"seed={RANDOM_SEED}")
            default_layers = None
        elif from_callable:
            module = _build_callable(name)
            info = file_weights(module, weights) if weights else WeightsInfo(
                "callable", f"as built by {name} (seed={RANDOM_SEED})")
            if specs is None and getattr(module, "main_input_name", None) == "input_ids":  # a transformers model
                specs = (InputSpec("input_ids", torch.int64, (1, _sequence_length(module))),)
                log.info("%s: a transformers model: inputs %s (give --inputs to change)", name, specs[0])
            size, default_layers = (specs[0].shape[-1] if specs else 224), None
        else:
            builder, default = _torchvision_builder(name)
            task = torchvision_task(name, builder, specs)  # unsupported kinds fail here, before building
            try:
                module = builder(**no_download_kwargs(builder))
            except Exception as e:
                raise ModelError(f"cannot build {name}: {e}") from e
            info = _load_weights(module, name, weights, default)
            transform = default.transforms() if default is not None else None
            prep = ImagePrep.of(transform, getattr(module, "image_size", None))
            size = prep.crop
            if task == "video" and specs is None:
                specs = (InputSpec("x", torch.float32, (1, 3, _clip_frames(default), prep.crop, prep.crop)),)
                log.info("%s: a video model: inputs %s, generated clips (give --inputs or --input-data to change)",
                         name, specs[0])
            default_layers = DEFAULT_LAYERS.get(name)
        if given:
            model_inputs.check_forward_names(module.forward, given, name)
        image = specs is None or (len(specs) == 1 and specs[0].dtype.is_floating_point and len(specs[0].shape) == 4)
        if specs is None:
            specs = (InputSpec("x", torch.float32, (1, 3, size, size)),)
        preprocess = prep.preprocess(specs[0].shape[-1]) if image else None
        vocab = _vocab_size(module)
    example = (torch.zeros(specs[0].shape),) if preprocess else model_inputs.example(specs, vocab)
    if from_callable:  # a user's model may return caches, ModelOutputs or dicts
        module = tensor_outputs(name, module, example)
    chosen = _layers_from_cuts(cuts) if cuts else default_layers
    log.info("%s: weights from %s", name, info)
    return SplitModel(name, module, example, chosen, info, preprocess, specs, layers, capture, vocab)


def _sequence_length(module: nn.Module) -> int:
    """TOKENS, or fewer where the model's config holds fewer positions."""
    config = getattr(module, "config", None)
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")]
    return min([TOKENS] + [v for v in limits if isinstance(v, int) and v > 0])


def _vocab_size(module: nn.Module) -> int | None:
    """Token ids range: the config's vocab_size, else the smallest embedding table."""
    vocab = getattr(getattr(module, "config", None), "vocab_size", None)
    if isinstance(vocab, int) and vocab > 0:
        return vocab
    tables = [m.num_embeddings for m in module.modules() if isinstance(m, nn.Embedding)]
    return min(tables) if tables else None


def _build_timm(arch: str) -> tuple[nn.Module, int]:
    try:
        import timm
    except ImportError:
        raise ModelError("timm models need timm: pip install -e '.[zoo]'") from None
    try:
        module = timm.create_model(arch, pretrained=False)
    except Exception as e:  # unknown names and bad kwargs alike
        raise ModelError(f"cannot build timm:{arch}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    size = (getattr(module, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224))[-1]
    return module, int(size)


def _load_weights(module: nn.Module, name: str, weights: str | Path | None, default: Any) -> WeightsInfo:
    if weights is not None:
        return file_weights(module, weights)
    if default is not None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
        if cached.is_file():
            apply_state_dict(module, read_state_dict(cached), cached)
            return WeightsInfo("torchvision-cache", str(cached))
    return WeightsInfo("random-init", f"seed={RANDOM_SEED}; no local weights for {name}")


def _layers_from_cuts(cuts: Sequence[str]) -> list[tuple[str, str | None]]:
    layers: list[tuple[str, str | None]] = [(c.replace(".", "_"), c) for c in cuts]
    layers.append(("tail", None))
    return layers


def _build_callable(spec: str) -> nn.Module:
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ModelError(f"cannot import {spec}: {e}") from e
    if not callable(fn):
        raise ModelError(f"{spec} is not callable")
    try:
        module = fn()
    except Exception as e:
        raise ModelError(f"{spec}() failed: {e}") from e
    if not isinstance(module, nn.Module):
        raise ModelError(f"{spec} returned {type(module).__name__}, not an nn.Module")
    return module


@dataclass(frozen=True)
class ImagePrep:
    """How images become a model's input: resize (shorter side), centre crop, normalise; as
    the model's torchvision weights say, else ImageNet's 256 -> 224."""

    crop: int = 224
    resize: int = 256
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    @classmethod
    def of(cls, transform: Any, native: Any = None) -> "ImagePrep":
        """From a torchvision weights' transforms (ImageClassification: crop and resize;
        SemanticSegmentation: resize only, cropped square; VideoClassification: per frame);
        `native`: the size a model built without weights insists on (a ViT's image_size)."""
        if transform is None:
            base = cls()
        else:
            resize = _first(getattr(transform, "resize_size", None)) or 256
            crop = _first(getattr(transform, "crop_size", None)) or resize
            interp = getattr(getattr(transform, "interpolation", None), "value", "bilinear")
            base = cls(crop, resize, tuple(getattr(transform, "mean", cls.mean)), tuple(getattr(transform, "std", cls.std)),
                       interp)
        return base.scaled(native) if isinstance(native, int) and native > 0 else base

    def scaled(self, crop: int) -> "ImagePrep":
        """The same preparation for another crop size (the resize in proportion)."""
        return dataclasses.replace(self, crop=crop, resize=max(crop, round(self.resize * crop / self.crop)))

    def preprocess(self, size: int) -> Callable[[Any], torch.Tensor]:
        from torchvision import transforms

        prep = self.scaled(size) if size != self.crop else self
        return transforms.Compose(
            [
                transforms.Resize(prep.resize, interpolation=transforms.InterpolationMode(prep.interpolation)),
                transforms.CenterCrop(size),
                transforms.ToTensor(),
                transforms.Normalize(mean=list(prep.mean), std=list(prep.std)),
            ]
        )


def _first(value: Any) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return int(value) if isinstance(value, int) else None


# torchvision.models.<task> packages, as their builders' modules name them
_UNSUPPORTED_TASKS = {
    "detection": "detection models are not supported: they take a list of images of any size and return "
                 "a number of boxes that depends on the image",
}
CLIP_FRAMES = 16  # frames of a generated video clip (torchvision's Kinetics clips)


def torchvision_task(name: str, builder: Callable[..., Any], specs: Sequence[InputSpec] | None) -> str:
    """classification, segmentation, video, quantization or optical_flow; a one-line
    ModelError for a kind dime cannot split."""
    parts = getattr(builder, "__module__", "").split(".")
    task = parts[2] if len(parts) > 3 and parts[:2] == ["torchvision", "models"] else "classification"
    if task in _UNSUPPORTED_TASKS:
        raise ModelError(f"{name}: {_UNSUPPORTED_TASKS[task]}")
    if task == "optical_flow" and (specs is None or len(specs) != 2):
        raise ModelError(f"{name}: an optical-flow model takes two images: give both as --inputs, e.g. "
                         "image1:float32:1x3x128x128,image2:float32:1x3x128x128 (sides multiples of 8)")
    return task


def _clip_frames(weights: Any) -> int:
    least = (getattr(weights, "meta", None) or {}).get("min_temporal_size") if weights is not None else None
    return max(CLIP_FRAMES, least or 1)
