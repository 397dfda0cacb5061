"""Benchmark: starting and stopping the embedded lab, in-process and through the CLI.

    .venv/bin/python bench/lab.py [--servers 2] [--orgs 2] [--repeat 5] [--scale 1,4,8]

Prints: ``Lab.start()`` on a new state directory (world seeded, lab CA and every server's TLS
key generated), ``Lab.start()`` again on the same state (everything loaded), ``restart()``,
``stop()``; the start time against the number of servers; ``psbridge lab up`` / ``lab down``
as a user sees them (a new Python process each), and the serving process's resident memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from psbridge.lab.config import LabConfig
from psbridge.lab.orchestrator import Lab


def timed(action: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    action()
    return time.perf_counter() - t0


def ms(values: list[float]) -> str:
    median, low = statistics.median(values) * 1000, min(values) * 1000
    return f"median {median:7.1f} ms  (min {low:.1f}, n={len(values)})"


def in_process(servers: int, orgs: int, repeat: int) -> None:
    cold, warm, restart, stop = [], [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            lab = Lab(Path(tmp), servers=servers, orgs=orgs)
            cold.append(timed(lab.start))
            stop.append(timed(lab.stop))
            warm.append(timed(lab.start))
            restart.append(timed(lab.restart))
            lab.stop()
    print(f"Lab.start, new state dir ({servers} servers, {orgs} orgs, cloud): {ms(cold)}")
    print(f"Lab.start, existing state dir:                       {ms(warm)}")
    print(f"Lab.restart (same ports):                             {ms(restart)}")
    print(f"Lab.stop:                                             {ms(stop)}")


def scaling(counts: list[int], orgs: int) -> None:
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            Lab(Path(tmp), servers=n, orgs=orgs).start().stop()  # keys and world made once
            lab = Lab(Path(tmp), servers=n, orgs=orgs)
            t = timed(lab.start)
            lab.stop()
        print(f"Lab.start, existing state, {n:2d} servers ({2 * n:2d} endpoints): {t * 1000:7.1f} ms")


def rss_mib(pid: int) -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cli(servers: int, orgs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PSBRIDGE_LAB_STATE": tmp}
        base = [sys.executable, "-m", "psbridge.lab"]
        up = [*base, "up", "--servers", str(servers), "--orgs", str(orgs)]
        first = timed(lambda: subprocess.run(up, env=env, check=True, capture_output=True))
        pid = LabConfig.load(tmp).pid
        memory = rss_mib(pid) if pid else None
        down = timed(lambda: subprocess.run([*base, "down"], env=env, check=True, capture_output=True))
        again = timed(lambda: subprocess.run(up, env=env, check=True, capture_output=True))
        subprocess.run([*base, "down"], env=env, check=True, capture_output=True)
    print(f"psbridge lab up, new state dir:      {first * 1000:7.1f} ms")
    print(f"psbridge lab up, existing state dir: {again * 1000:7.1f} ms")
    print(f"psbridge lab down:                   {down * 1000:7.1f} ms")
    if memory is not None:
        print(f"serving process resident memory:     {memory:7.1f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", type=int, default=2)
    p.add_argument("--orgs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scale", default="1,4,8")
    args = p.parse_args()
    in_process(args.servers, args.orgs, args.repeat)
    scaling([int(n) for n in args.scale.split(",") if n], args.orgs)
    cli(args.servers, args.orgs)


if __name__ == "__main__":
    main()
