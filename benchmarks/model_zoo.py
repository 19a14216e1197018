"""Zoo coverage: which models dime captures (torch.fx / torch.export / not), whether
running all layers reproduces the model, how many layers, the largest layer's share of
the parameters, and the capture time. Random weights only; nothing is downloaded.

    python benchmarks/model_zoo.py [--only torchvision|timm|hf] [--size 64] [--timeout-s 120] [--out zoo.csv]

Each model runs in its own subprocess under a time limit; rows are appended to --out as
they finish (a rerun skips models already there), then a markdown summary is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMM_MODELS = [
    "resnet18", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2", "seresnet50", "resnetv2_50",
    "regnety_016", "regnetx_032", "densenet121", "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv4_conv_small",
    "efficientnet_b0", "efficientnet_b3", "efficientnetv2_rw_s", "tf_efficientnet_lite0", "ghostnet_100",
    "mnasnet_100", "rexnet_100", "convnext_tiny", "convnextv2_tiny", "vit_tiny_patch16_224", "vit_small_patch16_224",
    "vit_base_patch16_224", "deit_small_patch16_224", "deit3_small_patch16_224", "beit_base_patch16_224",
    "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "cait_xxs24_224", "coat_lite_tiny", "crossvit_tiny_240",
    "levit_128", "mobilevit_xs", "mobilevitv2_050", "efficientvit_b0", "efficientformer_l1", "poolformer_s12",
    "mixer_b16_224", "resmlp_12_224", "convmixer_768_32", "dla34", "dpn68", "hrnet_w18_small", "inception_v3",
    "xception41", "repvgg_a2", "fastvit_t8", "edgenext_small", "tiny_vit_5m_224", "maxvit_tiny_tf_224",
]
HF_MODELS = ["hf:bert-tiny", "hf:gpt2-tiny", "hf:bert", "hf:gpt2"]
FIELDS = ["model", "family", "capture", "reproduces", "layers", "largest_layer", "largest_share", "splittable",
          "capture_s", "input", "error"]


def torchvision_models() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def check(name: str, size: int) -> dict[str, object]:
    """One model: capture, reproduce, layer statistics (runs in the child process)."""
    import torch

    from dime.capture.models import load_model

    t0 = time.perf_counter()
    shape = None
    if not name.startswith("hf:") and size:
        shape = (1, 3, size, size)
    try:
        m = load_model(name, input_shape=shape)
    except Exception as e:  # noqa: BLE001 - the report records every failure
        if shape is None:
            raise
        # some models need their native size (fixed position embeddings, window sizes)
        shape = None
        try:
            m = load_model(name)
        except Exception:
            raise e from None
    took = time.perf_counter() - t0
    x = m.example_inputs
    with torch.no_grad():
        full = m.forward_full(*x)
        outs = m.run_layers(*x)
    want = [t for t in (full if isinstance(full, (tuple, list)) else [full]) if isinstance(t, torch.Tensor)]
    ok = len(outs) == len(want) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(outs, want))
    total = sum(p.numel() * p.element_size() for p in m._root.parameters()) or 1
    k = max(range(len(m.layer_names)), key=lambda i: m.param_bytes[i])
    return {"capture": m.capture, "reproduces": ok, "layers": len(m.layer_names), "largest_layer": m.layer_names[k],
            "largest_share": round(m.param_bytes[k] / total, 3), "splittable": _splittable(m, k),
            "capture_s": round(took, 2), "input": "x".join(map(str, m.example_inputs[0].shape))}


def _splittable(m, k: int) -> bool:
    """Whether layer k holds more than one module with parameters (a smaller block exists)."""
    from dime.capture.trace import module_paths

    owners = set()
    for n in m._layer_nodes(k):
        if n.op == "call_module":
            owners.add(str(n.target))
        elif any(a.op == "get_attr" for a in n.all_input_nodes):
            paths = module_paths(n)
            owners.add(paths[-1] if paths else n.name)
    return len(owners) > 1


def child(name: str, size: int) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    try:
        row = check(name, size)
    except Exception as e:  # noqa: BLE001
        msg = str(e).strip().splitlines()
        row = {"capture": "none", "error": (msg[0] if msg else type(e).__name__)[:200]}
    print(json.dumps(row))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["torchvision", "timm", "hf"], action="append")
    p.add_argument("--size", type=int, default=64, help="image side for models that accept it (0: native)")
    p.add_argument("--timeout-s", type=float, default=180)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "zoo.csv")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.size)
        return 0
    families = args.only or ["torchvision", "timm", "hf"]
    todo = [(n, f) for f in families for n in
            {"torchvision": torchvision_models, "timm": lambda: [f"timm:{m}" for m in TIMM_MODELS],
             "hf": lambda: HF_MODELS}[f]()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.is_file():
        with open(args.out, newline="") as f:
            done = {r["model"] for r in csv.DictReader(f)}
    new = not args.out.is_file()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        for name, fam in todo:
            if name in done:
                continue
            try:
                proc = subprocess.run([sys.executable, __file__, "--child", name, "--size", str(args.size)],
                                      capture_output=True, text=True, timeout=args.timeout_s, env=env)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                row = json.loads(lines[-1]) if lines else {"capture": "none", "error": (proc.stderr.strip().splitlines() or ["crashed"])[-1][:200]}
            except subprocess.TimeoutExpired:
                row = {"capture": "timeout", "error": f"over {args.timeout_s:g} s"}
            row.update(model=name, family=fam)
            w.writerow(row)
            f.flush()
            print(f"{name:45s} {row.get('capture'):8s} {row.get('reproduces', '')!s:6s} {row.get('layers', '')!s:4s} "
                  f"{row.get('error', '') or ''}", flush=True)
    summary(args.out)
    return 0


def summary(path: Path) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    print("\n| family | models | fx | export | not captured | reproduces | largest layer > 1/2 params (splittable) |")
    print("|---|---|---|---|---|---|---|")
    for fam in ("torchvision", "timm", "hf"):
        rs = [r for r in rows if r["family"] == fam]
        if not rs:
            continue
        fx_n = sum(r["capture"] == "fx" for r in rs)
        ex_n = sum(r["capture"] == "export" for r in rs)
        ok = sum(r["reproduces"] == "True" for r in rs)
        big = [r["model"] for r in rs if r["largest_share"] and float(r["largest_share"]) > 0.5 and r["splittable"] == "True"]
        print(f"| {fam} | {len(rs)} | {fx_n} | {ex_n} | {len(rs) - fx_n - ex_n} | {ok} ({100 * ok / len(rs):.0f}%) | "
              f"{len(big)}{' (' + ', '.join(big) + ')' if big else ''} |")


if __name__ == "__main__":
    sys.exit(main())
