"""Refusals of an output path or of an existing profile come before any model is built or
measured: the `error:` line is all that is printed, and the model builder is never called."""

from __future__ import annotations

import json
import logging

import pytest
from nd_helpers import system_file

from dime.capture import samples
from dime.cliargs import run_main
from dime.profiling import profiler
from dime.run import validate

TOY = ["--model", "toy_models:skipnet", "--cuts", "conv1,conv2"]
RUN = ["--iterations", "1", "--runs", "1", "--warmup", "0", "--max-bundle", "1"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Feature maps and a profile of the toy model on device `d` (1 iteration, 1 run, no warm-up)."""
    tmp = tmp_path_factory.mktemp("made")
    assert run_main(samples.main, [*TOY, "--count", "1", "--out", str(tmp / "s"), "-q"]) == 0
    assert run_main(profiler.main, [*TOY, *RUN, "--device-name", "d", "--samples", str(tmp / "s"),
                                    "--out", str(tmp / "p.csv"), "-q"]) == 0
    return tmp


@pytest.fixture
def no_build(monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("the model was built before the refusal")

    monkeypatch.setattr(profiler, "model_from_args", build)
    monkeypatch.setattr(samples, "model_from_args", build)


def _refused(main, argv, capsys, caplog, *files) -> str:
    """Runs a CLI in this process: exit 2, one `error:` line and nothing else, files unchanged."""
    before = [f.read_bytes() if f.is_file() else None for f in files]
    with caplog.at_level(logging.INFO):
        code = run_main(main, [str(a) for a in argv])
    out = capsys.readouterr()
    assert code == 2, out
    assert out.out == "" and len(out.err.splitlines()) == 1 and out.err.startswith("error: "), out
    assert "param_bytes" not in caplog.text  # no layer table
    assert [f.read_bytes() if f.is_file() else None for f in files] == before
    return out.err


@pytest.mark.parametrize("change, why", [
    (["--device-name", "other"], "holds profiles of toy_models:skipnet on d (3 rows), not of toy_models:skipnet on other"),
    (["--iterations", "2"], "was profiled with --iterations 1"),
    (["--warmup", "1"], "was profiled with --warmup 0"),
    (["--context", "chain"], "was profiled with --context isolated"),
    (["--assume-power", "3"], "was profiled with --power/--assume-power none"),
])
def test_profile_of_another_identity_is_refused_before_the_model_is_built(made, no_build, change, why, capsys, caplog):
    argv = [*TOY, *RUN, "--device-name", "d", "--samples", made / "s", "--out", made / "p.csv", *change]
    err = _refused(profiler.main, argv, capsys, caplog, made / "p.csv", made / "p.csv.meta.json")
    assert why in err and "--overwrite" in err


def test_profile_of_another_model_is_refused_before_the_model_is_built(made, no_build, tmp_path, capsys, caplog):
    other = tmp_path / "tokens"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({
        "model": "toy_models:tokens", "layer_names": ["embed", "tail"], "cut_bytes": [1, 1, 1], "weights": "w",
        "images": ["a"], "image_source": "generated:seed=0"}))
    argv = ["--model", "toy_models:tokens", *RUN, "--device-name", "d", "--samples", other, "--out", made / "p.csv"]
    err = _refused(profiler.main, argv, capsys, caplog, made / "p.csv")
    assert "holds profiles of toy_models:skipnet on d" in err


def test_profile_inputs_and_outputs_are_checked_before_the_model_is_built(made, no_build, tmp_path, capsys, caplog):
    (tmp_path / "f").write_text("x")
    base = [*TOY, *RUN, "--device-name", "d"]
    cases = [
        ([*base, "--samples", made / "s", "--out", tmp_path], "is a folder"),
        ([*base, "--samples", made / "s", "--out", tmp_path / "f" / "p.csv"], "is a file, not a folder"),
        ([*base, "--samples", tmp_path / "none", "--out", tmp_path / "p.csv"], "dime.samples"),
        (["--model", "alexnet", *RUN, "--samples", made / "s", "--out", tmp_path / "p.csv"], "are of toy_models:skipnet"),
        ([*base, "--samples", made / "s", "--out", tmp_path / "p.csv", "--torch-device", "cuda:99"], "--torch-device"),
        ([*base, "--samples", made / "s", "--out", tmp_path / "p.csv", "--context", "chain", "--power", "rapl"],
         "--context chain"),
    ]
    for argv, why in cases:
        assert why in _refused(profiler.main, argv, capsys, caplog)
    assert not (tmp_path / "p.csv").exists()


def test_profile_with_other_layers_is_refused_before_the_layer_table(made, capsys, caplog):
    """Layers are known once the model is built; the refusal still comes before anything is printed."""
    argv = ["--model", "toy_models:skipnet", "--cuts", "conv1", *RUN, "--device-name", "d", "--samples", made / "s",
            "--out", made / "p.csv"]
    assert "was profiled with --cuts (3 layers" in _refused(profiler.main, argv, capsys, caplog, made / "p.csv")


def test_samples_out_of_another_model_is_refused_before_the_model_is_built(made, no_build, tmp_path, capsys, caplog):
    argv = ["--model", "alexnet", "--count", "1", "--out", made / "s"]
    assert "holds feature maps of another model" in _refused(samples.main, argv, capsys, caplog,
                                                             made / "s" / "manifest.json")
    argv = [*TOY, "--images", tmp_path / "none", "--out", tmp_path / "s"]
    assert "image folder not found" in _refused(samples.main, argv, capsys, caplog)
    assert not (tmp_path / "s").exists()


def test_validate_summary_and_out_are_checked_before_any_run(tmp_path, monkeypatch, capsys, caplog):
    def plans(opts):
        raise AssertionError("validate planned before checking its outputs")

    monkeypatch.setattr(validate, "plans_for", plans)
    (tmp_path / "f").write_text("x")
    system = system_file(tmp_path, 2)
    for flag in ("--summary", "--out"):
        paths = {"--out": tmp_path / "v.csv", "--summary": tmp_path / "v.md", flag: tmp_path / "f" / "x"}
        argv = ["--system", system, *(a for k, v in paths.items() for a in (k, v))]
        assert f"{flag} {tmp_path / 'f' / 'x'}" in _refused(validate.main, argv, capsys, caplog)
