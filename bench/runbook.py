"""Benchmark: the whole exchange-online-s2s runbook against the lab, and where its time goes.

    .venv/bin/python bench/runbook.py [--runs 2] [--pace 0] [--ahead 1] [--leave-kernel]

Starts a lab (2 CRM servers, 2 organizations, the Entra twin) with ``psbridge lab up`` in a
process of its own, in a temporary state directory, and measures, in one run of this script, with
step kernels started the ordinary way (a new interpreter each) and then forked from the kernel
zygote (a new lab for each, so each first run changes everything), and the ratios of the two:

- the papermill floor: an empty notebook through ``papermill.execute_notebook`` in a fresh kernel
  (papermill's own engine), the cost one step paid before warm kernels (median of five);
- the runbook for one organization, ``--runs`` times (the first changes everything, the later
  ones find everything done): wall; remote (PowerShell over WinRM/PSRP, the CRM Web API and
  waiting for its Test & Enable) and cloud (sign-in,
  Graph) seconds as the kernels timed them; each step's local overhead (its wall minus its
  remote and cloud seconds) and their median; the ratio wall / (remote + cloud);
- peak memory of the runner, the zygote and every kernel together, summed resident (RSS) and
  proportional (PSS: a page forked kernels share counted once), sampled from /proc (the lab is
  another process, as a customer's servers would be), for ``--ahead`` kernels started ahead of
  the step that runs;
- time from ``psbridge run`` starting (a new process) to the first step's first cell.

The kernel zygote of this process is started as the lab is, as ``psbridge demo`` and ``psbridge
run`` start theirs on entry: the first run's wall does not wait for its imports, and the time to
the first cell (a new process) is where that start shows.

``--pace`` is the lab's PSBRIDGE_LAB_PACE: 0 (the default here) answers at once, so the ratio
compares psbridge with the protocol work alone; 1 adds the official scripts' real durations.
``--leave-kernel``: each run leaves a kernel for the next, as a batch's worker does for its next
organization (``Runner(leave_kernel=True)``): the second and later runs' first step starts in it.
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
from typing import Any

import yaml

from psbridge.runbook.cli_support import run_demo, start_zygote
from psbridge.runbook.runner import RunResult


class MemorySampler:
    """The peaks of the summed memory of this process and all its descendants.

    Resident (RSS) counts a page shared by forked kernels once in each of them; proportional
    (PSS, from /proc/PID/smaps_rollup) divides it among its sharers, so its sum is what the
    machine really spends.
    """

    def __init__(self, every: float = 0.05) -> None:
        self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.peak_processes = 0
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
    def _memory_kb(pid: int) -> tuple[int, int]:
        rss = pss = 0
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
        except OSError:
            pass
        return rss, pss

    def _run(self) -> None:
        while not self._stop.is_set():
            todo, rss, pss, count = [os.getpid()], 0, 0, 0
            while todo:
                pid = todo.pop()
                r, p = self._memory_kb(pid)
                rss, pss, count = rss + r, pss + p, count + 1
                todo += self._children(pid)
            self.peak_rss_mb = max(self.peak_rss_mb, rss / 1024)
            self.peak_pss_mb = max(self.peak_pss_mb, pss / 1024)
            self.peak_processes = max(self.peak_processes, count)
            self._stop.wait(self.every)


FLOOR = """
import sys, time
import nbformat
import papermill as pm
from psbridge.runbook.kernel import KERNEL_NAME, engine_kwargs
root = sys.argv[1]
nb = nbformat.v4.new_notebook()
nb.metadata = {"kernelspec": {"name": KERNEL_NAME, "language": "python", "display_name": "Python 3"}}
nb.cells.append(nbformat.v4.new_code_cell("x = 1"))
nbformat.write(nb, root + "/empty.ipynb")
t0 = time.perf_counter()
pm.execute_notebook(root + "/empty.ipynb", root + "/empty.out.ipynb", progress_bar=False,
                    kernel_name=KERNEL_NAME, **engine_kwargs())
