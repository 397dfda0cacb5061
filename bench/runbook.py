"""Benchmark: the whole exchange-online-s2s runbook against the lab, and where its time goes.

    .venv/bin/python bench/runbook.py [--runs 2] [--pace 0] [--ahead 1]

Starts a lab (2 CRM servers, 2 organizations, the Entra twin) with ``psbridge lab up`` in a
process of its own, in a temporary state directory, and measures, in one run of this script:

- the papermill floor: an empty notebook through ``papermill.execute_notebook`` in a fresh kernel
  (papermill's own engine), the cost one step paid before warm kernels;
- the runbook for one organization, ``--runs`` times (the first changes everything, the later
  ones find everything done): wall; remote (PowerShell over WinRM/PSRP) and cloud (sign-in,
  Graph) seconds as the kernels timed them; each step's local overhead (its wall minus its
  remote and cloud seconds) and their median; the ratio wall / (remote + cloud);
- peak resident memory of the runner and every kernel together (sampled from /proc; the lab is
  another process, as a customer's servers would be), for ``--ahead`` kernels started ahead of
  the step that runs;
- time from ``psbridge run`` starting (a new process) to the first step's first cell.

``--pace`` is the lab's PSBRIDGE_LAB_PACE: 0 (the default here) answers at once, so the ratio
compares psbridge with the protocol work alone; 1 adds the official scripts' real durations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from psbridge.runbook.cli_support import run_demo
from psbridge.runbook.runner import RunResult


class MemorySampler:
    """The peak of the summed resident memory of this process and all its descendants."""

    def __init__(self, every: float = 0.05) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.every = every

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _children(pid: int) -> list[int]:
        kids: list[int] = []
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                text = (task / "children").read_text()
                kids += [int(c) for c in text.split()]
        except OSError:
            pass
        return kids

    @staticmethod
    def _rss_kb(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            todo, total = [os.getpid()], 0
            while todo:
                pid = todo.pop()
                total += self._rss_kb(pid)
                todo += self._children(pid)
            self.peak_mb = max(self.peak_mb, total / 1024)
            self._stop.wait(self.every)


def papermill_floor(root: Path) -> float:
    import nbformat
    import papermill as pm

    from psbridge.runbook.kernel import KERNEL_NAME, engine_kwargs

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": KERNEL_NAME, "language": "python", "display_name": "Python 3"}}
    nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
    src = root / "empty.ipynb"
    nbformat.write(nb, src)
    t0 = time.perf_counter()
    pm.execute_notebook(str(src), str(root / "empty.out.ipynb"), progress_bar=False, kernel_name=KERNEL_NAME,
                        **engine_kwargs())
    return time.perf_counter() - t0


def figures(result: RunResult, wall: float) -> dict[str, float]:
    steps = [s for s in result.steps if s.duration is not None]
    remote = sum(s.timings.get("remote", 0.0) for s in steps)
    cloud = sum(s.timings.get("cloud", 0.0) for s in steps)
    local = [s.duration - s.timings.get("remote", 0.0) - s.timings.get("cloud", 0.0)  # type: ignore[operator]
             for s in steps]
    return {
        "wall": wall,
        "remote (WinRM/PSRP)": remote,
        "cloud (sign-in, Graph)": cloud,
        "local overhead, median a step": statistics.median(local),
        "local overhead, largest step": max(local),
        "waited for a kernel (all steps)": sum(s.timings.get("kernel_wait", 0.0) for s in steps),
        "wall / (remote + cloud)": wall / (remote + cloud) if remote + cloud else float("inf"),
    }


def first_cell_after_start(root: Path, state: Path) -> float:
    params = root / "first.yaml"
    params.write_text(yaml.safe_dump({
        "customer": "first", "organization": "fabrikam", "lab": str(state),
        "pfx_password": "lab:first/fabrikam/pfx-password",
        "client_secret": "lab:first/fabrikam/client-secret",
    }), encoding="utf-8")
    records = root / "first-records"
    started = dt.datetime.now(dt.UTC)
    command = [str(Path(sys.executable).with_name("psbridge")), "run", str(params), "--records", str(records),
               "--to", "preflight"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    page = next(records.rglob("00-preflight.ipynb"))
    cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
    first = min(dt.datetime.fromisoformat(c["metadata"]["papermill"]["start_time"])
                for c in cells if c.get("metadata", {}).get("papermill", {}).get("start_time"))
    return (first - started).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pace", default="0")
    ap.add_argument("--ahead", type=int, default=1)
    ap.add_argument("--organization", default="contoso")
    args = ap.parse_args()
    os.environ["PSBRIDGE_LAB_PACE"] = args.pace
    from psbridge.runbook.runner import Runner

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state, records = root / "lab", root / "records"
        os.environ["PSBRIDGE_LAB_STATE"] = str(state)
        os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
        floor = papermill_floor(root)
        print(f"papermill floor (an empty notebook, a fresh kernel): {floor:.2f} s")
        lab_cli = [sys.executable, "-m", "psbridge.lab"]
        subprocess.run([*lab_cli, "up", "--state", str(state)], check=True, capture_output=True)
        try:
            rows = []
            original = Runner.__init__

            def with_ahead(self: Runner, *a: object, **kw: object) -> None:
                kw.setdefault("kernels_ahead", args.ahead)
                original(self, *a, **kw)  # type: ignore[arg-type]

            Runner.__init__ = with_ahead  # type: ignore[method-assign]
            with MemorySampler() as memory:
                for i in range(args.runs):
                    t = time.perf_counter()
                    result = run_demo(state, records, args.organization)
                    wall = time.perf_counter() - t
                    if not result.ok:
                        raise SystemExit(f"run {i + 1} failed: {result.manifest.get('failure')}")
                    changed = sum(1 for s in result.steps if s.changes)
                    label = f"run {i + 1} ({'changes' if changed else 'no change'})"
                    rows.append((label, figures(result, wall), result))
            Runner.__init__ = original  # type: ignore[method-assign]
            to_first = first_cell_after_start(root, state)
        finally:
            subprocess.run([*lab_cli, "down", "--state", str(state)], check=False, capture_output=True)
    names = list(rows[0][1])
    print(f"\nlab pace {args.pace}, {args.ahead} kernel(s) started ahead\n")
    print("| | " + " | ".join(r[0] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[1][n]:.2f}" for r in rows) + " |")
    print(f"\npeak resident memory, runner + kernels: {memory.peak_mb:.0f} MB")
    print(f"psbridge run (a new process) to the first step's first cell: {to_first:.2f} s")
    print("\nper step (run 1): wall / remote / cloud / local")
    for s in rows[0][2].steps:
        if s.duration is not None:
            r, c = s.timings.get("remote", 0.0), s.timings.get("cloud", 0.0)
            print(f"  {s.step.stem:<24} {s.duration:5.2f} {r:5.2f} {c:5.2f} {s.duration - r - c:5.2f}")


if __name__ == "__main__":
    main()
