"""The SmartPower3 host logger: a pseudo-terminal plays the meter, TCP drives the recordings."""

from __future__ import annotations

import math
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dime.errors import MeterError
from dime.profiling.meters import make_meter
from dime.profiling.meters.smartpower3 import SmartPower3Meter
from dime.profiling.power.client import PowerLogClient
from dime.profiling.power.powerlog import (
    CSV_COLUMNS,
    LINE_BYTES,
    PowerLogServer,
    format_line,
    line_checksums,
    open_serial,
    parse_line,
    sanitize_name,
)

REPO = Path(__file__).resolve().parents[1]


def good_line(i: int) -> bytes:
    return format_line(1000 + 10 * i, 5100, 800 + i, 4080 + 5 * i, 0,
                       (5000, 700 + i, 3500 + 5 * i, 1, 0), (3300, 10, 33, 0, 0x1f))


def corrupt_lines() -> list[bytes]:
    flipped = bytearray(good_line(99))
    flipped[20] = ord("9") if flipped[20] != ord("9") else ord("8")  # a digit changed
    short = b"0000001000,05100,0800\r\n"  # too few fields
    bad_cs = good_line(98)[:-7] + b"00,00\r\n"
    return [bytes(flipped), short, bad_cs, b"\xff\xfe garbage \x00\r\n"]


# ------------------------------------------------------------------------------- line format


def test_line_format_matches_firmware_layout():
    line = good_line(1)
    assert len(line) == LINE_BYTES and line.endswith(b"\r\n")
    fields = line.rstrip(b"\r\n").split(b",")
    assert len(fields) == 17
    data = line[: line.rstrip(b"\r\n").rfind(b",", 0, line.rstrip(b"\r\n").rfind(b",")) + 1]
    s, x = line_checksums(data)
    assert (sum(data) + s) & 0xFF == 0  # two's complement of the byte sum
    assert fields[15] == f"{s:02x}".encode() and fields[16] == f"{x:02x}".encode()
    assert parse_line(line) == (1010, 5100, 801, 4085, 0, 5000, 701, 3505, 1, 0,
                                3300, 10, 33, 0, 0x1f)


@pytest.mark.parametrize("bad", corrupt_lines())
def test_corrupt_lines_rejected(bad):
    with pytest.raises(ValueError):
        parse_line(bad)


@pytest.mark.parametrize("raw, want", [
    ("run1", "run1"), ("run-2.a", "run-2.a"), ("x.csv", "x"),
    ("../../evil", "_.._evil"), ("/etc/passwd", "_etc_passwd"), ("a b;c", "a_b_c"),
    (".hidden", "hidden"), ("..\\win", "_win"),
])
def test_sanitize_name(raw, want):
    assert sanitize_name(raw) == want


@pytest.mark.parametrize("raw", ["", "..", "...", "/", "./", "-"])
def test_sanitize_name_refuses_empty_or_dots(raw):
    with pytest.raises(ValueError):
        sanitize_name(raw)


