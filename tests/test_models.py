from __future__ import annotations

import pytest
import torch

from dime.capture.models import DEFAULT_LAYERS, load_model
from dime.errors import ModelError

pytestmark = pytest.mark.usefixtures("no_network")

EXPECTED_LAYERS = {
    "alexnet": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"],
    "vgg11": [f"conv{i}" for i in range(1, 9)] + ["fc1", "fc2", "fc3"],
    "resnet18": ["stem"] + [f"layer{i}_{j}" for i in range(1, 5) for j in range(2)] + ["head"],
    "vit_b_16": ["conv_proj", "embed"] + [f"encoder_layer_{i}" for i in range(12)] + ["head"],
    "mobilenet_v2": [f"features_{i}" for i in range(19)] + ["head"],
}


def _check_reproduces(m, seed: int = 1) -> None:
    x = torch.randn(m.example_inputs[0].shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = m.forward_full(x)
        outs = m.run_layers(x)
    assert isinstance(outs, tuple) and len(outs) == 1
    torch.testing.assert_close(outs[0], full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(DEFAULT_LAYERS))
def test_default_models_split_and_reproduce(name, shared_model):
    m = shared_model(name)
    assert m.layer_names == EXPECTED_LAYERS[name]
    assert len(m.cut_bytes) == len(m.layer_names) + 1
    assert m.cut_bytes[0] == 3 * 224 * 224 * 4
    assert m.cut_bytes[-1] == 1000 * 4
    assert m.weights.source in ("random-init", "torchvision-cache")
    _check_reproduces(m)


def test_every_bundle_chain_matches_layer_chain(shared_model):
    m = shared_model("resnet18")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        full = m.forward_full(x)
        # bundles of 3 layers, then the rest
        vals = (x,)
        n = len(m.layer_names)
        for s in range(0, n, 3):
            vals = m.bundle(s, min(n - 1, s + 2))(*vals)
    torch.testing.assert_close(vals[0], full, rtol=1e-4, atol=1e-5)


def test_resnet18_cut_inside_block_carries_skip_tensor():
    # Cut after layer1.0's first conv: the block input (for the residual) and the
    # conv output are both live.
    m = load_model("resnet18", cuts=["maxpool", "layer1.0.conv1"])
    act = 64 * 56 * 56 * 4
    assert m.cut_bytes[1] == act
    assert m.cut_bytes[2] == 2 * act
    assert len(m.live_tensors(2)) == 2
    with torch.no_grad():
        out = m.bundle(0, 1)(torch.randn(1, 3, 224, 224))
    assert isinstance(out, tuple) and len(out) == 2
    _check_reproduces(m)


def test_resnet18_default_cuts_carry_one_tensor(shared_model):
    m = shared_model("resnet18")
    for k in range(len(m.layer_names) + 1):
        assert len(m.live_tensors(k)) == 1
    assert m.cut_bytes[1] == 64 * 56 * 56 * 4  # after the stem
    assert m.cut_bytes[3] == 64 * 56 * 56 * 4  # after layer1_1
    assert m.cut_bytes[5] == 128 * 28 * 28 * 4  # after layer2_1


def test_vit_cut_after_conv_proj_freezes_shape_values(shared_model):
    m = shared_model("vit_b_16")
    b = m.bundle("embed", "embed")
    with torch.no_grad():
        (y,) = b(torch.randn(1, 768, 14, 14))
    assert y.shape == (1, 197, 768)


@pytest.mark.parametrize("name", ["squeezenet1_0", "efficientnet_b0"])
def test_other_torchvision_models_get_automatic_layers(name):
    m = load_model(name)
    assert len(m.layer_names) >= 3
    assert len(set(m.layer_names)) == len(m.layer_names)
    assert all(b > 0 for b in m.cut_bytes)
    _check_reproduces(m)


def test_callable_model_with_user_cuts(monkeypatch):
    m = load_model("toy_models:skipnet", cuts=["conv1", "conv2"], input_shape=(1, 3, 16, 16))
    assert m.layer_names == ["conv1", "conv2", "tail"]
    # After conv2 both a (skip) and b are live: 2 x 8 x 16 x 16 floats
    assert m.cut_bytes[2] == 2 * 8 * 16 * 16 * 4
    _check_reproduces(m)


def test_callable_model_automatic_layers():
    m = load_model("toy_models:skipnet", input_shape=(1, 3, 16, 16))
    # The skip connection spans conv2 (two live tensors after it): conv2 and conv3 merge;
    # the parameter-free pool joins them rather than standing alone.
    assert m.layer_names == ["conv1", "conv2", "fc"]
    assert all(len(m.live_tensors(k)) == 1 for k in range(len(m.layer_names) + 1))
    _check_reproduces(m)


def test_weights_from_file_and_cache(tmp_path, monkeypatch):
    torch.manual_seed(123)
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    ref = mobilenet_v2()
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    m = load_model("mobilenet_v2", weights=path)
    assert m.weights.source == "file"
    torch.testing.assert_close(m.graph_module.get_submodule("classifier.1").weight, ref.classifier[1].weight)

    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    name = MobileNet_V2_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(ref.state_dict(), ckpt / name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    m2 = load_model("mobilenet_v2")
    assert m2.weights.source == "torchvision-cache"
    torch.testing.assert_close(m2.graph_module.get_submodule("classifier.1").weight, ref.classifier[1].weight)


def test_random_init_is_seeded(shared_model):
    a = shared_model("alexnet")
    b = load_model("alexnet")
    assert a.weights.source == "random-init" or a.weights.source == "torchvision-cache"
    torch.testing.assert_close(a.graph_module.get_submodule("features.0").weight, b.graph_module.get_submodule("features.0").weight)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "no_such_net"}, "unknown model"),
        ({"name": "toy_models:not_a_module"}, "not an nn.Module"),
        ({"name": "no_such_pkg.mod:fn"}, "cannot import"),
        ({"name": "alexnet", "weights": "/nonexistent/w.pth"}, "weights file not found"),
        ({"name": "alexnet", "cuts": ["features.99"]}, "no graph node or module"),
    ],
)
def test_model_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        load_model(**kwargs)


def test_wrong_weights_file(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"bogus": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="do not fit"):
        load_model("alexnet", weights=path)


def test_unknown_layer_in_bundle(shared_model):
    m = shared_model("alexnet")
    with pytest.raises(ModelError, match="no layer 'conv9'"):
        m.bundle("conv1", "conv9")
