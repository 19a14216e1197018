"""The wire format of a run: control messages and the flat buffer of a cut.

Each transfer is one flat byte buffer (a 24-byte header, then every live tensor of the
cut at a 64-byte aligned offset), whose shapes every device knows from the model's traced
example run (SplitModel.cut_specs), so only bytes travel. Where the links are emulated in
user space the buffer goes as two messages, the body and its last 64 bytes, so that the
sender (dime.run.links.linkemu) can hold the release until the link's wire time has passed;
where the kernel shapes the links, as one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from dime.errors import ModelError

# control messages (int64[6], tag CTRL_TAG), between the source and each device: [command, args...]
CTRL_TAG = 1
DATA_TAG = 2  # the bytes that follow a control message (JSON)
PROBE_TAG = 3  # a link probe's transfers and its ping-pong, between the link's two ends
# tag 4: transfer reports to the source with --adapt (dime.run.data.reports.REPORT_TAG)
STREAM_TAG = 100  # stream s of a config's program travels on tag STREAM_TAG + s
CTRL_LEN = 6
CMD_PLAN = 1  # a: plan JSON length; the JSON follows on DATA_TAG
CMD_PROBE = 2  # a: probe index (Plan.probe_links), b: up bytes, c: down bytes, d: repetitions
CMD_CONFIG = 3  # a: config index, b: queries in flight; the program's streams run until an END passes
CMD_QUIT = 4
CMD_PING = 5
CMD_PONG = 6
CMD_INFO = 7  # a: JSON length; the device's description (torch device, threads, host) follows
CMD_REFERENCE = 8  # source: a = runs; the device times its whole model, answers CMD_REFERENCE, a = nanoseconds
CMD_STATS = 9  # a: JSON length; a device's account of the config that just ended
CMD_PROBE_RESULT = 12  # a: up ns, b: down ns, c: ping ns (the link's first end to the source)
CMD_CONFIG_JSON = 13  # a: JSON length, b: queries in flight; a config the plan does not hold (a re-plan) follows
CMD_CLOCK = 14  # the schedule starts now (dime.run.links.schedule.Clock)
# data header (int64[3] at the start of every transfer): [kind, query id, when this hop's send began
# (CLOCK_MONOTONIC ns, stamped by the sender where the receiver times transfers)]
DATA_RUN = 10
DATA_END = 11  # the source ends a config; it travels the whole chain like a query

HEADER_BYTES = 24
ALIGN_BYTES = 64
TAIL_BYTES = 64


def _align(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


@dataclass(frozen=True)
class CutLayout:
    """Where each tensor of a cut sits in the flat transfer buffer."""

    specs: tuple[tuple[tuple[int, ...], torch.dtype], ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]  # bytes of each tensor
    payload_bytes: int  # the tensors' bytes: what the link model charges for
    buffer_bytes: int  # header + padding + tensors, a multiple of ALIGN_BYTES

    @classmethod
    def of(cls, specs: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> "CutLayout":
        offsets, sizes = [], []
        pos = _align(HEADER_BYTES)
        for shape, dtype in specs:
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            offsets.append(pos)
            sizes.append(nbytes)
            pos = _align(pos + nbytes)
        total = max(pos, _align(HEADER_BYTES) + TAIL_BYTES)
        return cls(tuple((tuple(s), d) for s, d in specs), tuple(offsets), tuple(sizes), sum(sizes), total)

    def new_buffer(self) -> torch.Tensor:
        return torch.zeros(self.buffer_bytes, dtype=torch.uint8)

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        return [buf[off : off + n].view(dtype).view(shape)
                for (shape, dtype), off, n in zip(self.specs, self.offsets, self.sizes)]

    def pack(self, buf: torch.Tensor, kind: int, query: int, tensors: Sequence[torch.Tensor] | None) -> None:
        buf[:HEADER_BYTES].view(torch.int64).copy_(torch.tensor([kind, query, 0], dtype=torch.int64))
        if tensors is None:
            return
        if len(tensors) != len(self.specs):
            raise ModelError(f"a cut carries {len(tensors)} tensors, the traced model says {len(self.specs)}")
        for view, t, (shape, dtype) in zip(self.views(buf), tensors, self.specs):
            if tuple(t.shape) != shape or t.dtype != dtype:
                raise ModelError(
                    f"a tensor at a cut is {tuple(t.shape)} {t.dtype}, the traced model says {shape} {dtype} "
                    "(the input differs from the model's example input?)"
                )
            view.copy_(t)

    def unpack(self, buf: torch.Tensor) -> tuple[int, int, list[torch.Tensor]]:
        kind, query, _ = (int(v) for v in buf[:HEADER_BYTES].view(torch.int64))
        return kind, query, self.views(buf)


def stamp(buf: torch.Tensor, sent_ns: int) -> None:
    """Write when this hop's send begins into a transfer's header."""
    buf[16:HEADER_BYTES].view(torch.int64)[0] = sent_ns


def sent_ns(buf: torch.Tensor) -> int:
    return int(buf[16:HEADER_BYTES].view(torch.int64)[0])
