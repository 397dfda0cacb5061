"""Benchmark: one cell's round trip in a step's kernel, as the runner starts it and as shipped.

    .venv/bin/python bench/kernel_cells.py [--cells 300]

Starts three kernels the ordinary way (this interpreter, history off in each): the runner's
(``python -m psbridge.runbook.kernelmain`` with the runner's kernel arguments: the tuning
extension of psbridge.runbook.kerneltune, the shell read on the main thread), the extension alone
(``python -m ipykernel_launcher`` with the same arguments), and ipykernel as shipped. Then, taking
turns so that all see the same machine, executes in each a step's parameters cell (the defaults
of 10-certificate: some thirty annotated assignments with comments) and a one-line cell, and
prints the median round trip (execute request to the cell's ``idle`` and its reply, as nbclient
waits for them) and the ratios to shipped and to the extension alone.
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
from psbridge.runbook.kerneltune import KERNEL_ARGS


class ShippedKernelManager(AsyncKernelManager):  # type: ignore[misc]
    arguments: tuple[str, ...] = ("--HistoryManager.enabled=False",)

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                                *self.arguments], display_name="shipped", language="python")


class ExtensionOnlyKernelManager(ShippedKernelManager):
    arguments = tuple(KERNEL_ARGS)


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
        def ipc(name: str) -> dict[str, str]:
            return {"transport": "ipc", "ip": str(Path(tmp) / name)} if sys.platform != "win32" else {}

        managers = {"runner": tuned_class(kernel_name=KERNEL_NAME),
                    "extension only": ExtensionOnlyKernelManager(**ipc("extension")),
                    "shipped": ShippedKernelManager(**ipc("shipped"))}
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
                ms = {name: statistics.median(times[(kind, name)]) * 1000 for name in clients}
                print(f"  {kind:<16} " + ", ".join(f"{name} {v:5.2f} ms" for name, v in ms.items()))
                runner, extension, shipped = ms["runner"], ms["extension only"], ms["shipped"]
                print(f"  {'':<16} runner / shipped {runner / shipped:.2f}, "
                      f"runner / extension only {runner / extension:.2f}, "
                      f"extension only / shipped {extension / shipped:.2f}")
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
