"""Benchmark: the whole exchange-online-s2s runbook against the lab, and where its time goes.

    .venv/bin/python bench/runbook.py [--runs 2]

Starts a lab (2 CRM servers, 2 organizations, the Entra twin) in a temporary state directory and
runs the runbook for one organization ``--runs`` times: the first run changes everything, the
later ones find everything done. For each run it prints the wall time split into

- kernel start: from papermill starting a notebook to its first cell (a fresh kernel a step),
- cells: time inside the notebooks' cells, of which
  - remote: PowerShell over WinRM (opening pools and every command, uploads included),
  - cloud: sign-in and Graph calls,
  - the rest (imports, certificate generation, pandas, display),
- papermill overhead: the rest of each papermill execution (parameters, client, shutdown),
- record: the runner's own work (scrubbing, HTML export, hashing, manifest),

and the peak resident memory of this process (runner + in-process lab) and of the largest kernel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from psbridge.runbook import timing
from psbridge.runbook.cli_support import run_demo
from psbridge.runbook.runner import RunResult


def _peak_rss_mb() -> tuple[float | None, float | None]:
    """(this process, the largest child) peak resident set, in MB; None where not measurable."""
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        return None, None
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return round(own, 1), round(kids, 1)


def split(result: RunResult, wall: float, timings_file: Path) -> dict[str, float]:
    steps = [s for s in result.steps if s.timings]
    kernel = sum(s.timings.get("kernel_start", 0.0) for s in steps)
    cells = sum(s.timings.get("cells", 0.0) for s in steps)
    papermill_total = sum(s.timings.get("papermill_total", 0.0) for s in steps)
    calls = timing.read(str(timings_file))
    remote = calls.get("winrm", 0.0) + calls.get("winrm_open", 0.0)
    cloud = calls.get("graph", 0.0) + calls.get("signin", 0.0)
    return {
        "wall": wall,
        "kernel start": kernel,
        "cells": cells,
        "  remote (WinRM/PSRP)": remote,
        "  cloud (sign-in, Graph)": cloud,
        "  rest of cells": max(cells - remote - cloud, 0.0),
        "papermill overhead": max(papermill_total - kernel - cells, 0.0),
        "record (scrub, HTML, hashes)": max(wall - papermill_total, 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--organization", default="contoso")
    args = ap.parse_args()
    from psbridge.runbook import demolab

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state, records = root / "lab", root / "records"
        os.environ["PSBRIDGE_LAB_STATE"] = str(state)
        os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
        t0 = time.perf_counter()
        lab = demolab.start(state)
        print(f"lab start: {time.perf_counter() - t0:.2f} s")
        try:
            rows = []
            for i in range(args.runs):
                timings_file = root / f"timings-{i}.jsonl"
                os.environ[timing.ENV] = str(timings_file)
                t = time.perf_counter()
                result = run_demo(state, records, args.organization)
                wall = time.perf_counter() - t
                if not result.ok:
                    raise SystemExit(f"run {i + 1} failed: {result.manifest.get('failure')}")
                changed = sum(1 for s in result.steps if s.changes)
                rows.append((f"run {i + 1} ({'changes' if changed else 'no change'})",
                             split(result, wall, timings_file)))
        finally:
            lab.stop()
    names = list(rows[0][1])
    print()
    print("| seconds | " + " | ".join(r[0] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[1][n]:.2f}" for r in rows) + " |")
    own, kids = _peak_rss_mb()
    if own is not None:
        print(f"\npeak RSS: runner + in-process lab {own} MB; largest kernel {kids} MB")


if __name__ == "__main__":
    main()
