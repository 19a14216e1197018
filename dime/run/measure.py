"""Latency and throughput of a system under test, with MLPerf LoadGen when available.

Scenarios (MLPerf's names):
    single-stream  one query at a time, the next issued when the last completes;
                   reports latency percentiles (the figure a placement predicts).
    server         queries arrive as a Poisson process at a target QPS; latency
                   includes queueing behind earlier queries.
    offline        every sample issued at once; reports throughput.

The system under test is `issue(sample_index, done)`: it starts a query and calls
`done(error)` when the query completes (error None) or fails. It may hold several queries
at once (a pipeline with several in flight) and queues what it cannot start yet, so
server latency includes queueing and offline throughput is what the pipeline sustains.
`measure(infer, ...)` wraps a blocking `infer(sample_index)` as a system that runs one
query at a time.

Warm-up queries are the caller's business: measure() times only what it issues.
When `mlperf_loadgen` (PyPI: mlcommons-loadgen) cannot be imported, a plain loop issues
the same scenarios and computes the same statistics.
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
    expected_qps: float | None = None  # offline: a hint for how many samples to issue
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

    def offline_expected_qps(self) -> float:
        return self.expected_qps or 1.0 / max(self.expected_latency_s or 0.01, 1e-4)

    def server_qps(self) -> float:
        if self.target_qps is not None:
            return self.target_qps
        # Half the rate one query at a time sustains: queues stay short but do form.
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


Done = Callable[[BaseException | None], None]
Issue = Callable[[int, Done], None]


def measure(
    infer: Callable[[int], Any],
    n_samples: int,
    settings: MeasureSettings,
    driver: str = "auto",
    log_dir: Path | None = None,
) -> LatencyStats:
    """Time a blocking `infer(sample_index)`, one query at a time, under `settings.scenario`."""
    serial = SerialSystem(infer)
    try:
        return measure_system(serial.issue, n_samples, settings, driver, log_dir)
    finally:
        serial.stop()


def measure_system(
    issue: Issue,
    n_samples: int,
    settings: MeasureSettings,
    driver: str = "auto",
    log_dir: Path | None = None,
) -> LatencyStats:
    """Time the system `issue(sample_index, done)` under `settings.scenario`.

    A query that fails (done(error)) ends the measurement with that error, after LoadGen
    has been let finish. log_dir keeps LoadGen's logs (default: a temporary folder, deleted).
    """
    if n_samples < 1:
        raise UsageError("no samples to measure with")
    if resolve_driver(driver) == "loadgen":
        return _measure_loadgen(issue, n_samples, settings, log_dir)
    return _measure_plain(issue, n_samples, settings)


class SerialSystem:
    """A blocking infer(index) as a system under test: one thread runs queries in arrival order."""

    def __init__(self, infer: Callable[[int], Any]) -> None:
        self._infer = infer
        self._queue: queue.Queue[tuple[int, Done] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dime-sut", daemon=True)
        self._thread.start()

    def issue(self, index: int, done: Done) -> None:
        self._queue.put((index, done))

    def _run(self) -> None:
        failed: BaseException | None = None
        while True:
            item = self._queue.get()
            if item is None:
                return
            index, done = item
            if failed is None:
                try:
                    self._infer(index)
                except BaseException as e:  # reported to the measurement; later queries fail at once
                    failed = e
            done(failed)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _Waiter:
    """Completion times of issued queries, and the first error."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.done_at: dict[int, float] = {}
        self.error: BaseException | None = None

    def callback(self, key: int) -> Done:
        def done(error: BaseException | None) -> None:
            with self._cv:
                self.done_at[key] = time.perf_counter()
                if error is not None and self.error is None:
                    self.error = error
                self._cv.notify_all()
        return done

    def wait(self, count: int) -> None:
        with self._cv:
            while len(self.done_at) < count and self.error is None:
                self._cv.wait(0.5)
            if self.error is not None:
                raise self.error


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
def _measure_plain(issue: Issue, n: int, s: MeasureSettings) -> LatencyStats:
    clock = time.perf_counter
    w = _Waiter()
    if s.scenario == SINGLE_STREAM:
        starts = []
        start = clock()
        i = 0
        while i < s.min_query_count or clock() - start < s.min_duration_s:
            starts.append(clock())
            issue(i % n, w.callback(i))
            w.wait(i + 1)
            i += 1
        total = clock() - start
        lat = [w.done_at[k] - t0 for k, t0 in enumerate(starts)]
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
            if w.error is not None:
                raise w.error
            issue(i % n, w.callback(i))
        w.wait(count)
        total = max(w.done_at.values()) - start
        # queueing behind earlier queries included: from the arrival to the completion
        lat = [w.done_at[i] - (start + due) for i, due in enumerate(arrivals)]
        return stats_from_latencies(lat, s.scenario, "plain", count / total, target_qps=qps)
    count = max(s.min_query_count, math.ceil(s.min_duration_s * s.offline_expected_qps()))
    start = clock()
    for i in range(count):
        issue(i % n, w.callback(i))  # every sample is issued at the start
    w.wait(count)
    total = max(w.done_at.values()) - start
    return stats_from_latencies([w.done_at[i] - start for i in range(count)], s.scenario, "plain", count / total)


# ---- LoadGen ----------------------------------------------------------------------
class _LoadGenSUT:
    """LoadGen's system under test: its queries go to `issue`, completions back to LoadGen."""

    def __init__(self, issue: Issue, lg: Any) -> None:
        self._issue = issue
        self._lg = lg
        self.error: BaseException | None = None
        self.completed = 0
        self._lock = threading.Lock()

    def issue_queries(self, samples: list[Any]) -> None:
        # LoadGen's objects belong to its thread: keep plain (id, index) pairs.
        for qid, index in [(q.id, q.index) for q in samples]:
            self._issue(index, self._done(qid))

    def _done(self, qid: int) -> Done:
        def done(error: BaseException | None) -> None:
            with self._lock:
                if error is not None and self.error is None:
                    self.error = error
                self.completed += 1
            # a failed query is still completed, so that LoadGen finishes
            self._lg.QuerySamplesComplete([self._lg.QuerySampleResponse(qid, 0, 0)])
        return done


def _measure_loadgen(issue: Issue, n: int, s: MeasureSettings, log_dir: Path | None) -> LatencyStats:
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
        ts.offline_expected_qps = s.offline_expected_qps()

    sut_impl = _LoadGenSUT(issue, lg)
    sut = lg.ConstructSUT(sut_impl.issue_queries, lambda: None)
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
        results = read_loadgen_results(out / "mlperf_log_detail.txt")
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        if tmp is not None:
            tmp.cleanup()
    if sut_impl.error is not None:
        raise sut_impl.error
    return _stats_from_loadgen(results, s.scenario, f"loadgen {version}", sut_impl.completed, elapsed, target_qps)


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
