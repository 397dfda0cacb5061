"""Benchmark: what safe state files cost — an atomic write and a cross-process lock.

    .venv/bin/python bench/files.py [--repeat 200] [--size 20000] [--processes 4]

Prints, in one run on the same disk: a plain in-place write against ``files.write_atomic``
(unique temporary file, fsync, replace, folder fsync) for a file of ``--size`` bytes, and the
ratio; ``files.locked`` taken and released with nobody else waiting; one lab
``World.change()`` (lock, re-read, write); and world changes per second from ``--processes``
processes changing one world at once.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from psbridge import files
from psbridge.lab.world import World


def per_call(action: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        action()
        out.append(time.perf_counter() - t0)
    return out


def ms(values: list[float]) -> str:
    median = statistics.median(values) * 1000
    p95 = sorted(values)[int(len(values) * 0.95) - 1] * 1000
    return f"median {median:6.2f} ms  p95 {p95:6.2f} ms  (n={len(values)})"


def _changer(state: str, rounds: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    world = World.load(Path(state))
    for _ in range(rounds):
        with world.change() as data:
            settings = data["deployment"]["server_settings"]
            settings["counter"] = settings.get("counter", 0) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--size", type=int, default=20_000, help="bytes per write (world.json is ~10-30 kB)")
    ap.add_argument("--processes", type=int, default=4)
    args = ap.parse_args()
    data = b"x" * args.size
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # the project's disk, not a tmpfs
        folder = Path(tmp)
        plain = per_call(lambda: (folder / "plain.json").write_bytes(data), args.repeat)
        atomic = per_call(lambda: files.write_atomic(folder / "atomic.json", data), args.repeat)
        print(f"plain write_bytes, {args.size} bytes:      {ms(plain)}")
        print(f"files.write_atomic, {args.size} bytes:     {ms(atomic)}")
        ratio = statistics.median(atomic) / statistics.median(plain)
        print(f"  ratio atomic / plain (medians):    {ratio:.1f}")

        lock = folder / "x.lock"

        def take() -> None:
            with files.locked(lock):
                pass

        print(f"files.locked, uncontended:           {ms(per_call(take, args.repeat))}")

        World.seed(folder / "lab", servers=2, orgs=2)
        world = World.load(folder / "lab")

        def change() -> None:
            with world.change() as d:
                d["deployment"]["server_settings"]["touched"] = True

        print(f"World.change (2 servers, 2 orgs):    {ms(per_call(change, args.repeat))}")

        spawn = multiprocessing.get_context("spawn")
        start = spawn.Event()
        rounds = max(1, args.repeat // args.processes)
        procs = [spawn.Process(target=_changer, args=(str(folder / "lab"), rounds, start))
                 for _ in range(args.processes)]
        for p in procs:
            p.start()
        time.sleep(2.0)  # let every process import psbridge before the clock starts
        t0 = time.perf_counter()
        start.set()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
        total = World.load(folder / "lab").server_settings().get("counter")
        asked = rounds * args.processes
        print(f"World.change from {args.processes} processes at once: "
              f"{asked / wall:.0f} changes/s ({total} counted of {asked})")


if __name__ == "__main__":
    main()
