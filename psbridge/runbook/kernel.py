"""The kernel a step notebook runs in: this very interpreter, whatever is activated or not.

Papermill (through nbclient) would look the notebook's kernel name up among the installed
kernelspecs, and a ``python3`` kernelspec found there may belong to another Python without
psbridge. :func:`kernel_manager_class` gives nbclient a kernel manager whose spec is built
here: ``sys.executable -m ipykernel_launcher``, with the environment the runner chooses
(``PSBRIDGE_LAB_STATE`` among it, so ``lab:`` secret references resolve in the kernel).

For JupyterLab, and for papermill or nbclient run by hand, the same kernel is registered under
:data:`KERNEL_NAME`: the package installs ``share/jupyter/kernels/psbridge/kernel.json`` into
its environment (``sys.prefix``, where ``jupyter kernelspec list`` of that environment looks),
with ``python`` as the interpreter, which jupyter_client replaces by its own ``sys.executable``
exactly as for ipykernel's ``python3`` spec: JupyterLab started from psbridge's environment
(``.venv/bin/jupyter lab``, nothing activated, Windows included) runs its kernels there. A
JupyterLab installed elsewhere gets it with ipykernel's own command, which writes an absolute
path instead: ``.venv/bin/python -m ipykernel install --user --name psbridge``.
The step notebooks name :data:`KERNEL_NAME` in their metadata.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

# Keep in step with share/jupyter/kernels/psbridge/kernel.json (tests/test_kernel.py checks).
KERNEL_NAME = "psbridge"
DISPLAY_NAME = "Python 3 (psbridge)"


def kernel_spec(env: Mapping[str, str] | None = None) -> KernelSpec:
    return KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name=DISPLAY_NAME,
        language="python",
        env=dict(env or {}),
        metadata={"debugger": False},
    )


_ipc: Path | None = None


def _ipc_dir() -> Path:
    """One private folder a process for the kernels' sockets, removed when the process ends."""
    global _ipc
    if _ipc is None:
        _ipc = Path(tempfile.mkdtemp(prefix="psbridge-kernels-"))
        atexit.register(shutil.rmtree, _ipc, True)
    return _ipc


def kernel_manager_class(env: Mapping[str, str] | None = None,
                         stderr_log: Path | None = None) -> type[AsyncKernelManager]:
    """An ``AsyncKernelManager`` subclass that starts ``sys.executable`` with ``env`` added.

    With ``stderr_log``, what kernels write to their standard error (start-up warnings, the
    complaint of an idle kernel interrupted before shutdown) goes to that file, not the terminal.
    """
    spec = kernel_spec(env)

    class InterpreterKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if os.name != "nt":
                # Kernel messages over private Unix sockets rather than loopback TCP; Windows
                # has no IPC transport for ZeroMQ and stays on loopback.
                self.transport = "ipc"
                self.ip = str(_ipc_dir() / f"kernel-{uuid.uuid4().hex[:12]}")

        @property
        def kernel_spec(self) -> KernelSpec:
            return spec

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if stderr_log is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            # The documented place to launch kernels differently; Popen keeps its own handle.
            with open(stderr_log, "ab") as err:
                kw.setdefault("stderr", err)
                await super()._async_launch_kernel(kernel_cmd, **kw)

    return InterpreterKernelManager


def engine_kwargs(env: Mapping[str, str] | None = None, stderr_log: Path | None = None) -> dict[str, Any]:
    """What :func:`papermill.execute_notebook` passes on to nbclient to use that kernel."""
    return {"kernel_manager_class": kernel_manager_class(env, stderr_log)}


def new_stderr_log() -> Path:
    """A fresh file for one run's kernel messages, in this process's private folder."""
    return _ipc_dir() / f"stderr-{uuid.uuid4().hex[:12]}.log"
