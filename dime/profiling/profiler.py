"""Bundle profiler: time (and meter) every bundle of 1..K consecutive layers at every
operating point, fed with the saved feature maps.

Rows are flushed once per bundle, so an interrupted run loses at most the bundle in
flight; re-running the same command resumes and skips what is done.

`python -m dime.profile --model alexnet --device-name my-cpu --torch-device cpu
 --max-bundle 8 --iterations 10 --runs 3 --threads 1,2 --samples samples/alexnet
 --out profiles/alexnet-my-cpu.csv`
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dime.capture.cliopts import add_model_arguments, check_model_files, model_from_args
from dime.capture.models import SplitModel, resolve_torch_device
from dime.capture.samples import Manifest, load_tensors
from dime.cliargs import (
    OneLineParser,
    non_negative_int,
    positive_float,
    positive_int,
    run_main,
    setup_logging,
)
from dime.core.costs import CostTable
from dime.core.costs import bundles as all_bundles
from dime.errors import ModelError, UsageError
from dime.fileio import atomic_write_text, check_output_path
from dime.profiling.predict import DEFAULT_PARAMS, Chooser, budget_for
from dime.profiling.predicted import fitted_on, measured_only, predict_profile, predicted_rows
from dime.profiling.profilefile import ProfileFile, wakeup_key
from dime.profiling.reader import latency_of_rows, load_profiles
from dime.profiling.schema import MEASURED, meta_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatingPoint:
    """One setting to profile at: its label, kind, and how to enter it."""

    label: str
    kind: str
    apply: Callable[[], None] = field(compare=False, repr=False)


@dataclass
class ProfileConfig:
    device_name: str
    torch_device: str = "cpu"
    max_bundle: int = 1
    iterations: int = 10
    runs: int = 3
    warmup: int = 3
    assume_power_w: list[float] | None = None  # one value, or one per setting
    min_window_s: float | None = None  # meter window; default: the meter's own
    idle_baseline: bool = False
    # "isolated": a bundle's runs back to back (DIME's way); "chain": each timed run follows an
    # untimed run of the layers before it, so caches hold what they hold inside a chain
    context: str = "isolated"
    bundles: str | None = None  # only these, e.g. "conv1..fc3,conv1"; default every bundle up to max_bundle
    command: str = ""
    overwrite: bool = False  # start --out afresh even if it holds other profiles
    # measure this fraction of the bundles (single layers and longest first, then those the
    # predictor is least sure of) and predict the rest; None: measure every bundle
    measure_fraction: float | None = None
    # wake-up after idling, for the cost model: every bundle also timed after WAKEUP_BUNDLE_IDLE_S
    # of idle, and a few bundles (probes) after each of these shorter idle times (s); (): not measured
    wakeup_idle_s: tuple[float, ...] = ()
    wakeup_runs: int = 8  # a probe's timed calls per idle time (every bundle: half as many, at least 2)

    @property
    def bundle_wakeup_runs(self) -> int:
        return max(2, self.wakeup_runs // 2)


CONTEXTS = ("isolated", "chain")
# Every bundle is timed after WAKEUP_BUNDLE_IDLE_S of idle: how much its own cost grows after
# idling; the probes say how much less it grows after shorter idles (dime.core.costs.WakeUp).
WAKEUP_BUNDLE_IDLE_S = 0.1
DEFAULT_WAKEUP_IDLE_S = (0.003, 0.01, 0.03)


class Timer:
    """Wall time of a call: perf_counter_ns on CPU, CUDA events on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def time_s(self, fn: Callable[[], Any], repeats: int = 1) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(repeats):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter_ns()
        for _ in range(repeats):
            fn()
        return (time.perf_counter_ns() - t0) / 1e9


def thread_points(threads: Sequence[int]) -> list[OperatingPoint]:
    for t in threads:
        if t < 1:
            raise UsageError(f"--threads: thread counts must be >= 1, got {t}")
    return [OperatingPoint(f"threads={t}", "threads", lambda t=t: torch.set_num_threads(t)) for t in threads]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_threads(threads: Sequence[int]) -> None:
    """More threads than CPUs only time-slices them: such a setting measures the scheduler."""
    cpus = usable_cpus()
    over = [t for t in threads if t > cpus]
    if over:
        raise UsageError(f"--threads {','.join(map(str, over))}: this machine lets the profiler use {cpus} CPU(s)")


