"""Latency and throughput of an inference callable, with MLPerf LoadGen when available.

Scenarios (MLPerf's names):
    single-stream  one query at a time, the next issued when the last completes;
                   reports latency percentiles (the figure a placement predicts).
    server         queries arrive as a Poisson process at a target QPS; latency
                   includes queueing behind earlier queries.
    offline        every sample issued at once; reports throughput.

The system under test runs one query at a time (a worker thread takes queries from a
queue), so server latency includes queueing and offline throughput is 1 / latency of
the whole split pipeline, without overlapping queries on edge and cloud.

Warm-up queries are the caller's business: measure() times only what it issues.
When `mlperf_loadgen` (PyPI: mlcommons-loadgen) cannot be imported, a plain timing
loop issues the same scenarios and computes the same statistics.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dime.errors import UsageError

log = logging.getLogger(__name__)

SINGLE_STREAM = "single-stream"
SERVER = "server"
OFFLINE = "offline"
SCENARIOS: tuple[str, ...] = (SINGLE_STREAM, SERVER, OFFLINE)
DRIVERS: tuple[str, ...] = ("auto", "loadgen", "plain")
PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


@dataclass(frozen=True)
class MeasureSettings:
    scenario: str = SINGLE_STREAM
    min_query_count: int = 32  # queries (samples for offline)
    min_duration_s: float = 0.0
    target_qps: float | None = None  # server arrival rate; default 0.5 / expected latency
    expected_latency_s: float | None = None  # a hint for loadgen's schedules
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario {self.scenario!r}; choose from {', '.join(SCENARIOS)}")
        if self.min_query_count < 1:
            raise UsageError(f"min query count must be >= 1, got {self.min_query_count}")
        if not (self.min_duration_s >= 0 and math.isfinite(self.min_duration_s)):
            raise UsageError(f"min duration must be >= 0 s, got {self.min_duration_s}")
        if self.target_qps is not None and not (self.target_qps > 0 and math.isfinite(self.target_qps)):
            raise UsageError(f"target QPS must be > 0, got {self.target_qps}")

    def server_qps(self) -> float:
        if self.target_qps is not None:
            return self.target_qps
        # Half the rate the pipeline can sustain: queues stay short but do form.
        return 0.5 / max(self.expected_latency_s or 0.01, 1e-4)


@dataclass(frozen=True)
class LatencyStats:
    """Per-query latency statistics of one scenario run (seconds)."""

    scenario: str
    driver: str  # "loadgen <version>" or "plain"
    count: int  # queries completed (samples, for offline)
    mean_s: float
    p50_s: float
    p90_s: float
    p95_s: float
    p99_s: float
    min_s: float
    max_s: float
    throughput_qps: float  # completed samples per second
    target_qps: float | None  # server arrival rate
    valid: str  # loadgen's verdict ("VALID"/"INVALID"), "n/a" for the plain loop
    note: str = ""

    def representative_s(self) -> float:
        """The latency a placement's prediction is compared with: the mean per-query
        latency, or for offline the time per sample (1 / throughput)."""
        if self.scenario == OFFLINE:
            return 1.0 / self.throughput_qps if self.throughput_qps > 0 else math.nan
        return self.mean_s


def parse_scenarios(text: str) -> tuple[str, ...]:
    """A comma list of scenarios, each once."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    for s in items:
        if s not in SCENARIOS:
            raise UsageError(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}")
    if not items:
        raise UsageError("--scenario: empty list")
    return tuple(dict.fromkeys(items))


