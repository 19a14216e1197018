"""Pareto-front figures of sweep rows (matplotlib, without pyplot)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

from dime.errors import UsageError
from dime.sweep.baselines import (
    ALL_CLOUD,
    ALL_EDGE,
    DIME_EDGE_FASTEST,
    DIME_EDGE_SLOWEST,
    LAYERWISE,
    LAYERWISE_ENERGY,
    NEUROSURGEON,
)
from dime.plan.energy import energy_note
from dime.sweep.rows import BASELINE, CELL_FAILED, ENERGY_SWEEP, LATENCY_SWEEP, SweepRow

# name -> (marker, colour, size, label); larger markers are drawn below smaller ones so
# that baselines landing on the same point stay visible.
_BASELINE_STYLE: dict[str, tuple[str, str, float, str]] = {
    ALL_EDGE: ("^", "tab:green", 40, "all on edge"),
    ALL_CLOUD: ("s", "tab:red", 40, "all in cloud"),
    NEUROSURGEON: ("D", "tab:purple", 80, "best single split (Neurosurgeon)"),
    LAYERWISE: ("v", "tab:brown", 60, "layer-wise, min latency (JointDNN)"),
    LAYERWISE_ENERGY: ("<", "tab:pink", 60, "layer-wise, min energy (JointDNN)"),
    DIME_EDGE_FASTEST: ("P", "tab:olive", 55, "DIME, edge at fastest setting"),
    DIME_EDGE_SLOWEST: ("X", "tab:cyan", 55, "DIME, edge at slowest setting"),
}
# All on one device of a system file: one colour per device, in the order they appear.
_DEVICE_COLOURS = ("tab:green", "tab:red", "tab:orange", "tab:gray", "tab:olive", "tab:cyan", "gold", "navy")


def _style(name: str, devices: list[str]) -> tuple[str, str, float, str]:
    """Marker, colour, size and legend label of a baseline (see baselines.all_on, dime_fixed)."""
    if name in _BASELINE_STYLE:
        return _BASELINE_STYLE[name]
    if name.startswith("all-"):
        device = name[len("all-"):]
        if device not in devices:
            devices.append(device)
        return ("^" if len(devices) == 1 else "s", _DEVICE_COLOURS[(devices.index(device)) % len(_DEVICE_COLOURS)],
                40, f"all on {device}")
    for which, base in (("fastest", DIME_EDGE_FASTEST), ("slowest", DIME_EDGE_SLOWEST)):
        if name.startswith("dime-") and name.endswith(f"-{which}"):
            marker, colour, size, _ = _BASELINE_STYLE[base]
            return marker, colour, size, f"DIME, {name[len('dime-'):-len(which) - 1]} at {which} setting"
    return "*", "black", 50, name


def _energy_axis(rows: Sequence[SweepRow]) -> str:
    """Whose energy the rows count: "edge energy" for two devices, else "energy of a, b"."""
    whose = list(dict.fromkeys(r.energy_of for r in rows if r.energy_of))
    return "edge energy" if whose in ([], ["edge"]) else f"energy of {' / '.join(whose)}"


def _semantics(rows: Sequence[SweepRow]) -> str:
    kinds = dict.fromkeys(r.bundle_sum for r in rows)
    return " and ".join("bundle sums (DIME semantics, no merge rule)" if k else "merge rule" for k in kinds)


def plot_rows(rows: Sequence[SweepRow], path: str | os.PathLike, dpi: int = 100) -> None:
    """Latency vs edge energy, one panel per (model, link): the DIME front and the baselines.

    Baselines are drawn where they really land (bundle profiles); a hollow marker joined
    by a dotted line shows the layer-sum estimate when it differs by more than 1%.
    """
    new_figure = _figure_class()
    ok = [r for r in rows if r.latency_s is not None and r.energy_j is not None]
    models = list(dict.fromkeys(r.model for r in rows))
    links = list(dict.fromkeys(r.link for r in rows))
    if not models or not links:
        raise UsageError("nothing to plot: no rows")
    width_in = 4.6 * len(links)
    fig = new_figure(figsize=(width_in, 3.4 * len(models) + 1.3), layout="constrained")
    axes = fig.subplots(len(models), len(links), squeeze=False)
    handles: dict[str, Any] = {}
    devices: list[str] = []  # all-<device> baselines seen, for their colours
    what = _energy_axis(rows)
    # One unit per figure: ms/mJ when every DIME point is below 1 s/1 J.
    front = [r for r in ok if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)] or ok
    t_unit, sx = ("ms", 1e3) if front and max(r.latency_s for r in front) < 1 else ("s", 1.0)
    e_unit, sy = ("mJ", 1e3) if front and max(r.energy_j for r in front) < 1 else ("J", 1.0)
    for mi, model in enumerate(models):
        for li, link in enumerate(links):
            ax = axes[mi][li]
            cell = [r for r in ok if r.model == model and r.link == link]
            failed = [r for r in rows if r.model == model and r.link == link and r.sweep == CELL_FAILED]
            ks = sorted({r.max_bundle for r in rows if r.model == model and r.link == link})
            title = f"{model}, link {link}, max bundle {'/'.join(map(str, ks))}"
            if len(title) > 45:  # a system's link setting: the link on a line of its own
                title = f"{model}, max bundle {'/'.join(map(str, ks))}\nlink {link}"
            ax.set_title(title, fontsize=10 if len(link) <= 45 else 8)
            ax.set_xlabel(f"latency [{t_unit}]")
            ax.set_ylabel(f"{what} [{e_unit}]")
            ax.grid(True, alpha=0.3)
            if failed or not cell:
                ax.text(0.5, 0.5, "failed: " + (failed[0].error[:60] if failed else "no points"),
                        ha="center", va="center", transform=ax.transAxes, fontsize=8, wrap=True)
                continue
            _plot_cell(ax, cell, handles, sx, sy, devices)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=max(1, min(4, len(handles), int(width_in / 3))), fontsize=8, frameon=False)
    roles = dict.fromkeys(f"edge {r.edge} ({r.edge_settings}), cloud {r.cloud} ({r.cloud_settings})" if r.cloud
                          else r.devices for r in rows)
    title = f"DIME Pareto fronts — {', '.join(models)}: {'; '.join(roles)}; {_semantics(rows)}"
    note = energy_note((r.energy_source for r in rows), what)
    wrap = int(width_in * 14)  # characters per line at this font size
    text = "\n".join(textwrap.fill(t, wrap) for t in (title, note) if t)
    fig.suptitle(text, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _figure_class() -> Any:
    """matplotlib's Figure on the Agg canvas, without pyplot: no global backend is switched
    (a notebook keeps its own) and no figure is left open."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plots need matplotlib (pip install matplotlib)") from None

    def make(**kw: Any) -> Any:
        fig = Figure(**kw)
        FigureCanvasAgg(fig)
        return fig

    return make


