"""The kernel application a runner starts: ipykernel's, reading shell requests on its main thread.

``python -m psbridge.runbook.kernelmain -f CONNECTION_FILE ...`` is what a runner's ordinary kernel
start runs (:func:`psbridge.runbook.kernel.kernel_spec`), in place of ``python -m
ipykernel_launcher``; the zygote's forked kernels are the same application
(:mod:`psbridge.runbook.zygote`), so both behave alike. JupyterLab's and plain papermill's
kernels (the installed kernelspec) are ``ipykernel_launcher`` as shipped.

ipykernel 7 reads the shell socket on a thread of its own ("Shell channel"), which hands each
request to the main thread through a pair of in-process sockets, so that a client may open
*subshells*: further shells that run code concurrently with the main one (for widgets that
must answer while a cell runs). A step's kernel has one client, the runner, which never asks
for one. Without that thread, ipykernel reads the shell socket on the main thread's event loop,
its path for a kernel without subshells: each request crosses one thread less and waits for the
GIL one time less, and the kernel_info reply does not offer subshells (ipykernel logs a subshell
request as unsupported and sends no reply). ipykernel 7 reads the thread's ``parent_thread`` in one
place without asking whether there is a thread (a cell that awaits, to cancel it on Ctrl-C when it
runs on the main thread): :class:`RunbookKernel` answers there with the main thread, and says it
has no subshells wherever ipykernel asks. Measured with bench/kernel_cells.py (three kernels
taking turns on a 2-core machine, the same extension and arguments in two of them): a one-line
cell's round trip 0.83-0.89 of its time with the thread (1.8 ms against 2.1), a parameters cell's
0.88-0.93 (2.5 against 2.8); one forked kernel alone, 1.45-1.69 ms against 2.02-2.17.

ipykernel 6, which has no such thread, is started unchanged.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from traitlets import default


class _NoShellChannelThread:
    """What the kernel holds for its shell channel's thread when there is none: false wherever
    ipykernel asks whether there is one (as None is), and the main thread as its ``parent_thread``,
    the thread that runs the cells, where ipykernel reads that without asking."""

    parent_thread = threading.main_thread()

    def __bool__(self) -> bool:
        return False


class RunbookKernel(IPythonKernel):  # type: ignore[misc]
    """IPythonKernel, able to run without the shell channel's thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        # ipykernel 6 has no such thread, nor anything that looks for one.
        if hasattr(type(self), "shell_channel_thread") and self.shell_channel_thread is None:
            self.shell_channel_thread = _NoShellChannelThread()

    @property
    def _supports_kernel_subshells(self) -> bool:
        return bool(self.shell_channel_thread)


class RunbookKernelApp(IPKernelApp):  # type: ignore[misc]  # ipykernel's classes are untyped here
    """IPKernelApp running :class:`RunbookKernel`, without the shell channel's thread (and so
    without subshells)."""

    @default("kernel_class")
    def _runbook_kernel(self) -> type:
        return RunbookKernel

    def init_control(self, context: Any) -> None:
        super().init_control(context)  # type: ignore[no-untyped-call]
        thread = getattr(self, "shell_channel_thread", None)
        if thread is None or not issubclass(self.kernel_class, RunbookKernel):
            return  # ipykernel 6 (no such thread), or a kernel class configured that needs it
        # Made, not started: ipykernel builds the kernel around the shell socket alone when
        # there is none (init_kernel), and never starts or stops one it does not have.
        self.shell_channel_thread = None
        with contextlib.suppress(Exception):
            thread.io_loop.close()  # its event loop's selector, opened as the thread was made


def main() -> None:
    # As ipykernel_launcher: the folder of a ``python -c`` start is not searched while ipykernel
    # imports (IPython puts it back for the cells).
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    RunbookKernelApp.launch_instance()


if __name__ == "__main__":
    main()
