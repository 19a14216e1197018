"""Make tests/instances.py importable however pytest is invoked."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


import ipaddress  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402


def _loopback(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else None
    if host is None:
        return True  # AF_UNIX paths
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch):
    """Fail on any connection to a non-loopback address: model builders must never download."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(real):
        def connect(self, address):
            if not _loopback(address):
                raise AssertionError(f"network connection attempted to {address!r}")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def shared_model():
    """`load_model(name, **options)`, captured once per test session (per xdist worker): for tests
    that only read the model (run it, build bundles, save feature maps). A test that changes the
    model, or checks how it is loaded, loads its own."""
    from dime.capture.models import load_model

    cache: dict[tuple[str, str], object] = {}

    def get(name: str, **options: object):
        key = (name, repr(sorted(options.items())))
        if key not in cache:
            cache[key] = load_model(name, **options)
        return cache[key]

    return get

