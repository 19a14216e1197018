"""Grids of cells, in worker processes, each finished cell kept on disk for --resume."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from dime.errors import UsageError
from dime.fileio import atomic_write_text
from dime.sweep.cell import run_cell
from dime.sweep.rows import CELL_FAILED, read_rows, rows_to_csv
from dime.sweep.spec import CellResult, CellSpec, failed_row

log = logging.getLogger(__name__)


def run_grid(
    cells: Sequence[CellSpec],
    jobs: int = 1,
    partial_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[CellResult]:
    """Run every cell (in `jobs` processes) and return their results in the cells' order.

    With `partial_dir`, each finished cell is written there at once (atomically), so an
    interrupted grid keeps its finished cells; with `resume`, cells found there under the
    same key are read back instead of run again.
    """
    from tqdm import tqdm

    results: list[CellResult | None] = [None] * len(cells)
    pdir = Path(partial_dir) if partial_dir is not None else None
    todo: list[int] = []
    for i, spec in enumerate(cells):
        cached = cell_path(pdir, spec) if pdir is not None else None
        reused = _read_cell(cached) if resume and cached is not None and cached.exists() else None
        if reused is not None:
            results[i] = reused
            log.info("reused %s from %s", spec.label, cached)
        else:
            todo.append(i)

    def done(i: int, res: CellResult) -> None:
        results[i] = res
        if pdir is not None and not res.failed:
            atomic_write_text(cell_path(pdir, cells[i]), rows_to_csv(res.rows))
        if res.failed:
            log.warning("cell %s failed: %s", cells[i].label, res.rows[0].error)
        bar.update(1)

    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="sweep", unit="cell",
               disable=None if progress else True, file=sys.stderr)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for i in todo:
                bar.set_postfix_str(cells[i].label)
                done(i, run_cell(cells[i]))
        else:
            _run_pool(cells, todo, min(jobs, len(todo)), done)
    finally:
        bar.close()
    return [r for r in results if r is not None]


def _read_cell(path: Path) -> CellResult | None:
    """A finished cell left by an interrupted run, or None (and a warning) when it cannot be trusted."""
    try:
        rows = read_rows(path)
    except (OSError, UsageError) as e:
        log.warning("cannot reuse %s (%s); running that cell again", path, e)
        return None
    if not rows:
        log.warning("cannot reuse %s (no rows); running that cell again", path)
        return None
    return CellResult(rows=rows, wall_s=0.0, reused=True, failed=any(r.sweep == CELL_FAILED for r in rows))


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the main process alone decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_pool(cells: Sequence[CellSpec], todo: Sequence[int], workers: int,
              done: Callable[[int, CellResult], None]) -> None:
    pool = cf.ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint)
    try:
        futures = {pool.submit(run_cell, cells[i]): i for i in todo}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # the worker process itself died
                row = failed_row(cells[i], CELL_FAILED, e)
                row.status = "error"
                res = CellResult(rows=[row], wall_s=0.0, failed=True)
            done(i, res)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM) or failed: end the workers now rather than wait for
        # their cells; the finished cells are already on disk.
        processes = list((pool._processes or {}).values())  # no public handle on the workers
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(timeout=5)
        raise
    pool.shutdown()


def cell_path(pdir: Path | None, spec: CellSpec) -> Path:
    assert pdir is not None
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec.label)
    return pdir / f"{safe}-{spec.key()}.csv"
