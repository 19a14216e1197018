"""Hugging Face transformers models, offline.

`hf:bert` (BERT-base, sequence classification head), `hf:gpt2` (GPT-2 small, LM head,
prefill without KV cache: logits of the last position), `hf:bert-tiny` / `hf:gpt2-tiny`
(two small layers, for tests), each optionally followed by `:key=value,...` config
overrides (`hf:gpt2:n_layer=4`); or `hf:FOLDER` holding a config.json (and weights, read
with local_files_only). Built from the config with seeded random weights otherwise.
The hub is never contacted (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dime.capture.inputs import InputSpec, check_forward_names
from dime.capture.weights import WeightsInfo, file_weights
from dime.errors import ModelError

SEED = 0

# name: (config class, model class, config kwargs, input names, default sequence length)
PRESETS: dict[str, tuple[str, str, dict[str, Any], tuple[str, ...], int]] = {
    "bert": ("BertConfig", "BertForSequenceClassification", {}, ("input_ids", "attention_mask"), 128),
    "bert-tiny": ("BertConfig", "BertForSequenceClassification",
                  {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
                  ("input_ids", "attention_mask"), 16),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {}, ("input_ids",), 128),
    "gpt2-tiny": ("GPT2Config", "GPT2LMHeadModel", {"n_layer": 2, "n_embd": 64, "n_head": 2}, ("input_ids",), 16),
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class BuiltModel:
    name: str
    module: nn.Module
    inputs: tuple[InputSpec, ...]
    layers: list[tuple[str, str | None]] | None
    weights: WeightsInfo
    vocab_size: int | None


class TensorOutputs(nn.Module):
    """Positional tensors in, tensors out: a transformers model as dime captures it."""

    inner_prefix = "model."  # automatic layers are named after the model's own blocks

    def __init__(self, model: nn.Module, input_names: Sequence[str], **fixed: Any) -> None:
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.fixed = fixed
        self.config = model.config

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, args)), **self.fixed)
        if "logits" in out:
            return out.logits
        return tuple(v for v in out.values() if isinstance(v, torch.Tensor))  # a base model: its hidden states


def _transformers() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise ModelError("hf: models need transformers: pip install -e '.[zoo]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


def _overrides(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ModelError(f"hf config override {item!r}: give key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_hf(spec: str, weights: str | Path | None, inputs: Sequence[InputSpec] | None) -> BuiltModel:
    tf = _transformers()
    base, _, over = spec.partition(":")
    folder = Path(base)
    if base in PRESETS:
        cfg_cls, model_cls, kwargs, names, seq = PRESETS[base]
        try:
            config = getattr(tf, cfg_cls)(**{**kwargs, **_overrides(over)})
        except (TypeError, ValueError) as e:
            raise ModelError(f"hf:{spec}: bad config: {e}") from e
        arch = getattr(tf, model_cls)
    elif (folder / "config.json").is_file():
        try:
            config = tf.AutoConfig.from_pretrained(folder, local_files_only=True, **_overrides(over))
        except Exception as e:
            raise ModelError(f"hf:{spec}: cannot read {folder / 'config.json'}: {e}") from e
        archs = getattr(config, "architectures", None) or []
        arch = getattr(tf, archs[0], None) if archs else None
        if arch is None:
            raise ModelError(f"hf:{spec}: config.json names no known architecture ({archs})")
        names = ("input_ids", "attention_mask") if "Bert" in arch.__name__ else ("input_ids",)
        seq = 128
    else:
        raise ModelError(f"unknown hf model {base!r}: give one of {', '.join(PRESETS)} or a folder with config.json")
    torch.manual_seed(SEED)
    try:
        if base not in PRESETS and any((folder / f).is_file() for f in WEIGHT_FILES) and weights is None:
            model = arch.from_pretrained(folder, config=config, local_files_only=True)
            info = WeightsInfo("file", str(folder))
        else:
            model = arch(config)
            info = WeightsInfo("random-init", f"seed={SEED}; config {base}")
    except Exception as e:
        raise ModelError(f"hf:{spec}: cannot build {arch.__name__}: {e}") from e
    if inputs:
        check_forward_names(model.forward, inputs, f"hf:{spec}", by_name=True)
    fixed: dict[str, Any] = {"use_cache": False} if hasattr(config, "use_cache") else {}
    if arch.__name__.endswith("LMHeadModel"):
        fixed["logits_to_keep"] = 1  # prefill: the next token's logits only
    module = TensorOutputs(model.eval(), names if inputs is None else [s.name for s in inputs], **fixed)
    if weights is not None:
        info = file_weights(model, weights)
    specs = tuple(inputs) if inputs else tuple(InputSpec(n, torch.int64, (1, seq)) for n in names)
    return BuiltModel(f"hf:{spec}", module, specs, _default_layers(model), info, getattr(config, "vocab_size", None))


def _default_layers(model: nn.Module) -> list[tuple[str, str | None]] | None:
    """Embeddings, each block, head: for BERT- and GPT-2-style models."""
    if hasattr(model, "bert"):
        n = len(model.bert.encoder.layer)
        return ([("embeddings", "model.bert.embeddings")]
                + [(f"layer_{i}", f"model.bert.encoder.layer.{i}") for i in range(n)] + [("head", None)])
    if hasattr(model, "transformer") and hasattr(model.transformer, "h"):
        n = len(model.transformer.h)
        return ([("embeddings", "model.transformer.drop")]
                + [(f"h_{i}", f"model.transformer.h.{i}") for i in range(n)] + [("head", None)])
    return None
