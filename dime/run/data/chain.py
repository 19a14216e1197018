"""The source's side of a pipeline as a system under test: queries in, outputs back.

`issue(index, done)` (dime.run.measure's interface) queues a query; a dispatcher thread
puts it into the chain as soon as fewer than `in_flight` queries are in it, and the
source's last task calls `done` when the output is back. `infer(index)` runs one query
to completion and returns its outputs (warm-up, --verify).

The pipeline behind the chain can be replaced at a query boundary (a re-plan,
dime.run.control.session): `pause` stops admitting queries (issued ones wait in the queue) and
returns once every query in the pipeline is done; `resume(pipeline)` admits them again into
the new one. Query ids keep counting across pipelines, so every query has one id and runs in
one pipeline. With `trace` on, every query's times and the pipeline it ran in are kept
(`QueryTrace`); with `check` set, every output is checked before its query is done.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from dime.run.data.pipeline import Pipeline
from dime.run.measure import Done

POLL_S = 0.05


@dataclass
class QueryTrace:
    """One query: when it was issued, put into the pipeline and done (CLOCK_MONOTONIC s), and
    in which pipeline it ran (0: the first)."""

    query: int
    sample: int
    issued: float
    started: float = float("nan")
    done: float = float("nan")
    pipeline: int = -1
    ok: bool = False


class Chain:
    def __init__(self, pipeline: Pipeline, samples: Sequence[tuple[torch.Tensor, ...]], in_flight: int) -> None:
        self.pipeline = pipeline
        self.samples = samples
        self.in_flight = in_flight
        self._lock = threading.Condition()
        # (sample index, done, a list that receives the outputs or None, the query's trace or None)
        self._queue: collections.deque[tuple[int, Done, list | None, QueryTrace | None]] = collections.deque()
        self._pending: dict[int, tuple[Done, list | None, int, QueryTrace | None]] = {}
        self._next_qid = 0
        self._closed = False
        self._paused = False
        self._pipeline_no = 0
        self._error: BaseException | None = None  # fail() from outside: every query fails with it
        self.trace: list[QueryTrace] | None = None  # set to a list to keep every query's trace
        self.check: Callable[[int, list[torch.Tensor]], None] | None = None  # (sample, outputs); raises
        pipeline.on_output = self._on_output
        self._dispatcher = threading.Thread(target=self._dispatch, name="dime-chain", daemon=True)
        self._dispatcher.start()

    @property
    def next_query(self) -> int:
        """The id the next query put into the pipeline gets."""
        return self._next_qid

    def issue(self, index: int, done: Done, outputs: list | None = None) -> None:
        with self._lock:
            rec = None
            if self.trace is not None:
                rec = QueryTrace(-1, index, time.monotonic())
                self.trace.append(rec)
            self._queue.append((index, done, outputs, rec))
            self._lock.notify_all()

    def infer(self, index: int) -> list[torch.Tensor]:
        """One query through the chain, alone; its outputs (CPU copies)."""
        got = threading.Event()
        box: list[BaseException | None] = []

        def done(error: BaseException | None) -> None:
            box.append(error)
            got.set()

        outputs: list[list[torch.Tensor]] = []
        self.issue(index, done, outputs)
        while not got.wait(POLL_S):
            self._raise_if_failed()
        if box[0] is not None:
            raise box[0]
        return outputs[0]

    def pause(self) -> None:
        """Admit no more queries; return once every query in the pipeline is done."""
        with self._lock:
            self._paused = True
            while self._pending and self._failure() is None:
                self._lock.wait(POLL_S)
        self._raise_if_failed()

    def resume(self, pipeline: Pipeline, number: int) -> None:
        """Admit queries again, into `pipeline` (the `number`th of this chain)."""
        with self._lock:
            self.pipeline = pipeline
            pipeline.on_output = self._on_output
            self._pipeline_no = number
            self._paused = False
            self._lock.notify_all()

    def fail(self, error: BaseException) -> None:
        """Fail every query issued, queued or to come with `error`."""
        with self._lock:
            if self._error is None:
                self._error = error
            self._fail_all(error)
            self._lock.notify_all()

    def close(self) -> None:
        """Stop taking queries (after every issued one is done): END follows the last."""
        with self._lock:
            while (self._queue or self._pending) and self._failure() is None:
                self._lock.wait(POLL_S)
            self._closed = True
            self._lock.notify_all()
        self._dispatcher.join()
        self._raise_if_failed()
        self.pipeline.finish()

    def _failure(self) -> BaseException | None:
        return self._error or self.pipeline.failed()

    def _raise_if_failed(self) -> None:
        err = self._failure()
        if err is not None:
            raise err

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (self._paused or not self._queue or len(self._pending) >= self.in_flight):
                    err = self._failure()
                    if err is not None:
                        self._fail_all(err)
                    self._lock.wait(POLL_S)
                if self._closed:
                    return
                index, done, outputs, rec = self._queue.popleft()
                qid = self._next_qid
                self._next_qid += 1
                self._pending[qid] = (done, outputs, index, rec)
                if rec is not None:
                    rec.query, rec.started, rec.pipeline = qid, time.monotonic(), self._pipeline_no
                pipeline = self.pipeline
            try:
                pipeline.submit(qid, self.samples[index])
            except BaseException as e:
                with self._lock:
                    self._fail_all(e)

    def _fail_all(self, error: BaseException) -> None:
        """Every query issued or queued fails with the pipeline's error (called with the lock held)."""
        dones = [d for d, _, _, _ in self._pending.values()] + [d for _, d, _, _ in self._queue]
        self._pending.clear()
        self._queue.clear()
        for d in dones:
            d(error)

    def _on_output(self, qid: int, outputs: list[torch.Tensor]) -> None:
        if qid < 0:  # END came back
            return
        with self._lock:
            done, box, index, rec = self._pending.get(qid, (None, None, -1, None))
        error: BaseException | None = None
        if self.check is not None and done is not None:
            try:
                self.check(index, outputs)
            except BaseException as e:  # a wrong output fails its query, and with it the measurement
                error = e
        with self._lock:
            self._pending.pop(qid, None)
            if box is not None:
                box.append(outputs)
            if rec is not None:
                rec.done, rec.ok = time.monotonic(), error is None
            self._lock.notify_all()
        if done is not None:
            done(error)
