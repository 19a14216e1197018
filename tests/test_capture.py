"""Capture beyond torch.fx: export fallback, tensor inputs, transformers, automatic layers."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from clihelp import PY, assert_one_line_error, cli_env, run_cli

from dime.capture.inputs import parse_inputs
from dime.capture.models import load_model, no_download_kwargs
from dime.capture.samples import generate, load_tensors
from dime.errors import ModelError, UsageError

pytestmark = pytest.mark.usefixtures("no_network")


def _reproduces_at_every_cut(m) -> None:
    x = m.example_inputs
    n = len(m.layer_names)
    with torch.no_grad():
        full = m.forward_full(*x)
        for k in range(1, n):
            mid = m.bundle(0, k - 1)(*x)
            assert sum(t.numel() * t.element_size() for t in mid) == m.cut_bytes[k]
            (out,) = m.bundle(k, n - 1)(*mid)
            torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5)
        (out,) = m.run_layers(*x)
    torch.testing.assert_close(out, full, rtol=1e-4, atol=1e-5)


def test_export_captures_what_fx_rejects():
    with pytest.raises(ModelError, match="torch.fx cannot trace"):
        load_model("toy_models:shape_branch", input_shape=(1, 3, 15, 15), capture="fx")
    m = load_model("toy_models:shape_branch", input_shape=(1, 3, 15, 15))
    assert m.capture == "export"
    assert m.layer_names == ["conv1", "conv2", "fc"]
    # the pad on the traced odd size is kept: conv2's input is 16x16
    assert m.cut_bytes[1] == 8 * 16 * 16 * 4
    _reproduces_at_every_cut(m)


class DataBranch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if x.sum() > 0 else x - 1


def test_both_captures_failing_is_one_message(monkeypatch):
    import sys
    import types

    mod = types.ModuleType("_dime_bad_models")
    mod.bad = DataBranch
    monkeypatch.setitem(sys.modules, "_dime_bad_models", mod)
    with pytest.raises(ModelError, match=r"cannot capture this model \(torch.fx failed: .*torch.export failed") as e:
        load_model("_dime_bad_models:bad", input_shape=(1, 4))
    assert "\n" not in str(e.value)


def test_stacks_split_into_blocks_and_cheap_modules_fold():
    m = load_model("toy_models:stacked", input_shape=(2, 8))
    assert m.capture == "fx"
    assert m.layer_names == ["body_embed"] + [f"body_blocks_{i}" for i in range(6)] + ["head"]
    assert m.param_bytes[0] == (8 * 16 + 16) * 4
    assert m.param_bytes[1] == (16 * 16 + 16) * 4
    _reproduces_at_every_cut(m)
    merged = load_model("toy_models:stacked", input_shape=(2, 8), layers=3)
    assert len(merged.layer_names) == 3
    assert merged.layer_names[0].startswith("body_embed")
    assert sum(merged.param_bytes) == sum(m.param_bytes)
    _reproduces_at_every_cut(merged)


def test_a_stage_holding_most_parameters_opens_through_its_lone_child():
    m = load_model("toy_models:one_big_stage", input_shape=(1, 4))
    assert m.layer_names == ["stem", "stage_blocks_0", "stage_blocks_1", "stage_blocks_2", "head"]
    assert 2 * max(m.param_bytes) < sum(m.param_bytes)
    _reproduces_at_every_cut(m)


def test_integer_and_boolean_inputs_are_sized_and_generated(tmp_path):
    specs = "ids:int64:1x8,keep:bool:1x8"
    m = load_model("toy_models:tokens", inputs=specs, cuts=["embed", "mix"])
    assert m.vocab_size == 50  # the embedding table bounds generated ids
    assert m.cut_bytes[0] == 8 * 8 + 8 * 1
    # after embed: the embeddings (float32), ids (int64, used at the end) and keep (bool)
    assert [t.dtype for t in (m._values[n] for n in m.live_tensors(1))] == [torch.int64, torch.bool, torch.float32]
    assert m.cut_bytes[1] == 8 * 8 + 8 * 1 + 8 * 8 * 4
    assert m.cut_bytes[2] == m.cut_bytes[1]  # the mask multiplies after mix: keep still crosses
    _reproduces_at_every_cut(m)
    man = generate(m, tmp_path / "gen", count=2, progress=False)
    ids, keep = load_tensors(tmp_path / "gen" / m.layer_names[0] / f"{man.images[0]}.pt")
    assert ids.dtype == torch.int64 and 0 <= ids.min() and ids.max() < 50 and keep.dtype == torch.bool
    # samples from files: a dict by name (.pt) and arrays by name (.npz)
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    torch.save({"ids": torch.arange(8).reshape(1, 8), "keep": torch.ones(1, 8, dtype=torch.bool)}, data / "a.pt")
    np.savez(data / "b.npz", ids=np.full((1, 8), 3), keep=np.zeros((1, 8), dtype=bool))
    man = generate(m, tmp_path / "files", images=data, count=0, progress=False)
    assert man.images == ["a", "b"]
    ids, keep = load_tensors(tmp_path / "files" / m.layer_names[0] / "b.pt")
    assert ids.tolist() == [[3] * 8] and not keep.any()
    torch.save({"ids": torch.zeros(1, 9, dtype=torch.long)}, data / "c.pt")
    with pytest.raises(UsageError, match="no input"):
        generate(m, tmp_path / "bad", images=data, count=0, progress=False)


@pytest.mark.parametrize("text, match", [
    ("ids:int64", "name:dtype:shape"), ("ids:complex:1x2", "unknown dtype"), ("ids:int64:1xa", "not like"),
    ("ids:int64:0x2", ">= 1"), ("a:int64:1,a:int64:2", "twice"),
])
def test_bad_input_specs(text, match):
    with pytest.raises(UsageError, match=match):
        parse_inputs(text)


@pytest.mark.parametrize("name, first, block", [("hf:bert-tiny", "embeddings", "layer_"), ("hf:gpt2-tiny", "embeddings", "h_")])
def test_tiny_transformers_split_at_every_cut(name, first, block, shared_model):
    pytest.importorskip("transformers")
    m = shared_model(name)
    assert m.capture == "export"
    assert m.layer_names == [first, f"{block}0", f"{block}1", "head"]
    assert all(s.dtype == torch.int64 for s in m.input_specs)
    assert m.cut_bytes[0] == sum(8 * 16 for _ in m.input_specs)
    assert m.weights.source == "random-init"
    _reproduces_at_every_cut(m)


def test_hf_config_overrides_and_local_folder(tmp_path, shared_model):
    pytest.importorskip("transformers")
    m = load_model("hf:gpt2-tiny:n_layer=3")
    assert m.layer_names == ["embeddings", "h_0", "h_1", "h_2", "head"]
    built = shared_model("hf:bert-tiny")
    built._root.model.save_pretrained(tmp_path / "bert")
    again = load_model(f"hf:{tmp_path / 'bert'}")
    assert again.weights.source == "file" and again.layer_names == built.layer_names
    x = built.example_inputs
    with torch.no_grad():
        torch.testing.assert_close(again.forward_full(*x), built.forward_full(*x))
    with pytest.raises(ModelError, match="unknown hf model"):
        load_model("hf:no_such_thing")


def test_timm_vit_blocks_are_layers():
    pytest.importorskip("timm")
    m = load_model("timm:vit_tiny_patch16_224")
    assert m.layer_names == ["patch_embed"] + [f"blocks_{i}" for i in range(12)] + ["norm", "head"]
    x = torch.randn(m.example_inputs[0].shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(m.run_layers(x)[0], m.forward_full(x), rtol=1e-4, atol=1e-5)


def test_builders_get_no_download_arguments():
    import torchvision.models as tvm

    builder = tvm.get_model_builder("fasterrcnn_resnet50_fpn")
    kw = no_download_kwargs(builder)
    assert kw == {"weights": None, "weights_backbone": None}
    builder(**kw)  # under the network guard: would fail on a download


@pytest.mark.parametrize("name", ["hf:gpt2-tiny", "hf:bert-tiny"])
def test_transformer_profile_and_solve_cli(tmp_path, name):
    pytest.importorskip("transformers")
    model = ["--model", name, "--layers", "2"]
    p = run_cli("dime.samples", *model, "--count", "2", "--out", tmp_path / "s")
    assert p.returncode == 0, p.stderr
    assert "capture: torch.export" in p.stdout and "param_bytes" in p.stdout
    for dev in ("edge", "cloud"):
        p = run_cli("dime.profile", *model, "--samples", tmp_path / "s", "--bundles", "0,1", "--iterations", "2",
                    "--runs", "1", "--warmup", "0", "--device-name", dev, "--out", tmp_path / f"{dev}.csv", "-q")
        assert p.returncode == 0, p.stderr
    rows = (tmp_path / "edge.csv").read_text().splitlines()
    header = rows[0].split(",")
    bundles = {r.split(",")[header.index("bundle")] for r in rows[1:]}
    assert len(bundles) == 2
    p = run_cli("dime.solve", tmp_path / "edge.csv", tmp_path / "cloud.csv", "--edge", "edge", "--cloud", "cloud",
                "--link", "wifi", "--solver", "highs", "--json", tmp_path / "sol.json")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "sol.json").read_text())["status"] == "optimal"


def test_cli_bad_inputs_one_line(tmp_path):
    p = run_cli("dime.samples", "--model", "toy_models:tokens", "--inputs", "ids:int64:1xq", "--out", tmp_path / "o")
    assert_one_line_error(p)


@pytest.mark.slow  # a long end-to-end run (three interpreters capturing BERT): make test-all
def test_transformer_runs_split_between_edge_and_cloud(tmp_path, shared_model):
    """`dime.run local` sends a float and a boolean mask across the cut after layer_0."""
    pytest.importorskip("transformers")
    out, outputs = tmp_path / "run.csv", tmp_path / "out.pt"
    p = subprocess.run([PY, "-m", "dime.run", "local", "--model", "hf:bert-tiny", "--split", "2", "--link", "1000/1000",
                        "--count", "2", "--min-query-count", "2", "--warmup", "1", "--probe-s", "0", "--driver", "plain",
                        "--verify", "--out", str(out), "--outputs", str(outputs), "-q"],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert p.returncode == 0, p.stderr
    m = shared_model("hf:bert-tiny")
    assert [t.dtype for t in (m._values[n] for n in m.live_tensors(2))] == [torch.bool, torch.float32]
    saved = torch.load(outputs, weights_only=True)
    for outs in saved["outputs"].values():
        for i, got in enumerate(outs):
            with torch.inference_mode():
                want = m.forward_full(*saved["inputs"][i % len(saved["inputs"])])
            torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-4)


def _reproduces_flat(m, cuts_too: bool = True) -> None:
    """Every cut's two halves give the full model's output tensors (outputs flattened)."""
    from dime.capture.outputs import pick, tensor_paths

    x = m.example_inputs
    with torch.no_grad():
        out = m.forward_full(*x)
        full = [pick(out, p) for p in tensor_paths(out)[0]]
        halves = [(m.bundle(0, k - 1), m.bundle(k, len(m.layer_names) - 1)) for k in range(1, len(m.layer_names))]
        for got in [m.run_layers(*x)] + [b(*a(*x)) for a, b in halves]:
            assert len(got) == len(full)
            for g, f in zip(got, full):
                torch.testing.assert_close(g, f, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("builder, cuts, cached", [
    ("hf_gpt2", None, True), ("hf_bert", None, True),
    # T5EncoderModel turns its cache off itself; its automatic layers keep the blocks together (the
    # position bias crosses every cut between them), so it is also cut after each block by name
    ("hf_t5_encoder", ["encoder.block.0", "encoder.block.1"], False),
    ("hf_llama", None, True),
])
def test_users_own_transformers_capture_split_and_reproduce(builder, cuts, cached, caplog):
    """A transformers model built by the user's callable, its cache at the config's default."""
    pytest.importorskip("transformers")
    import logging

    with caplog.at_level(logging.INFO, logger="dime"):
        m = load_model(f"toy_models:{builder}", inputs="input_ids:int64:1x8")
    assert m.capture == "export"
    assert len(m.layer_names) >= 2 and not any(n.startswith("model_") for n in m.layer_names)
    assert m._root.config.use_cache is False
    assert ("config.use_cache turned off for capture" in caplog.text) == cached
    _reproduces_flat(m)
    if cuts:
        cut = load_model(f"toy_models:{builder}", inputs="input_ids:int64:1x8", cuts=cuts)
        assert len(cut.layer_names) == len(cuts) + 1
        _reproduces_flat(cut)


def test_non_tensor_outputs_are_dropped_with_a_note(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="dime"):
        m = load_model("toy_models:with_extras", input_shape=(2, 4))
    assert m.capture == "fx"
    notes = [r.getMessage() for r in caplog.records if "captured as its tensors" in r.getMessage()]
    assert notes == ["toy_models:with_extras: returns dict; captured as its tensors logits, extra[0]; "
                     "dropped: meta (object)"]
    assert len(m.live_tensors(len(m.layer_names))) == 2
    _reproduces_flat(m)


def test_transformers_callable_gets_token_inputs_by_default():
    pytest.importorskip("transformers")
    m = load_model("toy_models:hf_bert")
    assert [str(s) for s in m.input_specs] == ["input_ids:int64:1x64"]  # its config's max_position_embeddings
    assert m.vocab_size == 100


def test_a_callable_failing_on_its_inputs_is_one_line():
    with pytest.raises(ModelError, match="running it on its example inputs failed") as e:
        load_model("toy_models:skipnet", input_shape=(1, 5, 16, 16))
    assert "\n" not in str(e.value)


def test_hf_folder_of_a_base_model_gives_its_hidden_states(tmp_path):
    """hf:FOLDER whose architecture has no head (no logits): its tensors, layers named as its blocks."""
    pytest.importorskip("transformers")
    import toy_models

    toy_models.hf_llama().save_pretrained(tmp_path / "llama")
    m = load_model(f"hf:{tmp_path / 'llama'}", inputs="input_ids:int64:1x8")
    assert m.weights.source == "file"
    assert m.layer_names == ["embed_tokens", "layers_0", "layers_1", "norm"]
    _reproduces_flat(m)


def test_an_fx_graph_that_does_not_run_falls_back_to_export():
    with pytest.raises(ModelError, match=r"running node .* failed: .*immutable") as e:
        load_model("toy_models:mutates_list", input_shape=(2, 8), capture="fx")
    assert "\n" not in str(e.value)
    m = load_model("toy_models:mutates_list", input_shape=(2, 8))
    assert m.capture == "export"
    _reproduces_at_every_cut(m)