def check_plot_path(path: str | os.PathLike) -> None:
    """Raise UsageError before any work when `path` is not a figure matplotlib can write."""
    fig = _figure_class()()
    suffix = Path(path).suffix.lower().lstrip(".")
    kinds = fig.canvas.get_supported_filetypes()
    if suffix not in kinds:
        raise UsageError(f"--plot {path}: unknown figure type {suffix!r}; use one of {', '.join(sorted(kinds))}")


def _plot_cell(ax: Any, cell: Sequence[SweepRow], handles: dict[str, Any], sx: float, sy: float,
               devices: list[str]) -> None:
    """One panel; sx, sy scale seconds and joules to the axes' units."""
    front = sorted(
        {(r.latency_s, r.energy_j) for r in cell if r.pareto and r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)}
    )
    sweeps = [r for r in cell if r.sweep in (ENERGY_SWEEP, LATENCY_SWEEP)]
    if front:
        xs, ys = zip(*front)
        (h,) = ax.step([x * sx for x in xs], [y * sy for y in ys], where="post", color="tab:blue", lw=1.5, zorder=2)
        handles.setdefault("DIME Pareto front", h)
    for kind, marker, size, label in (
        (ENERGY_SWEEP, "o", 28, "DIME, min latency at energy budget"),
        (LATENCY_SWEEP, "x", 24, "DIME, min energy at latency budget"),
    ):
        pts = [r for r in sweeps if r.sweep == kind]
        if pts:
            h = ax.scatter([r.latency_s * sx for r in pts], [r.energy_j * sy for r in pts], marker=marker, s=size,
                           color="tab:blue", facecolors="none" if marker == "o" else None, zorder=3)
            handles.setdefault(label, h)
    base = [r for r in cell if r.sweep.startswith(BASELINE)]
    # Keep the front readable: baselines far outside it are listed instead of drawn.
    lat_hi = max(r.latency_s for r in sweeps) if sweeps else None
    en_hi = max(r.energy_j for r in sweeps) if sweeps else None
    off: list[str] = []
    for r in base:
        name = r.sweep[len(BASELINE):]
        marker, colour, size, label = _style(name, devices)
        x = r.bundle_latency_s if r.bundle_latency_s is not None else r.latency_s
        y = r.bundle_energy_j if r.bundle_energy_j is not None else r.energy_j
        tag = label + (f" ({r.settings.split(':', 1)[1]})" if name.startswith("all-") else "")
        if lat_hi is not None and en_hi is not None and (x > 3 * lat_hi or y > 3 * en_hi):
            off.append(f"{tag}: {x:.3g} s, {y:.3g} J")
            continue
        h = ax.scatter([x * sx], [y * sy], marker=marker, s=size, color=colour, edgecolors="black",
                       linewidths=0.4, zorder=5 + 50 / size)
        handles.setdefault(label, h)
        if r.bundle_latency_s is not None and (
            abs(r.latency_s - x) > 0.01 * x or abs(r.energy_j - y) > 0.01 * max(y, 1e-12)
        ):
            ax.plot([r.latency_s * sx, x * sx], [r.energy_j * sy, y * sy], ls=":", color=colour, lw=1, zorder=3)
            h2 = ax.scatter([r.latency_s * sx], [r.energy_j * sy], marker=marker, s=size, facecolors="none",
                            edgecolors=colour, zorder=4)
            handles.setdefault("hollow: layer-sum estimate of a baseline", h2)
    if off:
        ax.text(0.98, 0.98, "off the plot:\n" + "\n".join(off), transform=ax.transAxes, ha="right", va="top",
                fontsize=6.5, bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
