"""The source's side of a pipeline as a system under test: queries in, outputs back.

`issue(index, done)` (dime.run.measure's interface) queues a query; a dispatcher thread
puts it into the chain as soon as fewer than `in_flight` queries are in it, and the
source's last task calls `done` when the output is back. `infer(index)` runs one query
to completion and returns its outputs (warm-up, --verify).
"""

from __future__ import annotations

import collections
import threading
from typing import Sequence

import torch

from dime.run.data.pipeline import Pipeline
from dime.run.measure import Done

POLL_S = 0.05


class Chain:
    def __init__(self, pipeline: Pipeline, samples: Sequence[tuple[torch.Tensor, ...]], in_flight: int) -> None:
        self.pipeline = pipeline
        self.samples = samples
        self.in_flight = in_flight
        self._lock = threading.Condition()
        # (sample index, done, a list that receives the outputs or None)
        self._queue: collections.deque[tuple[int, Done, list | None]] = collections.deque()
        self._pending: dict[int, tuple[Done, list | None]] = {}
        self._next_qid = 0
        self._closed = False
        pipeline.on_output = self._on_output
        self._dispatcher = threading.Thread(target=self._dispatch, name="dime-chain", daemon=True)
        self._dispatcher.start()

    def issue(self, index: int, done: Done, outputs: list | None = None) -> None:
        with self._lock:
            self._queue.append((index, done, outputs))
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

    def close(self) -> None:
        """Stop taking queries (after every issued one is done): END follows the last."""
        with self._lock:
            while (self._queue or self._pending) and self.pipeline.failed() is None:
                self._lock.wait(POLL_S)
            self._closed = True
            self._lock.notify_all()
        self._dispatcher.join()
        self.pipeline.finish()

    def _raise_if_failed(self) -> None:
        err = self.pipeline.failed()
        if err is not None:
            raise err

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._queue or len(self._pending) >= self.in_flight):
                    err = self.pipeline.failed()
                    if err is not None:
                        self._fail_all(err)
                    self._lock.wait(POLL_S)
                if self._closed:
                    return
                index, done, outputs = self._queue.popleft()
                qid = self._next_qid
                self._next_qid += 1
                self._pending[qid] = (done, outputs)
            try:
                self.pipeline.submit(qid, self.samples[index])
            except BaseException as e:
                with self._lock:
                    self._fail_all(e)

    def _fail_all(self, error: BaseException) -> None:
        """Every query issued or queued fails with the pipeline's error (called with the lock held)."""
        dones = [d for d, _ in self._pending.values()] + [d for _, d, _ in self._queue]
        self._pending.clear()
        self._queue.clear()
        for d in dones:
            d(error)

    def _on_output(self, qid: int, outputs: list[torch.Tensor]) -> None:
        if qid < 0:  # END came back
            return
        with self._lock:
            done, box = self._pending.pop(qid, (None, None))
            if box is not None:
                box.append(outputs)
            self._lock.notify_all()
        if done is not None:
            done(None)
