"""CPU time of every thread of a `dime.run local` split run, beside its compute time.

    .venv/bin/python docs/data/split-gap-2026-12-07/cpu_use.py OUT_DIR -- DIME_RUN_ARGS...

Runs `python -m dime.run local DIME_RUN_ARGS --out OUT_DIR/run.csv` and reads every thread's
user+system CPU time of the run's processes from /proc twice a second (the last reading of
each thread counts). Writes OUT_DIR/threads.csv (process, thread, CPU s) and prints, per
process, its CPU time next to its devices' compute time per the run's CSV (busy_s x queries):
CPU a device spends while it is not computing competes with the other device's compute.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _threads(pid: int) -> dict[tuple[int, str, int, str], float]:
    out = {}
    try:
        cmd = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-60:]).strip()
        for t in Path(f"/proc/{pid}/task").iterdir():
            stat = (t / "stat").read_text()
            name = stat[stat.index("(") + 1: stat.rindex(")")]
            f = stat.rsplit(")", 1)[1].split()
            out[(pid, cmd, int(t.name), name)] = (int(f[11]) + int(f[12])) / TICK
    except (OSError, ValueError):
        pass
    return out


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    args = argv[argv.index("--") + 1:]
    out_dir.mkdir(parents=True, exist_ok=True)
    run_csv = out_dir / "run.csv"
    proc = subprocess.Popen([sys.executable, "-m", "dime.run", "local", *args, "--out", str(run_csv)])
    seen: dict[tuple[int, str, int, str], float] = {}
    while proc.poll() is None:
        for pid in _tree(proc.pid):
            seen.update(_threads(pid))
        time.sleep(0.5)
    with open(out_dir / "threads.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pid", "process", "tid", "thread", "cpu_s"])
        for (pid, cmd, tid, name), s in sorted(seen.items()):
            w.writerow([pid, cmd, tid, name, f"{s:.2f}"])
    per_proc: dict[tuple[int, str], float] = {}
    for (pid, cmd, _, name), s in seen.items():
        per_proc[(pid, cmd)] = per_proc.get((pid, cmd), 0.0) + s
    for (pid, cmd), s in sorted(per_proc.items(), key=lambda kv: -kv[1]):
        top = sorted(((n, v) for (p, _, _, n), v in seen.items() if p == pid and v >= 0.05), key=lambda kv: -kv[1])[:6]
        print(f"{s:7.2f} s CPU  pid {pid} {cmd}  threads: " + ", ".join(f"{n} {v:.2f}" for n, v in top))
    if run_csv.exists():
        for r in csv.DictReader(run_csv.open()):
            print(f"run: {r['config']} {r['scenario']} count={r['count']} mean={float(r['mean_s']) * 1e3:.1f} ms "
                  f"busy_s={r.get('busy_s', '')} edge_compute_s={r.get('edge_compute_s', '')}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
