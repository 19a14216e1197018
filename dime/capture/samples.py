"""Feature maps: run sample images through a model and save every layer's inputs.

Layout of the output folder:
    manifest.json            model, layers, cut sizes, weights, images
    <layer>/<image>.pt       tuple of the tensors live at the cut before <layer>

`python -m dime.samples --model alexnet [--images DIR] --out samples/alexnet`
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from dime.capture.models import SplitModel, load_model
from dime.cliargs import OneLineParser, run_main, setup_logging
from dime.errors import UsageError
from dime.fileio import atomic_write, atomic_write_text, check_output_dir

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
        if not path.is_file():
            raise UsageError(f"no feature maps in {folder} ({MANIFEST} missing); run `python -m dime.samples` first")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as e:
            raise UsageError(f"{path} is not a dime manifest: {e}") from e


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"image folder not found: {folder}")
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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UsageError(f"cannot read feature map {path}: {e}") from e
    return tuple(obj) if isinstance(obj, (tuple, list)) else (obj,)


def generate(
    model: SplitModel,
    out: Path,
    images: Path | None = None,
    count: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> Manifest:
    """Write every layer's input tensors for each image; skips files already written."""
    from PIL import Image
    from tqdm import tqdm

    if images is not None:
        paths = list_images(images)[: count if count > 0 else None]
        items = [(p.stem, p) for p in paths]
        source = f"folder:{images}"
    else:
        items = generated_images(count, seed)
        source = f"generated:seed={seed}"
        log.warning("no --images given: using %d deterministic generated images (seed %d)", count, seed)
    manifest = Manifest(
        model=model.name,
        layer_names=list(model.layer_names),
        cut_bytes=list(model.cut_bytes),
        weights=str(model.weights),
        images=[sid for sid, _ in items],
        image_source=source,
    )
    out.mkdir(parents=True, exist_ok=True)
    old = out / MANIFEST
    if old.is_file():
        prev = Manifest.load(out)
        if prev.model != manifest.model or prev.layer_names != manifest.layer_names:
            raise UsageError(f"{out} holds feature maps of another model or layering ({prev.model}); choose another --out")
    manifest.save(out)
    bundles = [model.bundle(k, k) for k in range(len(model.layer_names))]
    for sid, src in tqdm(items, desc=f"feature maps {model.name}", unit="img", disable=not progress, file=sys.stderr):
        targets = [out / name / f"{sid}.pt" for name in model.layer_names]
        if all(t.is_file() for t in targets):
            continue
        img = Image.open(src).convert("RGB") if isinstance(src, Path) else src
        vals: tuple[torch.Tensor, ...] = (model.preprocess(img).unsqueeze(0),)
        with torch.inference_mode():
            for target, bundle in zip(targets, bundles):
                if not target.is_file():
                    save_tensors(target, vals)
                vals = bundle(*vals)
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dime samples", description="Save every layer's input tensors for sample images.")
    p.add_argument("--model", required=True, help="torchvision model name or package.module:callable")
    p.add_argument("--weights", help="state-dict file (default: torchvision's local cache, else seeded random init)")
    p.add_argument("--cuts", help="comma-separated module/node names to cut after (default: the model's layers)")
    p.add_argument("--images", type=Path, help="folder of images (default: deterministic generated images)")
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
    if args.out is not None:
        check_output_dir(args.out, "--out")
    model = load_model(args.model, args.weights, args.cuts.split(",") if args.cuts else None)
    out = args.out or check_output_dir(Path("samples") / model.name.replace(":", "_"), "--out")
    m = generate(model, out, args.images, count, args.seed, progress=not args.quiet)
    if not args.quiet:
        print(f"weights: {model.weights}")
        print(f"images: {len(m.images)} from {m.image_source}")
        print(f"wrote inputs of {len(m.layer_names)} layers ({', '.join(m.layer_names)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
