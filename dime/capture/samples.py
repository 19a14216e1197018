"""Feature maps: run sample images through a model and save every layer's inputs.

Layout of the output folder:
    manifest.json            model, layers, cut sizes, weights, images
    <layer>/<image>.pt       tuple of the tensors live at the cut before <layer>

`python -m dime.samples --model alexnet [--images DIR] --out samples/alexnet`
`python -m dime.samples --model hf:bert --inputs input_ids:int64:1x128,attention_mask:int64:1x128`
(models whose inputs are not images: samples from --input-data files or generated)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from dime.capture import inputs as tensor_inputs
from dime.capture.cliopts import add_model_arguments, model_from_args
from dime.capture.split import SplitModel
from dime.cliargs import OneLineParser, run_main, setup_logging
from dime.errors import ModelError, UsageError, first_line
from dime.fileio import atomic_write, atomic_write_text, check_input_dir, check_input_file, check_output_dir, read_input_text

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MANIFEST = "manifest.json"


@dataclass
class Manifest:
    model: str
    layer_names: list[str]
    cut_bytes: list[int]
    weights: str
    images: list[str]  # sample ids, one file per id in each layer folder
    image_source: str  # "folder:<path>" or "generated:seed=<s>"

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / MANIFEST, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.exists():
            raise UsageError(f"no feature maps in {folder} ({MANIFEST} missing); run `python -m dime.samples` first")
        try:
            return cls(**json.loads(read_input_text(path, "manifest")))
        except (json.JSONDecodeError, TypeError) as e:
            raise UsageError(f"{path} is not a dime manifest: {e}") from e


def list_images(folder: Path) -> list[Path]:
    check_input_dir(folder, "image folder")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return images


def generated_images(count: int, seed: int = 0, size: int = 256) -> list[tuple[str, "object"]]:
    """Deterministic synthetic RGB images (smooth gradients plus seeded noise)."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    out = []
    ramp = torch.linspace(0, 1, size)
    for i in range(count):
        base = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size), torch.full((size, size), i / max(count, 1))])
        img = (0.7 * base + 0.3 * torch.rand(3, size, size, generator=g)).clamp(0, 1)
        arr = (img.permute(1, 2, 0) * 255).to(torch.uint8).numpy()
        out.append((f"generated_{i:03d}", Image.fromarray(arr, "RGB")))
    return out


def save_tensors(path: Path, tensors: tuple[torch.Tensor, ...]) -> None:
    """torch.save via a temporary file, so an interrupted run leaves no broken file."""
    atomic_write(path, lambda tmp: torch.save(tuple(t.detach().cpu().contiguous() for t in tensors), tmp))


def load_tensors(path: Path) -> tuple[torch.Tensor, ...]:
    check_input_file(path, "feature map")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot read feature map {path}: {e}") from e
    return tuple(obj) if isinstance(obj, (tuple, list)) else (obj,)


def model_samples(model: SplitModel, folder: Path | None, count: int,
                  seed: int = 0) -> tuple[list[tuple[str, tuple[torch.Tensor, ...]]], str]:
    """The model's inputs, one tuple per sample, and where they came from: images (files or
    generated, preprocessed) for image models, tensors (files or generated) otherwise."""
    if model.preprocess is None:
        if folder is not None:
            return tensor_inputs.read_folder(folder, model.input_specs, count), f"folder:{folder}"
        log.warning("no --input-data given: using %d deterministic generated inputs (seed %d)", count, seed)
        return tensor_inputs.generate(model.input_specs, count, seed, model.vocab_size), f"generated:seed={seed}"
    if folder is not None:
        paths = list_images(folder)[: count if count > 0 else None]
        items: list[tuple[str, object]] = [(p.stem, p) for p in paths]
        source = f"folder:{folder}"
    else:
        items = list(generated_images(count, seed))
        source = f"generated:seed={seed}"
        log.warning("no --images given: using %d deterministic generated images (seed %d)", count, seed)
    want = tuple(model.example_inputs[0].shape)
    out = []
    for sid, src in items:
        img = _open_image(src) if isinstance(src, Path) else src
        x = model.preprocess(img).unsqueeze(0).contiguous()
        if tuple(x.shape) != want:
            raise UsageError(f"{model.name}: preprocessed images are {tuple(x.shape)}, the model was captured with {want}")
        out.append((sid, (x,)))
    return out, source


