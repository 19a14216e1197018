"""Transfer reports: each device tells the source how its transfers went, for the rate estimates.

While a placement runs with --adapt, every device other than the source sends the source, on
its own tag (REPORT_TAG), small fixed-size messages of transfer records: link, direction,
payload bytes and wire time (dime.run.links.estimate.Transfer). A message holds up to
REPORT_BATCH records; a device sends one when it has a full batch or REPORT_EVERY_S after its
oldest unsent record, and a last one with the count -1 once its pipeline has ended, so that the
source's receiver for that device ends too. 8 + 32 x 16 bytes at most every quarter second:
next to the data of a run, nothing.
"""

from __future__ import annotations

from typing import Sequence

import torch

from dime.run.data.peer import PeerError
from dime.run.links.estimate import Transfer
from dime.run.links.schedule import DIRECTIONS

REPORT_TAG = 4
REPORT_BATCH = 16
REPORT_EVERY_S = 0.25
_FIELDS = 4  # link, direction code, payload bytes, wire time in ns
REPORT_LEN = 1 + _FIELDS * REPORT_BATCH
END_OF_REPORTS = -1


def pack_report(records: Sequence[Transfer]) -> torch.Tensor:
    """One message of at most REPORT_BATCH records (none: the last message of a pipeline)."""
    assert len(records) <= REPORT_BATCH
    msg = torch.zeros(REPORT_LEN, dtype=torch.int64)
    msg[0] = len(records) if records else END_OF_REPORTS
    for i, r in enumerate(records):
        msg[1 + _FIELDS * i : 1 + _FIELDS * (i + 1)] = torch.tensor(
            [r.link, DIRECTIONS.index(r.direction), r.payload_bytes, round(r.wire_s * 1e9)], dtype=torch.int64)
    return msg


def unpack_report(msg: torch.Tensor) -> list[Transfer] | None:
    """The records of one message; None for the last message of a pipeline."""
    vals = [int(v) for v in msg]
    n = vals[0]
    if n == END_OF_REPORTS:
        return None
    if not 0 < n <= REPORT_BATCH:
        raise PeerError(f"protocol error: a transfer report of {n} records")
    out = []
    for i in range(n):
        link, direction, nbytes, wire_ns = vals[1 + _FIELDS * i : 1 + _FIELDS * (i + 1)]
        if direction not in (0, 1):
            raise PeerError(f"protocol error: a transfer report with direction code {direction}")
        out.append(Transfer(link, DIRECTIONS[direction], nbytes, wire_ns / 1e9))
    return out
