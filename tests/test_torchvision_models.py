"""Every torchvision builder through `dime.samples`: feature maps, or one `error:` line
naming what is not supported; never a traceback. Transforms are read from the weights."""

from __future__ import annotations

import gc
import json

import pytest
import torchvision.models as tvm

from dime.capture.models import ImagePrep, load_model, torchvision_task
from dime.capture.samples import main as samples_main
from dime.cliargs import run_main
from dime.errors import ModelError

pytestmark = pytest.mark.usefixtures("no_network")

# The fast suite runs a small classifier (quantizable) and the kinds refused; the slow sweep the rest
# (segmentation and video included). Classifiers are also tested in test_models.py.
REPRESENTATIVES = ["quantized_shufflenet_v2_x0_5", "fasterrcnn_resnet50_fpn", "raft_small"]
# the input each takes, as its weights' transforms say: 224 px crops; 520 px segmentation images;
# 16-frame clips of 112 px frames
INPUT_BYTES = {"shufflenet_v2_x0_5": 3 * 224 * 224 * 4, "quantized_shufflenet_v2_x0_5": 3 * 224 * 224 * 4,
               "lraspp_mobilenet_v3_large": 3 * 520 * 520 * 4, "r3d_18": 3 * 16 * 112 * 112 * 4}
ALL = tvm.list_models()


def _samples_cli(name: str, out, capsys) -> tuple[int, str]:
    code = run_main(samples_main, ["--model", name, "--count", "1", "--out", str(out), "-q"])
    gc.collect()  # the next model should not find this one's memory still held
    return code, capsys.readouterr().err


def _check(name: str, tmp_path, capsys) -> None:
    code, err = _samples_cli(name, tmp_path / "s", capsys)
    if code == 0:
        manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
        assert manifest["model"] == name and len(manifest["images"]) == 1
        assert manifest["cut_bytes"][0] == INPUT_BYTES.get(name, manifest["cut_bytes"][0])
        return
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}: "), err
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_every_builder_is_of_a_known_kind():
    """A new kind of torchvision model (a new torchvision.models package) shows up here."""
    kinds = {}
    for name in ALL:
        try:
            kind = torchvision_task(name, tvm.get_model_builder(name), None)
        except ModelError as e:
            kind = "refused: " + str(e).split(": ", 2)[1].split(" ")[0]
        kinds.setdefault(kind, []).append(name)
    assert set(kinds) == {"classification", "quantization", "segmentation", "video", "refused: detection",
                          "refused: an"}, kinds
    assert kinds["refused: an"] == ["raft_large", "raft_small"]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_torchvision_kinds_make_samples_or_one_error(name, tmp_path, capsys):
    _check(name, tmp_path, capsys)
    if name in INPUT_BYTES:
        assert (tmp_path / "s" / "manifest.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in REPRESENTATIVES])
def test_every_torchvision_builder_makes_samples_or_one_error(name, tmp_path, capsys):
    _check(name, tmp_path, capsys)


def test_unsupported_kinds_are_named():
    with pytest.raises(Exception, match="detection models are not supported"):
        load_model("fasterrcnn_resnet50_fpn")
    with pytest.raises(Exception, match="optical-flow model takes two images"):
        load_model("raft_small")


def test_transforms_are_read_from_the_weights():
    inception = ImagePrep.of(tvm.Inception_V3_Weights.DEFAULT.transforms())
    assert (inception.crop, inception.resize) == (299, 342)
    eff = ImagePrep.of(tvm.EfficientNet_B3_Weights.DEFAULT.transforms())
    assert (eff.crop, eff.resize, eff.interpolation) == (300, 320, "bicubic")
    seg = ImagePrep.of(tvm.segmentation.FCN_ResNet50_Weights.DEFAULT.transforms())
    assert (seg.crop, seg.resize) == (520, 520)
    # vit_h_14's default weights are 518 px, but built without them it takes 224 px images
    vit = ImagePrep.of(tvm.ViT_H_14_Weights.DEFAULT.transforms(), native=224)
    assert (vit.crop, vit.resize) == (224, 224)
    assert ImagePrep.of(tvm.AlexNet_Weights.DEFAULT.transforms()) == ImagePrep()