def combine_points(a: list[OperatingPoint], b: list[OperatingPoint]) -> list[OperatingPoint]:
    """Cross product of two kinds of operating points (e.g. frequency x threads)."""
    if not a:
        return b
    if not b:
        return a
    out = []
    for p, q in itertools.product(a, b):
        def both(p: OperatingPoint = p, q: OperatingPoint = q) -> None:
            p.apply()
            q.apply()

        out.append(OperatingPoint(f"{p.label};{q.label}", f"{p.kind};{q.kind}", both))
    return out


def parse_bundles(model: SplitModel, text: str) -> list[tuple[int, int]]:
    """`FIRST..LAST` or `LAYER` items (names or indices), comma-separated, as (start, end)."""
    return list(dict.fromkeys((s, e) for _, s, e in parse_bundle_picks(model, text)))


def parse_bundle_picks(model: SplitModel, text: str) -> list[tuple[str | None, int, int]]:
    """`--bundles` items as (setting, start, end): `FIRST..LAST` or `LAYER` (names or indices)
    at every setting, or `...@SETTING` at that setting only."""
    out = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        span, at, setting = item.partition("@")
        first, _, last = span.strip().partition("..")
        try:
            s, e = model.index(_layer_ref(first)), model.index(_layer_ref(last or first))
        except ModelError as err:
            raise UsageError(f"--bundles {item}: {err}") from None
        if e < s:
            raise UsageError(f"--bundles {item}: {last} comes before {first}")
        if at and not setting.strip():
            raise UsageError(f"--bundles {item}: no setting after @")
        out.append((setting.strip() if at else None, s, e))
    if not out:
        raise UsageError("--bundles: empty list")
    return list(dict.fromkeys(out))


def _layer_ref(text: str) -> str | int:
    return int(text) if text.lstrip("-").isdigit() else text