def test_open_serial_on_non_tty_fails(tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    with pytest.raises(MeterError, match="not a serial port"):
        open_serial(str(f), 115200)


# ------------------------------------------------------------------------------- server


@pytest.fixture
def pty_meter():
    master, slave = os.openpty()
    yield master, os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def server(pty_meter, tmp_path):
    _, path = pty_meter
    srv = PowerLogServer(path, tmp_path / "logs", baud=115200, bind="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.shutdown()


def wait_counts(client: PowerLogClient, good: int, corrupt: int, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = client.status()
        if int(st["lines"]) >= good and int(st["corrupt"]) >= corrupt:
            return st
        if time.monotonic() > deadline:
            pytest.fail(f"server saw {st}, wanted lines={good} corrupt={corrupt}")
        time.sleep(0.01)


def test_recording_keeps_good_lines_only(server, pty_meter, tmp_path):
    master, _ = pty_meter
    host, port = server.address
    with PowerLogClient(host, port, timeout_s=5) as client:
        assert client.ping() < 1.0
        os.write(master, good_line(0))  # before start: not recorded
        wait_counts(client, 1, 0)
        assert client.start("run1") == "run1"
        bad = corrupt_lines()
        for i in range(1, 6):
            os.write(master, good_line(i))
            if i <= len(bad):
                os.write(master, bad[i - 1])
        wait_counts(client, 6, 4)
        info = client.stop()
    assert info == {"name": "run1", "lines": "5", "corrupt": "4", "file": "run1.csv"}
    df = pd.read_csv(tmp_path / "logs" / "run1.csv")
    assert list(df.columns) == list(CSV_COLUMNS)
    assert list(df["meter_ms"]) == [1010, 1020, 1030, 1040, 1050]
    assert list(df["input_mw"]) == [4085, 4090, 4095, 4100, 4105]
    assert list(df["ch1_int"]) == [0x1f] * 5
    assert list(df["ch0_int"]) == [0] * 5
    assert df["host_time_s"].is_monotonic_increasing
    assert abs(df["host_time_s"].iloc[-1] - time.monotonic()) < 10
    assert not list((tmp_path / "logs").glob(".*part"))


def test_path_traversal_names_stay_in_dir(server, tmp_path):
    host, port = server.address
    with PowerLogClient(host, port) as client:
        assert client.start("../../evil") == "_.._evil"
        client.stop()
        assert client.start("/etc/passwd") == "_etc_passwd"
        client.stop()
        with pytest.raises(MeterError, match="unusable"):
            client.start("..")
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["_.._evil.csv",
                                                                     "_etc_passwd.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def raw_session(host: str, port: int) -> tuple[socket.socket, object]:
    s = socket.create_connection((host, port), timeout=5)
    return s, s.makefile("rb")


def ask(s: socket.socket, f, data: bytes) -> str:
    s.sendall(data)
    return f.readline().decode().strip()


def test_malformed_commands_get_error_replies(server):
    host, port = server.address
    s, f = raw_session(host, port)
    try:
        assert ask(s, f, b"\n") == "error empty command"
        assert ask(s, f, b"bogus\n").startswith("error unknown command 'bogus'")
        assert ask(s, f, b"start\n") == "error usage: start NAME"
        assert ask(s, f, b"start a b\n") == "error usage: start NAME"
        assert ask(s, f, b"stop\n") == "error not recording"
        assert ask(s, f, b"\xff\xfe\x00\n").startswith("error unknown command")
        assert ask(s, f, b"ping extra\n").startswith("error")
        assert ask(s, f, b"PING\n") == "pong"
        assert re.fullmatch(r"time \d+\.\d{9}", ask(s, f, b"time\n"))
        assert ask(s, f, b"x" * 3000 + b"\n") == "error command too long"
        assert f.readline() == b""  # the server hung up on that one
    finally:
        f.close()
        s.close()
    with PowerLogClient(host, port) as client:  # still alive
        assert client.ping() < 1.0


def test_client_disconnect_keeps_server_and_recording(server, pty_meter, tmp_path):
    master, _ = pty_meter
    host, port = server.address
    s, f = raw_session(host, port)
    assert ask(s, f, b"start dropped\n") == "ok started dropped"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    f.close()
    s.close()  # abrupt reset
    os.write(master, good_line(1))
    with PowerLogClient(host, port) as client:
        st = wait_counts(client, 1, 0)
        assert st["recording"] == "dropped"
        assert client.stop()["lines"] == "1"
    assert (tmp_path / "logs" / "dropped.csv").exists()


def test_start_while_recording_closes_the_first(server, tmp_path):
    host, port = server.address
    with PowerLogClient(host, port) as client:
        client.start("a")
        assert client.request("start b") == "ok started b (stopped a)"
        client.stop()
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["a.csv", "b.csv"]


def test_offset_estimate_same_machine(server):
    host, port = server.address
    with PowerLogClient(host, port) as client:
        assert abs(client.estimate_offset_s(5)) < 0.05


def test_smartpower3_meter_on_device_side(server, pty_meter, tmp_path):
    master, _ = pty_meter
    host, port = server.address
    assert SmartPower3Meter.is_available(host=host, port=port)
    meter = make_meter("smartpower3", host=host, port=port, name="bench/run")
    assert isinstance(meter, SmartPower3Meter) and meter.deferred and meter.name == "smartpower3"
    meter.start()
    assert meter.log_name == "bench_run"
    assert abs(meter.offset_s) < 0.05
    for i in range(3):
        os.write(master, good_line(i))
    with PowerLogClient(host, port) as c:
        wait_counts(c, 3, 0)
    assert math.isnan(meter.energy_j())
    meter.stop()
    assert meter.stopped_info["lines"] == "3"
    assert len(pd.read_csv(tmp_path / "logs" / "bench_run.csv")) == 3


def test_smartpower3_meter_endpoint_argument(server):
    host, port = server.address
    meter = make_meter("smartpower3", endpoint=f"{host}:{port}")
    assert (meter.host, meter.port) == (host, port)
    from dime.profiling.meters.smartpower3 import parse_endpoint

    assert parse_endpoint("[::1]:9000") == ("::1", 9000)
    assert parse_endpoint("box") == ("box", 47031)
    assert parse_endpoint(":5") == ("127.0.0.1", 5)
    with pytest.raises(Exception, match="bad logger"):
        parse_endpoint("a:b:c")


def test_smartpower3_meter_unavailable_without_logger(caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level("INFO"):
        assert not SmartPower3Meter.is_available(host="127.0.0.1", port=port, timeout_s=1)
    assert "cannot reach the power logger" in caplog.text


# ------------------------------------------------------------------------------- the CLI


def test_serve_cli_records_and_finalizes_on_sigterm(pty_meter, tmp_path):
    master, path = pty_meter
    out = tmp_path / "cli-logs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dime.powerlog", "serve", "--serial", path, "--baud", "230400",
         "--port", "0", "--dir", str(out)],
        cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                line = proc.stderr.readline().decode()
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if m:
                    port = int(m.group(1))
                elif not line:
                    break
        assert port, "server did not report its port"
        with PowerLogClient("127.0.0.1", port) as client:
            client.start("cli")
            os.write(master, good_line(1) + good_line(2))
            wait_counts(client, 2, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert len(pd.read_csv(out / "cli.csv")) == 2
