"""Stage 4: sweeps of budgets and links, baselines, CSV and plots (`python -m dime.sweep`).

rows (SweepRow, CSV, Pareto) <- spec (a cell and its row builders) <- baselines <- cell (one
cell's sweeps; `point_source` is where its points come from) <- grid (cells in processes, kept
for --resume) <- inputs (options to cells: two devices or a system file, link settings) <- cli;
plot and energy aside.
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
    all_on,
    baselines,
    breaks,
    dime_fixed,
    is_layer_sum,
    merge_bundles,
    per_layer,
)
from dime.sweep.cell import (
    FrontPoints,
    IlpPoints,
    PointSource,
    budgets,
    point_source,
    run_cell,
    sweep_cell,
    sweep_points,
)
from dime.sweep.cli import (
    EXIT_CELLS_FAILED,
    SweepOutcome,
    build_parser,
    options_from_args,
    run_sweep,
)
from dime.plan.energy import (
    assume_edge_power,
    assume_power,
    edge_energy_source,
    energy_note,
    energy_source,
)
from dime.sweep.grid import run_grid
from dime.sweep.inputs import AS_GIVEN, SweepOptions, build_cells, link_names, link_settings
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
    "ALL_CLOUD", "ALL_EDGE", "AS_GIVEN", "BASELINE", "BASELINES", "CELL_FAILED", "COLUMNS", "DIME_EDGE_FASTEST",
    "DIME_EDGE_SLOWEST", "ENERGY_SWEEP", "EVALUATED", "EXIT_CELLS_FAILED", "LATENCY_SWEEP",
    "LAYER_SUM_BASELINES", "LAYERWISE", "LAYERWISE_ENERGY", "NEUROSURGEON", "CellResult", "CellSpec",
    "FrontPoints", "IlpPoints", "PointSource", "SweepOptions", "SweepOutcome", "SweepRow", "all_on",
    "assume_edge_power", "assume_power", "baselines", "breaks", "budgets", "build_cells", "build_parser",
    "check_plot_path", "dime_fixed", "edge_energy_source", "energy_note", "energy_source", "is_layer_sum",
    "link_names", "link_settings", "mark_pareto", "merge_bundles", "options_from_args", "per_layer",
    "plot_rows", "point_source", "read_rows", "rows_frame", "rows_to_csv", "run_cell", "run_grid", "run_sweep",
    "sweep_cell", "sweep_points",
]
