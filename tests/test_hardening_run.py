"""dime.run against silent peers and bad solution files: one line, exit 2, in time (issue 14)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from clihelp import PY, assert_one_line_error, cli_env

from dime.capture.models import load_model

SKIPNET = "toy_models:skipnet"
SMALL = "1,3,16,16"
MODEL = ["--model", SKIPNET, "--input-shape", SMALL]
TIMEOUT_S = 3
STARTUP_S = 30  # interpreter, torch and model start-up on a busy 2-core machine (load 8-10 seen)


def _run(args: list[str], timeout: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-m", "dime.run", *args], capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)
    return proc, time.monotonic() - t0


class SilentListener:
    """Something at a port that never answers: it accepts (or leaves connections in the backlog)
    and reads nothing."""

    def __init__(self, accept: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.accept = accept
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while self.accept:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self) -> None:
        self.accept = False
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.parametrize("accept", [True, False], ids=["accepts-never-answers", "never-accepts"])
def test_cloud_against_a_silent_listener_gives_up_within_the_timeout(accept):
    listener = SilentListener(accept)
    try:
        proc, took = _run(["--role", "cloud", "--peer", f"127.0.0.1:{listener.port}", *MODEL,
                           "--timeout-s", str(TIMEOUT_S)])
    finally:
        listener.close()
    assert_one_line_error(proc)
    assert f"127.0.0.1:{listener.port}" in proc.stderr and "did not answer within 3 s" in proc.stderr
    assert took < TIMEOUT_S + STARTUP_S


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
def test_edge_against_a_silent_client_gives_up_within_the_timeout():
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    edge = subprocess.Popen([PY, "-m", "dime.run", "--role", "edge", "--peer", f"127.0.0.1:{port}", *MODEL,
                             "--split", "0", "--timeout-s", str(TIMEOUT_S)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    client = None
    while client is None and time.monotonic() - t0 < STARTUP_S + TIMEOUT_S:
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=1)  # connects, then says nothing
        except OSError:
            time.sleep(0.1)
    try:
        out, err = edge.communicate(timeout=60)
    finally:
        if client is not None:
            client.close()
        edge.kill()
        edge.wait()
    assert_one_line_error(subprocess.CompletedProcess(edge.args, edge.returncode, out, err))
    assert client is not None and "is not a dime.run device" in err and f"127.0.0.1:{port}" in err
    assert time.monotonic() - t0 < TIMEOUT_S + STARTUP_S + 5


def _solution(**extra) -> dict:
    m = load_model(SKIPNET, input_shape=(1, 3, 16, 16))
    names = m.layer_names
    data = {"status": "optimal", "latency_s": 0.001, "placement": [
        {"start": names[0], "end": names[1], "device": "cpu", "setting": "threads=1", "role": "edge"},
        {"start": names[2], "end": names[-1], "device": "cpu", "setting": "threads=1", "role": "cloud"},
    ], "model": SKIPNET, "layer_names": names, "cut_bytes": m.cut_bytes}
    data.update(extra)
    return data


def _bad_solutions() -> list[tuple[str, object, str]]:
    good = _solution()
    renamed = _solution()
    renamed["placement"][0]["start"] = "features.0"
    return [
        ("list", [1], "not a solution (a JSON list"),
        ("null", None, "not a solution (a JSON NoneType"),
        ("string", "x", "not a solution (a JSON str"),
        ("no-placement", {"status": "optimal"}, "no placement in the solution"),
        ("other-model", {**good, "model": "vgg11"}, "is a solution of model vgg11, not toy_models:skipnet"),
        ("other-layers", {**good, "layer_names": ["a", "b", "c", "d"]}, "are not the model's"),
        ("other-cuts", {**good, "cut_bytes": [1, 2, 3, 4, 5]}, "cut sizes differ"),
        ("unknown-layer", renamed, "is not a layer of the model"),
    ]


@pytest.mark.slow  # over 5 s (waits for timeouts or runs processes): make test-all
@pytest.mark.parametrize("name,content,needle", _bad_solutions(), ids=[c[0] for c in _bad_solutions()])
def test_local_refuses_a_solution_that_is_not_this_models(name, content, needle, tmp_path):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(content))
    out = tmp_path / "run.csv"
    proc, took = _run(["local", *MODEL, "--solution", str(path), "--link", "1000/1000", "--probe-s", "0",
                       "--min-query-count", "2", "--warmup", "0", "--count", "1", "--driver", "plain",
                       "--out", str(out)])
    assert_one_line_error(proc)
    assert needle in proc.stderr
    assert not out.exists()


def test_a_matching_solution_with_its_model_record_runs(tmp_path):
    path = tmp_path / "sol.json"
    path.write_text(json.dumps(_solution()))
    out = tmp_path / "run.csv"
    proc, _ = _run(["local", *MODEL, "--solution", str(path), "--link", "1000/1000", "--probe-s", "0",
                    "--min-query-count", "2", "--warmup", "0", "--count", "1", "--driver", "plain",
                    "--reference-runs", "0", "--out", str(out), "-q"])
    assert proc.returncode == 0, proc.stderr
    assert len(Path(out).read_text().splitlines()) == 2
