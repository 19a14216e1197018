"""The model flags shared by the CLIs that load a model (samples, profile, run)."""

from __future__ import annotations

import argparse

from dime.capture.models import load_model
from dime.capture.split import SplitModel
from dime.errors import ModelError
from dime.fileio import check_input_file


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="torchvision name, timm:NAME, hf:bert|hf:gpt2|hf:bert-tiny|hf:gpt2-tiny|hf:FOLDER, "
                        "or package.module:callable")
    p.add_argument("--weights", help="state-dict file (default: a local cache, else seeded random init)")
    p.add_argument("--cuts", help="comma-separated module/node names to cut after (default: the model's layers)")
    p.add_argument("--inputs", metavar="SPEC",
                   help="model inputs as name:dtype:shape, comma-separated, e.g. input_ids:int64:1x128 "
                        "(default: the model's; images 1x3xHxW)")
    p.add_argument("--layers", type=int, metavar="N", help="about N layers: merge the cheapest neighbours")
    p.add_argument("--capture", choices=["auto", "fx", "export"], default="auto",
                   help="graph capture: torch.fx, torch.export, or fx falling back to export (default)")


def check_model_files(args: argparse.Namespace) -> None:
    """The model's own files (--weights), checked before feature maps or a model are read."""
    if args.weights:
        check_input_file(args.weights, "weights file", error=ModelError)


def model_from_args(args: argparse.Namespace) -> SplitModel:
    return load_model(args.model, args.weights, args.cuts.split(",") if args.cuts else None,
                      inputs=args.inputs, layers=args.layers, capture=args.capture)