def loadgen_version() -> str | None:
    """The installed LoadGen's version, or None when it cannot be imported."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError:
        return None
    try:
        from importlib.metadata import version

        return version("mlcommons-loadgen")
    except Exception:  # metadata missing in a source build: still usable
        return "unknown"


def resolve_driver(driver: str) -> str:
    if driver not in DRIVERS:
        raise UsageError(f"unknown driver {driver!r}; choose from {', '.join(DRIVERS)}")
    available = loadgen_version() is not None
    if driver == "loadgen" and not available:
        raise UsageError("--driver loadgen: mlperf_loadgen is not installed (pip install mlcommons-loadgen)")
    if driver == "auto":
        if not available:
            log.warning("mlperf_loadgen not importable: measuring with a plain timing loop instead")
        return "loadgen" if available else "plain"
    return driver


def measure(
    infer: Callable[[int], Any],
    n_samples: int,
    settings: MeasureSettings,
    driver: str = "auto",
    log_dir: Path | None = None,
) -> LatencyStats:
    """Time `infer(sample_index)` under `settings.scenario`.

    `infer` runs one query to completion; its exceptions are re-raised after the run.
    log_dir keeps LoadGen's logs (default: a temporary folder, deleted).
    """
    if n_samples < 1:
        raise UsageError("no samples to measure with")
    if resolve_driver(driver) == "loadgen":
        return _measure_loadgen(infer, n_samples, settings, log_dir)
    return _measure_plain(infer, n_samples, settings)


# ---- statistics -------------------------------------------------------------------
def stats_from_latencies(
    latencies_s: list[float] | np.ndarray,
    scenario: str,
    driver: str,
    throughput_qps: float,
    target_qps: float | None = None,
    valid: str = "n/a",
    note: str = "",
) -> LatencyStats:
    v = np.asarray(latencies_s, dtype=float)
    if v.size == 0:
        raise UsageError("no queries completed")
    # nearest-rank percentiles: always a latency that was measured
    pct = {p: float(np.percentile(v, p, method="inverted_cdf")) for p in PERCENTILES}
    return LatencyStats(
        scenario=scenario,
        driver=driver,
        count=int(v.size),
        mean_s=float(v.mean()),
        p50_s=pct[50],
        p90_s=pct[90],
        p95_s=pct[95],
        p99_s=pct[99],
        min_s=float(v.min()),
        max_s=float(v.max()),
        throughput_qps=throughput_qps,
        target_qps=target_qps,
        valid=valid,
        note=note,
    )


# ---- plain loop -------------------------------------------------------------------
def _measure_plain(infer: Callable[[int], Any], n: int, s: MeasureSettings) -> LatencyStats:
    clock = time.perf_counter
    lat: list[float] = []
    if s.scenario == SINGLE_STREAM:
        start = clock()
        i = 0
        while i < s.min_query_count or clock() - start < s.min_duration_s:
            t0 = clock()
            infer(i % n)
            lat.append(clock() - t0)
            i += 1
        total = clock() - start
        return stats_from_latencies(lat, s.scenario, "plain", len(lat) / total)
    if s.scenario == SERVER:
        qps = s.server_qps()
        count = max(s.min_query_count, math.ceil(s.min_duration_s * qps))
        rng = np.random.default_rng(s.seed)
        arrivals = np.cumsum(rng.exponential(1.0 / qps, size=count))
        start = clock()
        for i, due in enumerate(arrivals):
            wait = start + due - clock()
            if wait > 0:
                time.sleep(wait)
            infer(i % n)
            lat.append(clock() - (start + due))  # queueing behind earlier queries included
        total = clock() - start
        return stats_from_latencies(lat, s.scenario, "plain", count / total, target_qps=qps)
    count = max(s.min_query_count, math.ceil(s.min_duration_s / max(s.expected_latency_s or 1.0, 1e-4)))
    start = clock()
    for i in range(count):
        infer(i % n)
        lat.append(clock() - start)  # every sample was issued at the start
    total = clock() - start
    return stats_from_latencies(lat, s.scenario, "plain", count / total)


# ---- LoadGen ----------------------------------------------------------------------
class _Worker:
    """The system under test: one thread running queries in arrival order."""

    def __init__(self, infer: Callable[[int], Any], lg: Any) -> None:
        self._infer = infer
        self._lg = lg
        self._queue: queue.Queue[list[tuple[int, int]] | None] = queue.Queue()
        self.error: BaseException | None = None
        self.completed = 0
        self._thread = threading.Thread(target=self._run, name="dime-sut", daemon=True)
        self._thread.start()

    def issue(self, samples: list[Any]) -> None:
        # LoadGen's objects belong to its thread: keep plain (id, index) pairs.
        self._queue.put([(q.id, q.index) for q in samples])

    def _run(self) -> None:
        lg = self._lg
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            for qid, index in batch:
                if self.error is None:
                    try:
                        self._infer(index)
                    except BaseException as e:  # reported after the test; LoadGen must still finish
                        self.error = e
                lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, 0, 0)])
                self.completed += 1

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _measure_loadgen(
    infer: Callable[[int], Any], n: int, s: MeasureSettings, log_dir: Path | None
) -> LatencyStats:
    import mlperf_loadgen as lg

    version = loadgen_version() or "unknown"
    ts = lg.TestSettings()
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_query_count = s.min_query_count
    ts.min_duration_ms = int(round(s.min_duration_s * 1000))
    ts.performance_sample_count_override = n
    expected = s.expected_latency_s or 0.01
    target_qps: float | None = None
    if s.scenario == SINGLE_STREAM:
        ts.scenario = lg.TestScenario.SingleStream
        ts.single_stream_expected_latency_ns = max(1, int(expected * 1e9))
    elif s.scenario == SERVER:
        ts.scenario = lg.TestScenario.Server
        target_qps = s.server_qps()
        ts.server_target_qps = target_qps
        # validity bound only; what is reported is the measured distribution
        ts.server_target_latency_ns = max(1, int(10 * expected * 1e9))
        ts.schedule_rng_seed = s.seed
    else:
        ts.scenario = lg.TestScenario.Offline
        ts.offline_expected_qps = 1.0 / max(expected, 1e-4)

    worker = _Worker(infer, lg)
    sut = lg.ConstructSUT(worker.issue, lambda: None)
    qsl = lg.ConstructQSL(n, n, lambda idx: None, lambda idx: None)  # samples are already in memory
    tmp = None
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dime-loadgen-")
        out = Path(tmp.name)
    else:
        out = Path(log_dir)
        out.mkdir(parents=True, exist_ok=True)
    try:
        ls = lg.LogSettings()
        ls.log_output.outdir = str(out)
        ls.log_output.copy_summary_to_stdout = False
        ls.enable_trace = False
        start = time.perf_counter()
        # An audit config that does not exist: LoadGen would otherwise read ./audit.config.
        lg.StartTestWithLogSettings(sut, qsl, ts, ls, str(out / "no-audit.config"))
        elapsed = time.perf_counter() - start
        worker.stop()
        results = read_loadgen_results(out / "mlperf_log_detail.txt")
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        if tmp is not None:
            tmp.cleanup()
    if worker.error is not None:
        raise worker.error
    return _stats_from_loadgen(results, s.scenario, f"loadgen {version}", worker.completed, elapsed, target_qps)


def read_loadgen_results(path: Path) -> dict[str, Any]:
    """The `result_*` and `early_stopping_*` entries of a LoadGen detail log
    (lines `:::MLLOG {json}`)."""
    out: dict[str, Any] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise UsageError(f"LoadGen wrote no detail log at {path}: {e}") from e
    for line in text.splitlines():
        if not line.startswith(":::MLLOG"):
            continue
        try:
            rec = json.loads(line[len(":::MLLOG"):])
        except json.JSONDecodeError:
            continue
        key = rec.get("key", "")
        if key.startswith(("result_", "early_stopping_")):
            out[key] = rec.get("value")
    return out


def _stats_from_loadgen(
    r: dict[str, Any], scenario: str, driver: str, completed: int, elapsed_s: float, target_qps: float | None
) -> LatencyStats:
    def ns(key: str) -> float:
        if key not in r:
            raise UsageError(f"LoadGen's log has no {key}")
        return float(r[key]) / 1e9

    if scenario == OFFLINE:
        qps = float(r.get("result_samples_per_second", completed / elapsed_s))
    elif scenario == SERVER:
        qps = float(r.get("result_completed_samples_per_sec", completed / elapsed_s))
    else:
        qps = float(r.get("result_qps_with_loadgen_overhead", completed / elapsed_s))
    note = str(r.get("result_invalid_reason") or "").strip()
    if not note and r.get("result_validity") == "INVALID" and r.get("early_stopping_met") is False:
        note = " ".join(str(r.get("early_stopping_result", "early stopping not met")).replace("*", " ").split())
    return LatencyStats(
        scenario=scenario,
        driver=driver,
        count=completed,
        mean_s=ns("result_mean_latency_ns"),
        p50_s=ns("result_50.00_percentile_latency_ns"),
        p90_s=ns("result_90.00_percentile_latency_ns"),
        p95_s=ns("result_95.00_percentile_latency_ns"),
        p99_s=ns("result_99.00_percentile_latency_ns"),
        min_s=ns("result_min_latency_ns"),
        max_s=ns("result_max_latency_ns"),
        throughput_qps=qps,
        target_qps=target_qps,
        valid=str(r.get("result_validity", "")),
        note=note,
    )