def _host_info(device: torch.device) -> dict[str, str]:
    info = {"host": platform.node(), "machine": platform.machine(), "cpu": platform.processor()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["cpu_count"] = str(os.cpu_count())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def check_feature_maps(manifest: Manifest, samples: Path, model: SplitModel) -> None:
    if manifest.layer_names != list(model.layer_names):
        raise UsageError(
            f"feature maps in {samples} are for layers {manifest.layer_names[:3]}..., "
            f"not those of {model.name}; regenerate them with `python -m dime.samples`"
        )


def check_context(context: str, metered: bool) -> None:
    if context not in CONTEXTS:
        raise UsageError(f"--context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    if context == "chain" and metered:
        raise UsageError("--context chain times one run at a time; a power meter needs back-to-back repeats "
                         "(use --context isolated with --power)")


def energy_label(meter_name: str | None, assumed_power_w: Sequence[float] | None) -> str:
    """Where a profile's energy comes from, as its identity records it."""
    return meter_name or ("assumed" if assumed_power_w else "none")


def profile_identity(config: ProfileConfig, model_name: str, energy: str,
                     model: SplitModel | None = None) -> dict[str, Any]:
    """What a profile file belongs to (its .meta.json keys); without `model`, the part known
    before the model is built (its layers and weights left out)."""
    identity: dict[str, Any] = {
        "model": model_name,
        "device": config.device_name,
        "torch_device": str(resolve_torch_device(config.torch_device)),
    }
    if model is not None:
        identity.update(layers=list(model.layer_names), weights=str(model.weights))
    identity.update(iterations=config.iterations, runs=config.runs, warmup=config.warmup, context=config.context,
                    energy=energy, min_window_s=config.min_window_s, idle_baseline=config.idle_baseline)
    if config.wakeup_idle_s:
        identity["wakeup"] = {"idle_s": list(config.wakeup_idle_s), "runs": config.wakeup_runs}
    return identity


def check_profile_out(out: Path, config: ProfileConfig, identity: dict[str, Any]) -> None:
    """Refuse --out when it holds a profile of another identity (unless --overwrite), writing nothing."""
    _profile_file(out, config, identity, prepare=False).check()


def _profile_file(out: Path, config: ProfileConfig, identity: dict[str, Any], prepare: bool = True) -> ProfileFile:
    if not config.wakeup_idle_s:
        return ProfileFile(out, config.iterations * config.runs, identity, overwrite=config.overwrite, prepare=prepare)
    probes = config.wakeup_idle_s
    wake = {0.0: config.wakeup_runs * len(probes), **{t: config.wakeup_runs for t in probes}}
    return ProfileFile(out, config.iterations * config.runs, identity, overwrite=config.overwrite, prepare=prepare,
                       wakeup_rows=wake, bundle_wakeup=(WAKEUP_BUNDLE_IDLE_S, config.bundle_wakeup_runs))


def profile(
    model: SplitModel,
    samples: Path,
    out: Path,
    config: ProfileConfig,
    points: list[OperatingPoint],
    meter: Any = None,
    progress: bool = True,
    choose: Chooser | None = None,
) -> dict[str, Any]:
    """Profile every bundle of 1..max_bundle layers at every operating point (with
    config.measure_fraction: that fraction of them, chosen by `choose`, the rest predicted; a
    file that held predicted rows has them predicted again after measuring)."""
    from tqdm import tqdm

    manifest = Manifest.load(samples)
    check_feature_maps(manifest, samples, model)
    n = len(model.layer_names)
    if not 1 <= config.max_bundle:
        raise UsageError("--max-bundle must be >= 1")
    k = min(config.max_bundle, n)
    picks = parse_bundle_picks(model, config.bundles) if config.bundles else [(None, s, e) for s, e in all_bundles(n, k)]
    bundles = list(dict.fromkeys((s, e) for _, s, e in picks))
    unknown = [t for t, _, _ in picks if t is not None and t not in {p.label for p in points}]
    if unknown:
        raise UsageError(f"--bundles: no setting {unknown[0]!r} in this profile; its settings: "
                         f"{', '.join(p.label for p in points)}")
    if config.bundles:
        k = max(e - s + 1 for s, e in bundles)
        if config.measure_fraction is not None:
            raise UsageError("--measure chooses the bundles itself; drop --bundles")
    if config.measure_fraction is not None and not 0 < config.measure_fraction <= 1:
        raise UsageError(f"--measure must be a fraction in (0, 1], got {config.measure_fraction:g}")
    if config.measure_fraction is not None and choose is None:
        raise UsageError("--measure needs a chooser of the bundles: run it as `python -m dime.profile`")
    if any(not 0 < t < WAKEUP_BUNDLE_IDLE_S for t in config.wakeup_idle_s) or config.wakeup_runs < 1:
        raise UsageError(f"--wakeup: idle times in (0, {WAKEUP_BUNDLE_IDLE_S:g}) s, and --wakeup-runs >= 1")
    if config.iterations < 1 or config.runs < 1 or config.warmup < 0:
        raise UsageError("--iterations and --runs must be >= 1, --warmup >= 0")
    powers = config.assume_power_w
    if powers is not None and len(powers) not in (1, len(points)):
        raise UsageError(f"--assume-power: give one value or one per setting ({len(points)})")
    device = resolve_torch_device(config.torch_device)
    check_context(config.context, meter is not None)
    host = _host_info(device)
    identity = profile_identity(config, model.name, energy_label(meter.name if meter else None, powers), model)
    pfile = _profile_file(out, config, identity)
    meta = {
        **identity,
        "max_bundle": max(k, pfile.predicted_max_bundle),
        "settings": [p.label for p in points],
        "feature_maps": manifest.image_source,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "command": config.command,
        **host,
    }
    atomic_write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")
    timer = Timer(device)
    fraction = config.measure_fraction
    per_point = budget_for(fraction, n, k) if fraction is not None else len(bundles)
    total = len(points) * per_point if fraction is not None else sum(len(points) if t is None else 1 for t, _, _ in picks)
    probes = wakeup_probes(n, bundles if fraction is None else all_bundles(n, k)) if config.wakeup_idle_s else []
    total += len(points) * len(probes)
    bar = tqdm(total=total, desc=f"profile {model.name}", unit="bundle", disable=not progress, file=sys.stderr)
    counts = {"profiled": 0, "skipped": 0}

    def measure(p_i: int, wanted: Sequence[tuple[int, int]], latency: _MeasuredLatency | None = None) -> None:
        """Time the bundles of `wanted` not yet in the file, at points[p_i], in start order
        (and tell `latency` what they took)."""
        point = points[p_i]
        todo = [b for b in wanted if (model.name, config.device_name, point.label, model.bundle_name(*b)) not in pfile.done]
        counts["skipped"] += len(wanted) - len(todo)
        bar.update(len(wanted) - len(todo))
        if not todo:
            return
        point.apply()
        inputs_by_start: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        model_inputs = _load_inputs(samples, manifest, model.layer_names[0], device) if config.context == "chain" else []
        idle_w = _idle_power_w(meter, config) if (meter and config.idle_baseline) else None
        for s, e in todo:
            if s not in inputs_by_start:
                inputs_by_start = {s: _load_inputs(samples, manifest, model.layer_names[s], device)}
            rows = _profile_bundle(model, s, e, inputs_by_start[s], device, timer, config, point, meter, idle_w,
                                   powers[p_i if len(powers) > 1 else 0] if powers else None, model_inputs)
            pfile.append(rows)
            pfile.done.add((model.name, config.device_name, point.label, model.bundle_name(s, e)))
            if latency is not None:
                latency.add((s, e), rows)
            counts["profiled"] += 1
            bar.update(1)

    def wake(p_i: int) -> None:
        """Time the probes after each idle time, at points[p_i] (those not yet in the file)."""
        point = points[p_i]
        for s, e in probes:
            keys = {(model.name, config.device_name, point.label, wakeup_key(model.bundle_name(s, e), t))
                    for t in (0.0, *config.wakeup_idle_s)}
            if keys <= pfile.done:
                counts["skipped"] += 1
                bar.update(1)
                continue
            point.apply()
            inputs = _load_inputs(samples, manifest, model.layer_names[s], device)
            pfile.append(_wakeup_rows(model, s, e, inputs, device, timer, config, point))
            pfile.done |= keys
            counts["profiled"] += 1
            bar.update(1)

    for p_i, point in enumerate(points):
        if fraction is None or choose is None:
            measure(p_i, [(s, e) for t, s, e in picks if t in (None, point.label)])
        else:
            latency = _MeasuredLatency(out, model.name, config.device_name, point.label)
            for chosen in choose(n, k, model.cut_bytes, per_point, latency):
                measure(p_i, sorted(chosen), latency)
        wake(p_i)
    bar.close()
    summary = {"bundles": per_point if fraction is not None else len(bundles), "settings": len(points), **counts,
               "predicted": 0}
    if fraction is not None or pfile.predicted_max_bundle:
        k_all = max(k, pfile.predicted_max_bundle)
        table = measured_only(load_profiles([out], model=model.name))
        predicted = predict_profile(table, k_all)
        pfile.replace_predictions(predicted_rows(table, predicted))
        meta.update(max_bundle=k_all, prediction=predicted.meta(DEFAULT_PARAMS, k_all, [str(out), *fitted_on(table)]))
        if fraction is not None and choose is not None:
            meta["measure"] = fraction
            meta["measure_choice"] = choose.describe()
        atomic_write_text(meta_path(out), json.dumps(meta, indent=2) + "\n")
        summary["predicted"] = len(predicted.costs)
    return summary


class _MeasuredLatency:
    """The latency of a bundle measured at one setting (a chooser's `value`), as the reader
    would read it from `out`: for bundles timed in this run from the rows written (the same
    text, parsed and trimmed alike), for those already in the file from the file as it was,
    read once. A run and its resumption thus see the same numbers."""

    def __init__(self, out: Path, model: str, device: str, setting: str) -> None:
        self.out, self.model, self.device, self.setting = out, model, device, setting
        self.before: CostTable | None = None
        self.fresh: dict[tuple[int, int], float] = {}

    def add(self, bundle: tuple[int, int], rows: Sequence[dict[str, Any]]) -> None:
        self.fresh[bundle] = latency_of_rows([r["latency_s"] for r in rows if not r.get("idle_s")])

    def __call__(self, bundle: tuple[int, int]) -> float:
        if bundle in self.fresh:
            return self.fresh[bundle]
        if self.before is None:
            self.before = load_profiles([self.out], model=self.model)
        return self.before.costs[(self.device, self.setting, *bundle)].latency_s


def _load_inputs(samples: Path, manifest: Manifest, layer: str, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    folder = samples / layer
    out = []
    for sid in manifest.images:
        path = folder / f"{sid}.pt"
        if not path.is_file():
            raise UsageError(f"feature map missing: {path}; rerun `python -m dime.samples`")
        out.append(tuple(t.to(device) for t in load_tensors(path)))
    return out


def _idle_power_w(meter: Any, config: ProfileConfig) -> float:
    window = config.min_window_s or meter.min_window_s
    e0, t0 = meter.energy_j(), time.monotonic()
    time.sleep(window)
    return (meter.energy_j() - e0) / (time.monotonic() - t0)


def param_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (each shared tensor once)."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _profile_bundle(
    model: SplitModel,
    s: int,
    e: int,
    inputs: list[tuple[torch.Tensor, ...]],
    device: torch.device,
    timer: Timer,
    config: ProfileConfig,
    point: OperatingPoint,
    meter: Any,
    idle_w: float | None,
    assumed_w: float | None,
    model_inputs: Sequence[tuple[torch.Tensor, ...]] = (),
) -> list[dict[str, Any]]:
    mod = model.bundle(s, e).to(device)  # built once per bundle and setting
    prefix = model.bundle(0, s - 1).to(device) if (s > 0 and model_inputs) else None

    def bundle_input(i: int) -> tuple[torch.Tensor, ...]:
        if prefix is None:
            return inputs[i % len(inputs)]
        out = prefix(*model_inputs[i % len(model_inputs)])  # untimed: puts caches in the chain's state
        if timer.cuda:
            torch.cuda.synchronize()
        return out

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common = {
        "model": model.name,
        "device": config.device_name,
        "setting": point.label,
        "setting_kind": point.kind,
        "bundle": model.bundle_name(s, e),
        "start": model.layer_names[s],
        "end": model.layer_names[e],
        "in_bytes": model.cut_bytes[s],
        "out_bytes": model.cut_bytes[e + 1],
        "param_bytes": param_bytes(mod),
        "latency_source": MEASURED,
        "torch_device": str(device),
        "host": platform.node(),
        "torch_version": torch.__version__,
        "timestamp": stamp,
    }
    rows = []
    with torch.inference_mode():
        warm = 0.0
        for w in range(config.warmup):
            x = bundle_input(w)
            warm = timer.time_s(lambda: mod(*x))
        repeats = 1
        if meter is not None:
            window = config.min_window_s or meter.min_window_s
            est = warm or timer.time_s(lambda: mod(*inputs[0]))
            repeats = max(1, math.ceil(window / max(est, 1e-7)))
        for run in range(config.runs):
            for it in range(config.iterations):
                x = bundle_input(it)
                e0 = meter.energy_j() if meter is not None else 0.0
                t0 = time.monotonic()
                elapsed = timer.time_s(lambda: mod(*x), repeats)
                t1 = time.monotonic()
                latency = elapsed / repeats
                row = dict(common, iteration=it, run=run, latency_s=f"{latency:.9g}", t_start_s=f"{t0:.6f}",
                           t_end_s=f"{t1:.6f}", repeats=repeats, energy_j="", energy_source="",
                           energy_total_j="", idle_power_w="", clock_offset_s="")
                if getattr(meter, "deferred", False):
                    # energy comes later from `dime energy join` over [t_start_s, t_end_s]
                    row["energy_source"] = meter.name
                    if getattr(meter, "offset_s", None) is not None:
                        row["clock_offset_s"] = f"{meter.offset_s:.6f}"
                    rows.append(row)
                    continue
                if meter is not None:
                    total = (meter.energy_j() - e0) / repeats
                    if math.isfinite(total):
                        row["energy_source"] = meter.name
                        if idle_w is not None:
                            row["energy_total_j"] = f"{total:.9g}"
                            row["idle_power_w"] = f"{idle_w:.6g}"
                            total -= idle_w * latency
                        row["energy_j"] = f"{total:.9g}"
                elif assumed_w is not None:
                    row["energy_j"] = f"{assumed_w * latency:.9g}"
                    row["energy_source"] = f"assumed:{assumed_w:g}"
                rows.append(row)
        if config.wakeup_idle_s:
            # the same calls after idling (no energy: one call is below any meter's window)
            for run in range(config.bundle_wakeup_runs):
                x = bundle_input(run)
                time.sleep(WAKEUP_BUNDLE_IDLE_S)
                t0 = time.monotonic()
                elapsed = timer.time_s(lambda: mod(*x))
                rows.append(dict(common, iteration=run, run=0, latency_s=f"{elapsed:.9g}", t_start_s=f"{t0:.6f}",
                                 t_end_s=f"{time.monotonic():.6f}", repeats=1, energy_j="",
                                 idle_s=f"{WAKEUP_BUNDLE_IDLE_S:g}"))
    return rows


def wakeup_probes(n_layers: int, bundles: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The bundles a wake-up pass times: at a third and two thirds of the chain and at its
    start, the longest profiled bundle starting there (or the next start that has one)."""
    out: list[tuple[int, int]] = []
    for at in dict.fromkeys((0, n_layers // 3, 2 * n_layers // 3)):
        here = [b for b in bundles if b[0] >= at]
        if here:
            first = min(s for s, _ in here)
            pick = max((b for b in here if b[0] == first), key=lambda b: b[1])
            if pick not in out:
                out.append(pick)
    return out


def _wakeup_rows(model: SplitModel, s: int, e: int, inputs: list[tuple[torch.Tensor, ...]], device: torch.device,
                 timer: Timer, config: ProfileConfig, point: OperatingPoint) -> list[dict[str, Any]]:
    """One call after each of the probes' idle times, then one right after it (the reference,
    idle_s 0), for config.wakeup_runs rounds. No energy: a single call is below any meter's window; the cost
    model prices the extra time at the bundle's measured power."""
    mod = model.bundle(s, e).to(device)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    common = {
        "model": model.name, "device": config.device_name, "setting": point.label, "setting_kind": point.kind,
        "bundle": model.bundle_name(s, e), "start": model.layer_names[s], "end": model.layer_names[e],
        "in_bytes": model.cut_bytes[s], "out_bytes": model.cut_bytes[e + 1], "param_bytes": param_bytes(mod),
        "latency_source": MEASURED, "torch_device": str(device), "host": platform.node(),
        "torch_version": torch.__version__, "timestamp": stamp, "repeats": 1, "energy_j": "",
    }
    rows: list[dict[str, Any]] = []
    calls = 0
    with torch.inference_mode():
        for w in range(max(config.warmup, 1)):
            timer.time_s(lambda: mod(*inputs[w % len(inputs)]))
        for run in range(config.wakeup_runs):
            for it, idle in enumerate(config.wakeup_idle_s):
                for wait in (idle, 0.0):
                    x = inputs[calls % len(inputs)]
                    calls += 1
                    if wait:
                        time.sleep(wait)
                    t0 = time.monotonic()
                    elapsed = timer.time_s(lambda: mod(*x))
                    rows.append(dict(common, iteration=it, run=run, idle_s=f"{wait:g}", latency_s=f"{elapsed:.9g}",
                                     t_start_s=f"{t0:.6f}", t_end_s=f"{time.monotonic():.6f}"))
    return rows


def _float_list(text: str, flag: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not vals or any(not (v >= 0 and math.isfinite(v)) for v in vals):
        raise UsageError(f"{flag}: expected non-negative numbers, got {text!r}")
    return vals


def _idle_times(text: str) -> tuple[float, ...]:
    vals = _float_list(text, "--wakeup")
    if any(not 0 < v < WAKEUP_BUNDLE_IDLE_S for v in vals):
        raise UsageError(f"--wakeup: idle times in (0, {WAKEUP_BUNDLE_IDLE_S:g}) s (every bundle is timed after "
                         f"{WAKEUP_BUNDLE_IDLE_S:g} s, and the cost model goes no further), got {text!r}")
    return tuple(sorted(set(vals)))


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _measure_fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="dime profile", description="Profile every bundle of consecutive layers.")
    add_model_arguments(p)  # as given to dime.samples
    p.add_argument("--device-name", help="name of this device in the profile, e.g. jetson-nano (default: host name)")
    p.add_argument("--torch-device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--max-bundle", type=positive_int, default=None, help="longest bundle in layers (default: all layers)")
    p.add_argument("--bundles", metavar="LIST",
                   help="profile only these bundles: FIRST..LAST or LAYER, names or indices, comma-separated; "
                        "ITEM@SETTING: at that setting only")
    p.add_argument("--measure", type=_measure_fraction, metavar="FRACTION",
                   help="measure only this fraction of the bundles at each setting (e.g. 0.25): the single layers "
                        "and the longest bundles first, then, one round at a time, those that plans of stand-in "
                        "problems rest on (dime.plan.choose), then those the predictor is least sure of; the rest "
                        "are predicted (rows marked latency_source=predicted, with latency_sd_s)")
    p.add_argument("--refine", metavar="SOLUTION.json",
                   help="measure the predicted bundles that dime.solve's plan (its --json) and its best "
                        "alternatives rest on, re-solve, repeat (python -m dime.profile only; see dime.refine)")
    p.add_argument("--refine-budget", type=positive_int, default=10, metavar="N",
                   help="with --refine: measure at most N bundle/setting pairs in all (default 10)")
    p.add_argument("--iterations", type=positive_int, default=10, help="timed calls per run, cycling over the samples")
    p.add_argument("--runs", type=positive_int, default=3, help="runs per bundle")
    p.add_argument("--warmup", type=non_negative_int, default=3, help="untimed calls before timing each bundle")
    p.add_argument("--threads", help="CPU thread counts to profile as settings, e.g. 1,2")
    p.add_argument("--dvfs", default="none", choices=["none", "cpufreq", "jetson-gpu", "nvml-gpu"],
                   help="operating-point controller (frequencies)")
    p.add_argument("--settings", default="all", help="frequencies (Hz) to profile, comma-separated, or all")
    p.add_argument("--sysfs-root", default="/", help="root of /sys (for tests and containers)")
    p.add_argument("--power", default="none", choices=["none", "nvml", "jetson", "rapl", "smartpower3"],
                   help="power meter")
    p.add_argument("--nvml-index", type=non_negative_int, metavar="N",
                   help="NVML index of the GPU to meter (default: N of --torch-device cuda:N, else 0)")
    p.add_argument("--powerlog", help="HOST:PORT of the smartpower3 logger (python -m dime.powerlog serve)")
    p.add_argument("--min-window", type=positive_float, help="least measured window per run in s (default: per meter)")
    p.add_argument("--idle-baseline", action="store_true", help="subtract idle power at the same setting")
    p.add_argument("--assume-power", help="no meter: energy = W x latency; one W or one per setting")
    p.add_argument("--context", choices=CONTEXTS, default="isolated",
                   help="isolated: time each bundle back to back (default); chain: before each timed run, run "
                        "the layers before the bundle untimed, as in a chain of bundles on one device")
    p.add_argument("--wakeup", nargs="?", const=",".join(f"{t:g}" for t in DEFAULT_WAKEUP_IDLE_S), metavar="IDLE_S",
                   help="also time every bundle after the device idled 0.1 s, and three bundles after each of "
                        "these shorter idle times (comma-separated seconds; default "
                        f"{','.join(f'{t:g}' for t in DEFAULT_WAKEUP_IDLE_S)}): the cost model then adds what "
                        "a device's bundles take longer after idling, as the devices of split placements do")
    p.add_argument("--wakeup-runs", type=positive_int, default=8, metavar="N",
                   help="with --wakeup: timed calls per idle time of the three bundles (default 8); every bundle "
                        "gets half as many (at least 2) after 0.1 s")
    p.add_argument("--samples", type=Path, help="feature maps folder (default samples/<model>)")
    p.add_argument("--out", type=Path, help="profile CSV to write or resume (default results/profiles/<model>-<device>.csv)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds profiles of another model, device or parameters")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def _controller_points(args: argparse.Namespace, stack: ExitStack) -> list[OperatingPoint]:
    if args.dvfs == "none":
        return []
    from dime.profiling.device import make_controller

    ctl = stack.enter_context(make_controller(args.dvfs, sysfs_root=args.sysfs_root))
    available = ctl.settings()
    if args.settings == "all":
        chosen = available
    else:
        chosen = [s.strip() for s in args.settings.split(",") if s.strip()]
        unknown = [s for s in chosen if s not in available]
        if unknown:
            raise UsageError(f"--settings {','.join(unknown)} not available; choose from {','.join(available)}")
    return [OperatingPoint(s, ctl.kind, lambda s=s: ctl.apply(s)) for s in chosen]


def _nvml_index(args: argparse.Namespace) -> int:
    """The GPU to meter: --nvml-index, else N of --torch-device cuda:N (CUDA and NVML count
    alike unless CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER say otherwise), else 0."""
    if args.nvml_index is not None:
        if args.nvml_index < 0:
            raise UsageError(f"--nvml-index must be >= 0, got {args.nvml_index}")
        return args.nvml_index
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        log.warning("CUDA_VISIBLE_DEVICES is set: CUDA's GPU numbers may not be NVML's; give --nvml-index")
    try:
        dev = torch.device(args.torch_device)
    except RuntimeError:
        return 0
    return (dev.index or 0) if dev.type == "cuda" else 0


def main(argv: Sequence[str] | None = None, choose: Chooser | None = None) -> int:
    """The command; `choose` picks the bundles of --measure (dime.profile passes the planner's)."""
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else 0)
    if args.refine:
        raise UsageError("--refine re-solves as well: run it as `python -m dime.profile` or `dime profile`")
    if args.measure is not None and choose is None:
        raise UsageError("--measure plans what to measure as well: run it as `python -m dime.profile` or `dime profile`")
    if args.power != "none" and args.assume_power:
        raise UsageError("--assume-power is for devices without a meter; drop it or --power")
    threads = _int_list(args.threads, "--threads") if args.threads else []
    _check_threads(threads)
    wakeup = _idle_times(args.wakeup) if args.wakeup else ()
    check_context(args.context, args.power != "none")
    if args.powerlog and args.power != "smartpower3":
        raise UsageError("--powerlog is for --power smartpower3")
    if args.idle_baseline and args.power == "smartpower3":
        raise UsageError("--idle-baseline needs energy on this device; with smartpower3 use "
                         "`dime energy join --idle-power-w` instead")
    # Every check of the output and the inputs comes before the model is built (the model's
    # name is --model's): a refusal comes at once, and alone.
    file_name = args.model.replace(":", "_")
    samples = args.samples or Path("samples") / file_name
    device_name = args.device_name or platform.node() or "this-host"
    out = check_output_path(args.out or Path("results") / "profiles" / f"{file_name}-{device_name}.csv", "--out")
    check_model_files(args)
    manifest = Manifest.load(samples)
    if manifest.model != args.model:
        raise UsageError(f"feature maps in {samples} are of {manifest.model}, not {args.model}; give its --samples, "
                         f"or regenerate them with `python -m dime.samples`")
    config = ProfileConfig(
        device_name=device_name,
        torch_device=args.torch_device,
        max_bundle=args.max_bundle or 1,
        iterations=args.iterations,
        runs=args.runs,
        warmup=args.warmup,
        assume_power_w=_float_list(args.assume_power, "--assume-power") if args.assume_power else None,
        min_window_s=args.min_window,
        idle_baseline=args.idle_baseline,
        context=args.context,
        bundles=args.bundles,
        overwrite=args.overwrite,
        measure_fraction=args.measure,
        wakeup_idle_s=wakeup,
        wakeup_runs=args.wakeup_runs,
        command=" ".join(shlex.quote(a) for a in ["python", "-m", "dime.profile", *(argv if argv is not None else sys.argv[1:])]),
    )
    energy = energy_label(None if args.power == "none" else args.power, config.assume_power_w)
    check_profile_out(out, config, profile_identity(config, args.model, energy))
    model = model_from_args(args)
    check_profile_out(out, config, profile_identity(config, model.name, energy, model))  # its layers and weights
    check_feature_maps(manifest, samples, model)
    config = dataclasses.replace(config, max_bundle=args.max_bundle or len(model.layer_names))
    log.info("%s: %d layers", model.name, len(model.layer_names))
    for line in model.describe():
        log.info("%s", line)
    out.parent.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    with ExitStack() as stack:
        stack.callback(torch.set_num_threads, threads_before)
        points = combine_points(
            _controller_points(args, stack),
            thread_points(threads) if threads else [],
        ) or [OperatingPoint("default", "default", lambda: None)]
        meter = None
        if args.power != "none":
            from dime.profiling.meters import make_meter

            kw: dict[str, Any] = {"endpoint": args.powerlog} if args.powerlog else {}
            if args.power == "nvml":
                kw["device_index"] = _nvml_index(args)
            meter = make_meter(args.power, sysfs_root=args.sysfs_root, **kw)
            if meter is None:
                raise UsageError(f"--power {args.power}: no such meter on this machine (see the log above)")
            meter.start()
            stack.callback(meter.stop)
        summary = profile(model, samples, out, config, points, meter, progress=not args.quiet, choose=choose)
    if not args.quiet:
        print(
            f"{model.name} on {device_name}: {summary['profiled']} bundle/setting pairs profiled, "
            f"{summary['skipped']} already done; {summary['bundles']} bundles x {summary['settings']} settings "
            f"in {out}" + (f"; {summary['predicted']} bundle/setting pairs predicted" if summary["predicted"] else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
