from __future__ import annotations

import json
import subprocess

import torch
from clihelp import PY, assert_one_line_error, cli_env, images_dir, run_cli  # noqa: F401

from dime.capture.models import load_model
from dime.capture.samples import Manifest, generate, load_tensors


def test_feature_maps_are_each_layers_inputs(tmp_path, images_dir):
    m = load_model("toy_models:skipnet", cuts=["conv1", "conv2"], input_shape=(1, 3, 16, 16))
    man = generate(m, tmp_path, images=images_dir, count=2, progress=False)
    assert len(man.images) == 2
    assert man.image_source.startswith("folder:" if images_dir else "generated:")
    for k, name in enumerate(m.layer_names):
        for sid in man.images:
            vals = load_tensors(tmp_path / name / f"{sid}.pt")
            assert sum(t.numel() * t.element_size() for t in vals) == m.cut_bytes[k]
            if k + 1 < len(m.layer_names):
                nxt = load_tensors(tmp_path / m.layer_names[k + 1] / f"{sid}.pt")
                with torch.no_grad():
                    got = m.bundle(k, k)(*vals)
                for a, b in zip(got, nxt):
                    torch.testing.assert_close(a, b)


def test_real_images_use_imagenet_preprocessing(tmp_path, images_dir, shared_model):
    if images_dir is None:
        import pytest

        pytest.skip("shared sample images not present")
    m = shared_model("alexnet")
    man = generate(m, tmp_path, images=images_dir, count=1, progress=False)
    (x,) = load_tensors(tmp_path / "conv1" / f"{man.images[0]}.pt")
    assert x.shape == (1, 3, 224, 224)
    # normalised with ImageNet mean/std: roughly centred, not in [0, 1]
    assert x.min() < 0 < x.max()


def test_generated_images_are_deterministic_and_resume(tmp_path):
    m = load_model("toy_models:skipnet", input_shape=(1, 3, 16, 16))
    generate(m, tmp_path / "a", count=2, seed=5, progress=False)
    generate(m, tmp_path / "b", count=2, seed=5, progress=False)
    fa = tmp_path / "a" / m.layer_names[1] / "generated_001.pt"
    fb = tmp_path / "b" / m.layer_names[1] / "generated_001.pt"
    torch.testing.assert_close(load_tensors(fa)[0], load_tensors(fb)[0])
    # resume: a removed file is recreated, the others are left alone
    keep = tmp_path / "a" / m.layer_names[0] / "generated_000.pt"
    mtime = keep.stat().st_mtime_ns
    fa.unlink()
    generate(m, tmp_path / "a", count=2, seed=5, progress=False)
    assert fa.is_file() and keep.stat().st_mtime_ns == mtime
    man = Manifest.load(tmp_path / "a")
    assert man.layer_names == m.layer_names


def test_cli_writes_manifest(tmp_path):
    out = tmp_path / "s"
    p = subprocess.run(
        [PY, "-m", "dime.samples", "--model", "toy_models:skipnet", "--cuts", "conv1", "--count", "2", "--out", str(out)],
        capture_output=True, text=True, env=cli_env(),
    )
    assert p.returncode == 0, p.stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["layer_names"] == ["conv1", "tail"]
    assert "generated" in p.stdout and "weights:" in p.stdout


def test_cli_errors(tmp_path):
    p = run_cli("dime.samples", "--model", "alexnet", "--images", tmp_path / "nope", "--out", tmp_path / "o")
    assert_one_line_error(p)
    assert "image folder not found" in p.stderr
    p = run_cli("dime.samples", "--model", "no_net", cwd=tmp_path)
    assert_one_line_error(p)
    # another model's feature maps are not overwritten
    out = tmp_path / "s"
    assert run_cli("dime.samples", "--model", "toy_models:skipnet", "--count", "1", "--out", out).returncode == 0
    p = run_cli("dime.samples", "--model", "alexnet", "--count", "1", "--out", out)
    assert_one_line_error(p)
