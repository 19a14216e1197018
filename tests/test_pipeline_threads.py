"""Issue 22, 1: a pipeline's worker threads compute with the device's torch thread count.

OpenMP's thread count is per thread: a new thread starts at the runtime's default (the
machine's CPU count), and oneDNN's convolutions use that, not what torch.set_num_threads
set in the main thread. torch.get_num_threads() itself resets a thread's count (ATen's
lazy per-thread set-up), so the test reads the OpenMP runtime's own count first, before
anything in the thread could have reset it.
"""

from __future__ import annotations

import ctypes
import re
import threading

import pytest
import torch

from dime.capture.models import load_model
from dime.core.costs import Assignment
from dime.core.links import Link
from dime.core.network import Network
from dime.run.data.chain import Chain
from dime.run.data.pipeline import Pipeline
from dime.run.data.program import build_program

SKIPNET = "toy_models:skipnet"


def _openmp_max_threads():
    """omp_get_max_threads of the OpenMP runtime torch loaded (this thread's count)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if re.search(r"/lib(g|i5|)omp[\w.-]*\.so", line)}
    if not libs:
        pytest.skip("torch runs without an OpenMP runtime here")
    fn = ctypes.CDLL(sorted(libs)[0]).omp_get_max_threads
    fn.restype = ctypes.c_int
    return fn


def _fresh_thread_count(omp) -> int:
    got = []
    t = threading.Thread(target=lambda: got.append(omp()))
    t.start()
    t.join()
    return got[0]


class _Probe(torch.nn.Module):
    """The real conv bundle, noting the thread counts it runs with."""

    def __init__(self, bundle, omp, seen: list) -> None:
        super().__init__()
        self.bundle, self.omp, self.seen = bundle, omp, seen

    def forward(self, *xs):
        omp_before = self.omp()  # before torch could reset it
        out = self.bundle(*xs)
        self.seen.append((threading.current_thread().name, omp_before, self.omp(), torch.get_num_threads()))
        return out


def test_worker_threads_run_conv_bundles_with_the_devices_thread_count():
    omp = _openmp_max_threads()
    m = load_model(SKIPNET, cuts=["conv1", "conv2", "pool"], input_shape=(1, 3, 16, 16))
    before = torch.get_num_threads()
    fresh = _fresh_thread_count(omp)
    configured = 1 if fresh != 1 else 2  # a count a new thread would not start with by itself
    torch.set_num_threads(configured)
    try:
        seen: list = []
        last = len(m.layer_names) - 1
        # the conv layers as one bundle in the source's first task, the rest in its second
        cache = {(0, 1): _Probe(m.bundle(0, 1), omp, seen), (2, last): m.bundle(2, last)}
        placement = (Assignment(0, 1, 0, "t"), Assignment(2, last, 0, "t"))
        net = Network.two_roles(Link("fast", 1000, 1000))
        pipe = Pipeline(build_program(placement, net, m.cut_bytes), 0, m, cache, None, [0, 1], net, 1, False, False)
        chain = Chain(pipe, [(torch.randn(1, 3, 16, 16),)], 1)
        pipe.start()
        chain.infer(0)
        chain.close()
        pipe.join(10)
    finally:
        torch.set_num_threads(before)
    (name, omp_before, omp_after, torch_count), = seen
    assert name.startswith("dime-") and name != threading.main_thread().name  # a pipeline worker ran it
    assert (omp_before, omp_after, torch_count) == (configured, configured, configured)
