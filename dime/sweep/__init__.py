"""Stage 4: sweeps of budgets and links, baselines, CSV and plots (`python -m dime.sweep`).

rows (SweepRow, CSV, Pareto) <- spec (a cell and its row builders) <- baselines <- cell (one
cell's sweeps) <- grid (cells in processes, kept for --resume) <- cli; plot and energy aside.
"""

from dime.sweep.baselines import (
    ALL_CLOUD,
    ALL_EDGE,
    BASELINES,
    DIME_EDGE_FASTEST,
    DIME_EDGE_SLOWEST,
    LAYER_SUM_BASELINES,
    LAYERWISE,
    LAYERWISE_ENERGY,
    NEUROSURGEON,
    baselines,
    merge_bundles,
    per_layer,
)
from dime.sweep.cell import budgets, run_cell, sweep_cell
from dime.sweep.cli import (
    EXIT_CELLS_FAILED,
    SweepOptions,
    SweepOutcome,
    build_cells,
    build_parser,
    options_from_args,
    run_sweep,
)
from dime.sweep.energy import assume_edge_power, edge_energy_source, energy_note
from dime.sweep.grid import run_grid
from dime.sweep.plot import check_plot_path, plot_rows
from dime.sweep.rows import (
    BASELINE,
    CELL_FAILED,
    COLUMNS,
    ENERGY_SWEEP,
    EVALUATED,
    LATENCY_SWEEP,
    SweepRow,
    mark_pareto,
    read_rows,
    rows_frame,
    rows_to_csv,
)
from dime.sweep.spec import CellResult, CellSpec

__all__ = [
    "ALL_CLOUD", "ALL_EDGE", "BASELINE", "BASELINES", "CELL_FAILED", "COLUMNS", "DIME_EDGE_FASTEST",
    "DIME_EDGE_SLOWEST", "ENERGY_SWEEP", "EVALUATED", "EXIT_CELLS_FAILED", "LATENCY_SWEEP",
    "LAYER_SUM_BASELINES", "LAYERWISE", "LAYERWISE_ENERGY", "NEUROSURGEON", "CellResult", "CellSpec",
    "SweepOptions", "SweepOutcome", "SweepRow", "assume_edge_power", "baselines", "budgets", "build_cells",
    "build_parser", "check_plot_path", "edge_energy_source", "energy_note", "mark_pareto", "merge_bundles",
    "options_from_args", "per_layer", "plot_rows", "read_rows", "rows_frame", "rows_to_csv", "run_cell",
    "run_grid", "run_sweep", "sweep_cell",
]
