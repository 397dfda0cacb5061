"""Benchmark: ``psbridge batch`` over a lab fleet, the whole runbook for every org.

    .venv/bin/python bench/batch.py [--deployments 20] [--orgs 10] [--parallel 1,2,4,8]

In one run of this script, each measurement on a fresh fleet (``psbridge lab up --deployments D
--orgs M`` in a temporary directory, the lab's processes apart from psbridge's, as a customer's
servers would be):

- single-org wall: ``psbridge run`` of one org's whole runbook on a fresh one-deployment fleet;
- for each ``--parallel`` P: the batch's wall, orgs per minute, the ratio wall / (single-org wall ×
  orgs), and the peak of the summed resident memory (RSS) of everything the batch starts (its
  process, the Dask scheduler's and workers' processes, zygotes and step kernels), sampled from
  the process tree;
- the same batch run again (nothing to change: every org skipped): its wall.

The issue's figure is 200 orgs in 20 deployments (``--deployments 20 --orgs 10``); on a small
machine pass a smaller fleet and read the ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

PSBRIDGE = str(Path(sys.executable).with_name("psbridge"))


class TreeMemory:
    """The peak of the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.peak_mb = 0.0
        self.peak_processes = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total, count = 0, 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                    count += 1
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.peak_processes = max(self.peak_processes, count)
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def env_for(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSBRIDGE_")}
    env.update({"PSBRIDGE_LAB_STATE": str(state), "PSBRIDGE_TOKEN_CACHE": str(state / "msal"),
                "COLUMNS": "160"})
    return env


def fleet_up(state: Path, deployments: int, orgs: int) -> None:
    subprocess.run([PSBRIDGE, "lab", "up", "--state", str(state), "--deployments", str(deployments),
                    "--orgs", str(orgs)], check=True, capture_output=True, env=env_for(state), timeout=600)


def fleet_down(state: Path) -> None:
    subprocess.run([PSBRIDGE, "lab", "down", "--state", str(state)], capture_output=True, env=env_for(state),
                   timeout=300, check=False)


def timed(cmd: list[str], state: Path) -> tuple[float, float, int, int]:
    """(wall seconds, peak summed RSS MiB, peak processes, exit code) of a psbridge command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_for(state))
    memory = TreeMemory(proc.pid)
    code = proc.wait()
    wall = time.perf_counter() - t0
    memory.stop()
    return wall, memory.peak_mb, memory.peak_processes, code


def single_org(root: Path) -> float:
    import yaml

    state = root / "single"
    fleet_up(state, 1, 1)
    try:
        params = root / "single.yaml"
        params.write_text(yaml.safe_dump({
            "customer": "bench", "organization": "contoso", "lab": str(state / "dep01"),
            "pfx_password": "lab:bench/contoso/pfx-password",
            "client_secret": "lab:bench/contoso/client-secret"}))
        env_state = state / "dep01"
        wall, _, _, code = timed([PSBRIDGE, "run", str(params), "--records", str(root / "single-records")],
                                 env_state)
        assert code == 0, "the single-org run failed"
        return wall
    finally:
        fleet_down(state)


def batch(root: Path, deployments: int, orgs: int, parallel: int, rerun: bool) -> dict[str, Any]:
    state = root / f"fleet-p{parallel}"
    fleet_up(state, deployments, orgs)
    try:
        records = root / f"records-p{parallel}"
        cmd = [PSBRIDGE, "batch", str(state / "inventory.yaml"), "--records", str(records),
               "--parallel", str(parallel)]
        wall, peak, procs, code = timed(cmd, state)
        out: dict[str, Any] = {"parallel": parallel, "wall_s": wall, "peak_rss_mib": peak, "processes": procs,
                               "exit": code}
        if rerun:
            out["rerun_wall_s"], out["rerun_peak_rss_mib"], _, out["rerun_exit"] = timed(cmd, state)
        return out
    finally:
        fleet_down(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--orgs", type=int, default=10, help="organizations per deployment")
    parser.add_argument("--parallel", default="1,2,4,8", help="the --parallel values to measure")
    args = parser.parse_args()
    levels = [int(p) for p in args.parallel.split(",")]
    total = args.deployments * args.orgs
    print(f"psbridge batch: {total} organizations in {args.deployments} deployments, whole runbook; "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="psbridge-bench-batch-") as tmp:
        root = Path(tmp)
        single = single_org(root)
        print(f"single-org wall (psbridge run, one org): {single:.1f} s; × {total} = {single * total:.0f} s")
        print(f"{'parallel':>8} {'wall s':>8} {'orgs/min':>9} {'ratio':>6} {'peak RSS MiB':>13} {'procs':>6} "
              f"{'re-run s':>9}")
        for p in levels:
            r = batch(root, args.deployments, args.orgs, p, rerun=True)
            ratio = r["wall_s"] / (single * total)
            flag = "" if r["exit"] == 0 else f"  (exit {r['exit']})"
            print(f"{p:>8} {r['wall_s']:>8.1f} {total / r['wall_s'] * 60:>9.1f} {ratio:>6.2f} "
                  f"{r['peak_rss_mib']:>13.0f} {r['processes']:>6} {r['rerun_wall_s']:>9.1f}{flag}",
                  flush=True)


if __name__ == "__main__":
    main()