def _open_image(path: Path) -> Any:
    from PIL import Image

    check_input_file(path, "image")
    try:
        return Image.open(path).convert("RGB")
    except Exception as e:  # PIL's errors for a broken or oversized image are of several kinds
        raise UsageError(f"{path}: not a readable image ({first_line(e)})") from e


def check_out_folder(out: Path, model_name: str, layer_names: Sequence[str] | None = None) -> None:
    """Refuse a folder holding feature maps of another model (or, given them, other layers)."""
    if not (out / MANIFEST).is_file():
        return
    prev = Manifest.load(out)
    if prev.model != model_name or (layer_names is not None and prev.layer_names != list(layer_names)):
        raise UsageError(f"{out} holds feature maps of another model or layering ({prev.model}); choose another --out")


def generate(
    model: SplitModel,
    out: Path,
    images: Path | None = None,
    count: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> Manifest:
    """Write every layer's input tensors for each sample; skips files already written.
    images: a folder of images, or of .pt/.npy/.npz inputs for models taking tensors."""
    from tqdm import tqdm

    items, source = model_samples(model, images, count, seed)
    manifest = Manifest(
        model=model.name,
        layer_names=list(model.layer_names),
        cut_bytes=list(model.cut_bytes),
        weights=str(model.weights),
        images=[sid for sid, _ in items],
        image_source=source,
    )
    check_out_folder(out, manifest.model, manifest.layer_names)
    bundles = [model.bundle(k, k) for k in range(len(model.layer_names))]
    for sid, vals in tqdm(items, desc=f"feature maps {model.name}", unit="sample", disable=not progress, file=sys.stderr):
        targets = [out / name / f"{sid}.pt" for name in model.layer_names]
        if all(t.is_file() for t in targets):
            continue
        # every layer runs before a file is written: a model that fails on these inputs writes nothing
        for target, maps in zip(targets, _layer_inputs(model, bundles, sid, vals)):
            if not target.is_file():
                save_tensors(target, maps)
    # last, so that it lists only files that are there (an interrupted run leaves none; a rerun resumes)
    manifest.save(out)
    return manifest


def _layer_inputs(model: SplitModel, bundles: Sequence[Any], sid: str,
                  vals: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
    """Each layer's input tensors for one sample."""
    out = []
    with torch.inference_mode():
        for name, bundle in zip(model.layer_names, bundles):
            out.append(vals)
            try:
                vals = bundle(*vals)
            except Exception as e:
                raise ModelError(f"{model.name}: layer {name} failed on sample {sid}: {first_line(e)}") from e
    return out


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dime samples", description="Save every layer's input tensors for sample images.")
    add_model_arguments(p)
    p.add_argument("--images", "--input-data", type=Path, dest="images",
                   help="folder of images, or of .pt/.npy/.npz inputs for models taking tensors "
                        "(default: deterministic generated samples)")
    p.add_argument("--count", type=int, default=None, help="number of images (default: all in --images, 4 generated)")
    p.add_argument("--seed", type=int, default=0, help="seed of generated images")
    p.add_argument("--out", type=Path, help="output folder (default: samples/<model>)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    count = args.count if args.count is not None else (0 if args.images else 4)
    if count < 0 or (args.images is None and count == 0):
        raise UsageError("--count must be a positive number")
    # the output is checked before the model is built (its name is --model's)
    out = check_output_dir(args.out or Path("samples") / args.model.replace(":", "_"), "--out")
    check_out_folder(out, args.model)
    if args.images is not None:
        check_input_dir(args.images, "image folder")
    model = model_from_args(args)
    m = generate(model, out, args.images, count, args.seed, progress=not args.quiet)
    if not args.quiet:
        print(f"weights: {model.weights}")
        print("\n".join(model.describe()))
        print(f"images: {len(m.images)} from {m.image_source}")
        print(f"wrote inputs of {len(m.layer_names)} layers ({', '.join(m.layer_names)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