print(time.perf_counter() - t0)
"""


def papermill_floor(root: Path) -> float:
    """The floor, timed in a process of its own: papermill imported its own way (with pyarrow)
    would otherwise count in this process's memory, which stands for the runner's."""
    done = subprocess.run([sys.executable, "-c", FLOOR, str(root)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.split()[-1])


def figures(result: RunResult, wall: float) -> dict[str, float]:
    steps = [s for s in result.steps if s.duration is not None]
    remote = sum(s.timings.get("remote", 0.0) for s in steps)
    cloud = sum(s.timings.get("cloud", 0.0) for s in steps)
    local = [s.duration - s.timings.get("remote", 0.0) - s.timings.get("cloud", 0.0)  # type: ignore[operator]
             for s in steps]
    return {
        "wall": wall,
        "remote (WinRM/PSRP, CRM Web API)": remote,
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


def measure(state: Path, records: Path, args: argparse.Namespace,
            forked: bool) -> tuple[list[Any], MemorySampler]:
    """The runbook ``--runs`` times for one organization, kernels forked from the zygote or not."""
    from psbridge.runbook.runner import Runner

    rows = []
    original = Runner.__init__

    def configured(self: Runner, *a: object, **kw: object) -> None:
        kw.setdefault("kernels_ahead", args.ahead)
        kw.setdefault("forked_kernels", forked)
        kw.setdefault("leave_kernel", args.leave_kernel)
        original(self, *a, **kw)  # type: ignore[arg-type]

    Runner.__init__ = configured  # type: ignore[method-assign]
    try:
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
    finally:
        Runner.__init__ = original  # type: ignore[method-assign]
        from psbridge.runbook.warm import retire_left

        retire_left()  # the last run's, taken by no run
    return rows, memory


def table(rows: list[Any]) -> None:
    names = list(rows[0][1])
    print("| | " + " | ".join(r[0] for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for n in names:
        print(f"| {n} | " + " | ".join(f"{r[1][n]:.2f}" for r in rows) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pace", default="0")
    ap.add_argument("--ahead", type=int, default=1)
    ap.add_argument("--organization", default="contoso")
    ap.add_argument("--leave-kernel", action="store_true")
    args = ap.parse_args()
    os.environ["PSBRIDGE_LAB_PACE"] = args.pace
    from psbridge.runbook import zygote

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
        # Five times, the median said: ipykernel 7's control thread now and then hangs as the kernel
        # shuts down, until jupyter_client terminates it 2.5 s later (papermill's own engine waits
        # for that; the runner's pool kills its kernels, so a run does not).
        floors = sorted(papermill_floor(root) for _ in range(5))
        print(f"papermill floor (an empty notebook, a fresh kernel): {statistics.median(floors):.2f} s, "
              f"median of 5 ({', '.join(f'{f:.2f}' for f in floors)})")
        lab_cli = [sys.executable, "-m", "psbridge.lab"]
        modes = [(False, "started the ordinary way")]
        if zygote.SUPPORTED:
            modes.append((True, "forked from the zygote"))
        results = {}
        for forked, how in modes:
            # A new lab for each way, so each first run changes everything.
            state = root / f"lab-{int(forked)}"
            os.environ["PSBRIDGE_LAB_STATE"] = str(state)
            os.environ["PSBRIDGE_TOKEN_CACHE"] = str(state / "msal")  # a new lab's tokens
            if forked:
                start_zygote()  # as `psbridge demo` and `psbridge run` do: it warms while the lab starts
            subprocess.run([*lab_cli, "up", "--state", str(state)], check=True, capture_output=True)
            try:
                results[forked] = (how, *measure(state, root / f"records-{int(forked)}", args, forked))
                if forked == modes[-1][0]:
                    to_first = first_cell_after_start(root, state)
            finally:
                subprocess.run([*lab_cli, "down", "--state", str(state)], check=False, capture_output=True)
    for how, rows, memory in results.values():
        left = ", each run leaving a kernel for the next" if args.leave_kernel else ""
        print(f"\nlab pace {args.pace}, {args.ahead} kernel(s) ahead, kernels {how}{left}\n")
        table(rows)
        print(f"\npeak memory, runner + kernels (+ zygote): RSS {memory.peak_rss_mb:.0f} MB, "
              f"PSS {memory.peak_pss_mb:.0f} MB, {memory.peak_processes} processes")
        print("per step (run 1): wall / remote / cloud / local")
        for s in rows[0][2].steps:
            if s.duration is not None:
                r, c = s.timings.get("remote", 0.0), s.timings.get("cloud", 0.0)
                print(f"  {s.step.stem:<24} {s.duration:5.2f} {r:5.2f} {c:5.2f} {s.duration - r - c:5.2f}")
    if True in results:
        spawned, forked_rows = results[False][1], results[True][1]
        print("\nforked / ordinary, same run of this script:")
        for i in range(len(spawned)):
            a, b = spawned[i][1], forked_rows[i][1]
            print(f"  {forked_rows[i][0]}: wall {b['wall'] / a['wall']:.2f}, median local overhead "
                  f"{b['local overhead, median a step'] / a['local overhead, median a step']:.2f}")
        print(f"  peak PSS {results[True][2].peak_pss_mb / results[False][2].peak_pss_mb:.2f}")
    print(f"\npsbridge run (a new process) to the first step's first cell: {to_first:.2f} s")


if __name__ == "__main__":
    main()
