"""Model inputs that are not images: named tensors of given dtypes and shapes.

A spec reads `name:dtype:shape`, e.g. `input_ids:int64:1x128`; several are joined
by commas. Samples come from files (one `.pt` or `.npy`/`.npz` per sample) or are
generated deterministically: token ids in the model's vocabulary, masks of ones,
type ids of zeros, position ids counting up, floats from a seeded normal.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dime.errors import UsageError
from dime.fileio import check_input_dir, check_input_file

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "long": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
TENSOR_SUFFIXES = {".pt", ".npy", ".npz"}
DEFAULT_VOCAB = 1000  # token range when the model names no vocabulary
# The most one sample's inputs may take: checked before anything is allocated (a typo like
# 100000x100000x100 would otherwise end in the allocator's error, or the machine swapping).
MAX_INPUT_BYTES = 2**31


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    def __str__(self) -> str:
        dtype = next(k for k, v in DTYPES.items() if v == self.dtype)
        return f"{self.name}:{dtype}:{'x'.join(map(str, self.shape))}"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def parse_inputs(text: str, flag: str = "--inputs") -> tuple[InputSpec, ...]:
    """`name:dtype:shape[,name:dtype:shape...]` as InputSpecs; UsageError on a bad item."""
    specs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) != 3:
            raise UsageError(f"{flag} {item}: give name:dtype:shape, e.g. input_ids:int64:1x128")
        name, dtype, shape = parts
        if not name.isidentifier():
            raise UsageError(f"{flag} {item}: {name!r} is not an input name")
        if dtype not in DTYPES:
            raise UsageError(f"{flag} {item}: unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
        try:
            dims = tuple(int(d) for d in shape.lower().split("x"))
        except ValueError:
            raise UsageError(f"{flag} {item}: shape {shape!r} is not like 1x128") from None
        if not dims or any(d < 1 for d in dims):
            raise UsageError(f"{flag} {item}: every dimension must be >= 1")
        specs.append(InputSpec(name, DTYPES[dtype], dims))
    if not specs:
        raise UsageError(f"{flag}: empty list")
    if len({s.name for s in specs}) != len(specs):
        raise UsageError(f"{flag}: an input name is given twice")
    check_size(specs, flag)
    return tuple(specs)


def check_size(specs: Sequence[InputSpec], flag: str = "--inputs") -> None:
    """Refuse inputs of more than MAX_INPUT_BYTES per sample, before any tensor is made."""
    total = sum(s.nbytes for s in specs)
    if total > MAX_INPUT_BYTES:
        shapes = ",".join(str(s) for s in specs)
        raise UsageError(f"{flag} {shapes}: {total} bytes per sample, more than the {MAX_INPUT_BYTES} "
                         "an input may take")


def check_forward_names(forward: Callable[..., Any], specs: Sequence[InputSpec], label: str,
                        by_name: bool = False, flag: str = "--inputs") -> None:
    """Refuse --inputs that are not the arguments of the model's forward: passed in order
    (by_name False) they must be its first arguments, in its order; passed by name (by_name)
    each must be one of its named arguments (not one for **kwargs, which a model passes on to
    its parts). A forward taking *args, passed in order, accepts any."""
    try:
        params = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return  # no signature to check against (a builtin): the capture's own run decides
    named = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    given = [s.name for s in specs]
    takes = f"{label}'s forward takes ({', '.join(named)})"
    if by_name:
        bad = [n for n in given if n not in named]
        if bad:
            raise UsageError(f"{flag}: {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not an argument; {takes}")
        return
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    if given != [p.name for p in positional[: len(given)]] or len(given) < len(required):
        raise UsageError(f"{flag} {','.join(given)}: {takes} (the inputs are passed in that order)")


def generate(specs: Sequence[InputSpec], count: int, seed: int = 0,
             vocab_size: int | None = None) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """Deterministic samples: (sample id, one tensor per spec)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        out.append((f"generated_{i:03d}", tuple(_fill(s, g, vocab_size) for s in specs)))
    return out


def _fill(spec: InputSpec, g: torch.Generator, vocab_size: int | None) -> torch.Tensor:
    name = spec.name.lower()
    if spec.dtype == torch.bool or "mask" in name:
        return torch.ones(spec.shape, dtype=spec.dtype)
    if spec.dtype.is_floating_point:
        return torch.randn(spec.shape, generator=g).to(spec.dtype)
    if "type" in name:
        return torch.zeros(spec.shape, dtype=spec.dtype)
    if "position" in name:
        return torch.arange(spec.shape[-1]).expand(spec.shape).to(spec.dtype).contiguous()
    high = vocab_size or DEFAULT_VOCAB
    if spec.dtype == torch.uint8 or spec.dtype == torch.int8:
        high = min(high, 127)
    return torch.randint(0, high, spec.shape, generator=g, dtype=torch.int64).to(spec.dtype)


def list_files(folder: Path) -> list[Path]:
    check_input_dir(folder, "input folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TENSOR_SUFFIXES)
    if not files:
        raise UsageError(f"no input files ({', '.join(sorted(TENSOR_SUFFIXES))}) in {folder}")
    return files


def read_sample(path: Path, specs: Sequence[InputSpec]) -> tuple[torch.Tensor, ...]:
    """One sample from a file: a tensor (one input), a tuple/list in spec order or a
    dict by input name (.pt); an array (.npy, one input); arrays by name (.npz)."""
    check_input_file(path, "input file")
    try:
        if path.suffix.lower() == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            import numpy as np

            with np.load(path, allow_pickle=False) as data:
                obj = {k: torch.from_numpy(data[k].copy()) for k in data.files} if path.suffix.lower() == ".npz" else None
            if obj is None:
                obj = torch.from_numpy(np.load(path, allow_pickle=False))
    except Exception as e:
        raise UsageError(f"cannot read inputs {path}: {e}") from e
    if isinstance(obj, torch.Tensor):
        obj = (obj,)
    if isinstance(obj, dict):
        missing = [s.name for s in specs if s.name not in obj]
        if missing:
            raise UsageError(f"{path}: no input(s) {', '.join(missing)}")
        obj = tuple(obj[s.name] for s in specs)
    if not isinstance(obj, (tuple, list)) or len(obj) != len(specs):
        raise UsageError(f"{path}: holds {len(obj) if isinstance(obj, (tuple, list)) else type(obj).__name__} "
                         f"input(s), the model takes {len(specs)}")
    out = []
    for spec, t in zip(specs, obj):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != spec.shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise UsageError(f"{path}: input {spec.name} is {got}, the model was captured with {spec.shape}")
        out.append(t.to(spec.dtype).contiguous())
    return tuple(out)


def read_folder(folder: Path, specs: Sequence[InputSpec], count: int) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    files = list_files(folder)[: count if count > 0 else None]
    return [(p.stem, read_sample(p, specs)) for p in files]


def example(specs: Sequence[InputSpec], vocab_size: int | None = None) -> tuple[torch.Tensor, ...]:
    """The tensors a model is captured with: generated sample 0 (valid token ids)."""
    return generate(specs, 1, 0, vocab_size)[0][1]
