"""Benchmark: one cell's round trip in a step's kernel, tuned (psbridge.runbook.kerneltune) and as shipped.

    .venv/bin/python bench/kernel_cells.py [--cells 300]

Starts two kernels the ordinary way (``python -m ipykernel_launcher``, this interpreter, history
off in both): one with the runner's kernel arguments, one with ipykernel as shipped. Then, taking
turns so that both see the same machine, executes in each a step's parameters cell (the defaults
of 10-certificate: some thirty annotated assignments with comments) and a one-line cell, and
prints the median round trip (execute request to the cell's ``idle``, as nbclient waits for it)
and the ratio tuned / shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from psbridge.runbook.kernel import KERNEL_NAME, kernel_manager_class


class ShippedKernelManager(AsyncKernelManager):  # type: ignore[misc]
    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                "--HistoryManager.enabled=False"], display_name="shipped", language="python")


def parameters_cell() -> str:
    from psbridge.runbook import registry

    book = registry.load(None)
    nb = nbformat.read(book.notebook_path(book.steps[1]), as_version=4)
    return next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))


async def round_trip(client: Any, code: str) -> float:
    t0 = time.perf_counter()
    msg_id = client.execute(code)
    while True:
        msg = await client.get_iopub_msg(timeout=30)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"):
            break
    await client.get_shell_msg(timeout=30)
    return time.perf_counter() - t0


async def main_async(cells: int) -> None:
    cell = parameters_cell()
    with tempfile.TemporaryDirectory() as tmp:
        tuned_class = kernel_manager_class(None, Path(tmp) / "kernels.log", forked=False)
        # Both on Unix sockets where there are any, as the runner's kernels are.
        ipc = {"transport": "ipc", "ip": str(Path(tmp) / "shipped")} if sys.platform != "win32" else {}
        managers = {"tuned": tuned_class(kernel_name=KERNEL_NAME), "shipped": ShippedKernelManager(**ipc)}
        clients = {}
        try:
            for name, manager in managers.items():
                await manager.start_kernel()
                client = manager.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                clients[name] = client
            kinds = {"parameters cell": cell, "one-line cell": "x = 1"}
            times: dict[tuple[str, str], list[float]] = {(k, n): [] for k in kinds for n in clients}
            for kind, code in kinds.items():
                for name in clients:  # once each unmeasured: the first execution compiles IPython's paths
                    await round_trip(clients[name], code)
                for _ in range(cells):
                    for name, client in clients.items():
                        times[(kind, name)].append(await round_trip(client, code))
            print(f"{cells} executions each, the kernels taking turns; median round trip:")
            for kind in kinds:
                tuned = statistics.median(times[(kind, "tuned")]) * 1000
                shipped = statistics.median(times[(kind, "shipped")]) * 1000
                print(f"  {kind:<16} tuned {tuned:5.2f} ms, shipped {shipped:5.2f} ms, "
                      f"tuned / shipped {tuned / shipped:.2f}")
        finally:
            for client in clients.values():
                client.stop_channels()
            for manager in managers.values():
                if manager.has_kernel:
                    await manager.shutdown_kernel(now=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=300)
    asyncio.run(main_async(ap.parse_args().cells))


if __name__ == "__main__":
    main()
