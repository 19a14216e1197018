"""External ODROID SmartPower3, logged on a HOST PC (see `dime.powerlog`).

Device side of the setup: `start()` connects to the host's logger, estimates the clock offset
(host monotonic minus device monotonic, from the fastest of several round trips) and starts a
recording named `name`; `stop()` ends it (the host then holds ``DIR/<name>.csv``).

Energy is NOT known on the device while measuring: `energy_j()` returns NaN and `deferred` is
True. The profiler therefore writes each timed window's device ``time.monotonic()`` bounds as
``t_start_s``/``t_end_s``; afterwards, with the CSV copied from the host::

    python -m dime.energy join --timing profile.csv --power <name>.csv \\
        --offset-s <meter.offset_s> --out profile-with-energy.csv

fills in ``energy_j`` (input power integrated over each window) and ``energy_source``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

from dime.errors import MeterError, UsageError
from dime.profiling.meters.common import Meter
from dime.profiling.power.client import DEFAULT_PORT, PowerLogClient

log = logging.getLogger(__name__)


def parse_endpoint(endpoint: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT
                   ) -> tuple[str, int]:
    """"HOST:PORT", "HOST" or ":PORT" (IPv6 as "[::1]:PORT") -> (host, port)."""
    text = endpoint.strip()
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]*)(?::(\d+))?", text)
    if not text or m is None:
        raise UsageError(f"bad logger address {endpoint!r}; expected HOST:PORT")
    h = m.group(1) or m.group(3) or host
    p = m.group(2) or m.group(4)
    port = int(p) if p else port
    if not 0 < port < 65536:
        raise UsageError(f"bad logger port in {endpoint!r}")
    return h, port


class SmartPower3Meter(Meter):
    name = "smartpower3"
    deferred = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        name: str | None = None,
        min_window_s: float = 1.0,
        offset_rounds: int = 20,
        timeout_s: float = 5.0,
        endpoint: str | None = None,
    ) -> None:
        if endpoint:
            host, port = parse_endpoint(endpoint, host, port)
        self.host = host
        self.port = int(port)
        self.recording_name = name or time.strftime("dime-%Y%m%d-%H%M%S")
        # a 10 ms meter log interval gives ~100 samples per second: 1 s windows are plenty
        self.min_window_s = float(min_window_s)
        self.offset_rounds = int(offset_rounds)
        self.client = PowerLogClient(host, self.port, timeout_s=timeout_s)
        self.offset_s: float | None = None  # host minus device monotonic time
        self.log_name: str | None = None  # the name the host used (sanitized)
        self.stopped_info: dict[str, str] | None = None

    @classmethod
    def unavailable_reason(cls, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                           timeout_s: float = 5.0, endpoint: str | None = None,
                           **kw: Any) -> str | None:
        if endpoint:
            try:
                host, port = parse_endpoint(endpoint, host, port)
            except UsageError as e:
                return str(e)
        client = PowerLogClient(host, port, timeout_s=timeout_s)
        try:
            client.ping()
            st = client.status()
        except MeterError as e:
            return str(e)
        finally:
            client.close()
        if st.get("serial") != "ok":
            return f"the logger at {host}:{port} cannot read its serial port"
        return None

    def start(self) -> None:
        self.offset_s = self.client.estimate_offset_s(self.offset_rounds)
        self.log_name = self.client.start(self.recording_name)
        self.stopped_info = None
        log.info(
            "smartpower3: recording %s.csv on %s:%d; clock offset %.6f s; energy comes from "
            "`python -m dime.energy join` afterwards", self.log_name, self.host, self.port,
            self.offset_s,
        )

    def stop(self) -> None:
        if self.log_name is None or self.stopped_info is not None:
            return
        try:
            self.stopped_info = self.client.stop()
            # re-estimate to detect drift between the two clocks over the recording
            end_offset = self.client.estimate_offset_s(self.offset_rounds)
            if self.offset_s is not None:
                drift = end_offset - self.offset_s
                if abs(drift) > 0.002:
                    log.warning("smartpower3: clock offset drifted %.1f ms during the recording",
                                1000 * drift)
        finally:
            self.client.close()

    def energy_j(self) -> float:
        """Always NaN: the energy is joined later from the host's log (see module doc)."""
        return math.nan
