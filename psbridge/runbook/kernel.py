"""The kernel a step notebook runs in: this very interpreter, whatever is activated or not.

Papermill (through nbclient) would look the notebook's kernel name up among the installed
kernelspecs, and a ``python3`` kernelspec found there may belong to another Python without
psbridge. :func:`kernel_manager_class` gives nbclient a kernel manager whose spec is built
here: ``sys.executable -m psbridge.runbook.kernelmain`` (ipykernel's application, its shell read on
the main thread), with the environment the runner chooses
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
import functools
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_client import manager as jupyter_manager
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from psbridge.files import owned_temp_name
from psbridge.intents import ENV_RUNNER_PID
from psbridge.runbook.kerneltune import KERNEL_ARGS
from psbridge.runbook.zygote import ForkedProcess, ZygoteError
from psbridge.runbook.zygote import shared as shared_zygote

log = logging.getLogger(__name__)

# Keep in step with share/jupyter/kernels/psbridge/kernel.json (tests/test_kernel.py checks).
KERNEL_NAME = "psbridge"
DISPLAY_NAME = "Python 3 (psbridge)"
# The module a runner's ordinary kernel start runs (the zygote's kernels are its application too).
KERNEL_MAIN = "psbridge.runbook.kernelmain"


def kernel_spec(env: Mapping[str, str] | None = None) -> KernelSpec:
    return KernelSpec(
        argv=[sys.executable, "-m", KERNEL_MAIN, "-f", "{connection_file}", *KERNEL_ARGS],
        display_name=DISPLAY_NAME,
        language="python",
        env=dict(env or {}),
        metadata={"debugger": False},
    )


def _without_pause(method: Any) -> Any:
    """jupyter_client's ``in_pending_state`` (the manager's ``ready`` future made pending, then
    given the method's outcome) without the 10 ms it sleeps after the method "to ensure tests can
    capture the state": a run's end waits for its last kernel's shutdown (at a start the pause
    overlaps the kernel's own initialization, so that is no faster). A jupyter_client whose method
    is not so wrapped is used as it is."""
    inner = getattr(method, "__wrapped__", None)
    if inner is None:
        return method

    @functools.wraps(inner)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._attempted_start or not self._ready:
            self._ready = jupyter_manager._get_future()
        try:
            out = await inner(self, *args, **kwargs)
        except Exception as e:
            self._ready.set_exception(e)
            self.log.exception(self._ready.exception())
            raise
        if self.owns_kernel:
            self._ready.set_result(None)
        return out

    return wrapper


_ipc: Path | None = None


def _ipc_dir() -> Path:
    """One private folder a process for the kernels' sockets, removed when the process ends."""
    global _ipc
    if _ipc is None:
        # Named by this process's id: a runner killed with SIGKILL leaves its folder of sockets,
        # and the next runner removes it.
        _ipc = Path(tempfile.mkdtemp(prefix=owned_temp_name("psbridge-kernels-")))
        atexit.register(shutil.rmtree, _ipc, True)
    return _ipc


class ReadyClient(AsyncKernelClient):
    """A kernel client that knows its kernel is ready when the kernel says so, not after a pause.

    jupyter_client's ``wait_for_ready`` asks for ``kernel_info`` and then waits 0.2 s on IOPub
    (twice, when the subscription was not yet connected for the first answer): a fifth of a
    second on every step. Here the kernel is ready when its ``kernel_info`` reply has come and
    IOPub proves its subscription connected: the ``idle`` status of that same request, or the
    ``iopub_welcome`` a kernel sends a new subscriber (JEP 65); with neither, it asks again.

    A kernel that welcomes the new subscription first (ipykernel 7) is ready at that welcome:
    IOPub is connected, and what is sent on the shell socket before the kernel reads it is queued,
    not lost (a kernel still starting reads it once started). The runner's pool has had the
    kernel's ``kernel_info`` reply (and, for a kernel not forked, run its warming code) through a
    client of its own before it hands a kernel to a step, and a kernel that dies later is seen by
    its manager. That saves a ``kernel_info`` round trip on every step.
    """

    async def _async_wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        welcome = await self._reply_to("", self.iopub_channel, min(0.05, deadline - time.monotonic()),
                                       idle=True)
        if welcome is not None and welcome.get("msg_type") == "iopub_welcome" \
                and await self._async_is_alive():
            return
        while True:
            asked = self.kernel_info()
            reply = await self._reply_to(asked, self.shell_channel, min(1.0, deadline - time.monotonic()))
            if reply is not None and await self._reply_to(asked, self.iopub_channel, 0.05, idle=True):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")

    # AsyncKernelClient binds its public name to the base class's function, not to the override.
    wait_for_ready = _async_wait_for_ready

    def start_channels(self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = False,
                       control: bool = True) -> None:
        """The channels, without the heartbeat unless asked: a client its kernel manager made asks
        the manager whether the kernel lives (the process), never the heartbeat, whose thread and
        socket cost each step's client about a millisecond to start and stop."""
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)

    @staticmethod
    async def _reply_to(msg_id: str, channel: Any, within: float,
                        idle: bool = False) -> dict[str, Any] | None:
        """The message on ``channel`` answering ``msg_id`` (with ``idle``: its idle status, or the
        welcome of a subscription that is connected)."""
        end = time.monotonic() + max(within, 0.0)
        while (left := end - time.monotonic()) > 0:
            try:
                msg: dict[str, Any] = await channel.get_msg(timeout=left)
            except Empty:
                return None
            if idle and msg.get("msg_type") == "iopub_welcome":
                return msg
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if not idle or (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"):
                return msg
        return None


def kernel_manager_class(env: Mapping[str, str] | None = None, stderr_log: Path | None = None,
                         forked: bool = False) -> type[AsyncKernelManager]:
    """An ``AsyncKernelManager`` subclass that starts ``sys.executable`` with ``env`` added.

    With ``stderr_log``, what kernels write to their standard error (start-up warnings, the
    complaint of an idle kernel interrupted before shutdown) goes to that file, not the terminal.
    With ``forked``, kernels are forked from this process's kernel zygote
    (:mod:`psbridge.runbook.zygote`), where the platform forks; they are started the ordinary way
    where it does not, or if the zygote fails (said in the log).
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
            self.client_factory = ReadyClient
            # Whether the kernel now running was forked from the zygote (its modules imported).
            self.forked = False

        @property
        def kernel_spec(self) -> KernelSpec:
            return spec

        start_kernel = _without_pause(AsyncKernelManager.start_kernel)
        shutdown_kernel = _without_pause(AsyncKernelManager.shutdown_kernel)

        async def _async_wait(self, pollinterval: float = 0.1) -> None:
            # jupyter_client looks every 0.1 s whether a kernel it shut down is gone; a killed
            # kernel is gone (reaped) within a millisecond or two, and the run's end waits for the
            # last one (at 10 ms a look, 20 ms of a no-change run's end). A look is one kill(pid, 0)
            # or waitpid.
            await super()._async_wait(pollinterval=min(pollinterval, 0.002))

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            self.forked = forked and self._fork(**kw)
            if self.forked:
                return
            if stderr_log is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            # The documented place to launch kernels differently; Popen keeps its own handle.
            with open(stderr_log, "ab") as err:
                kw.setdefault("stderr", err)
                await super()._async_launch_kernel(kernel_cmd, **kw)

        def _fork(self, **kw: Any) -> bool:
            cwd = str(kw.get("cwd") or os.getcwd())
            env = dict(kw.get("env") or os.environ)
            env[ENV_RUNNER_PID] = str(os.getpid())  # a forked kernel's parent is the zygote
            try:
                zygote = shared_zygote()
                if zygote is None:
                    return False
                pid = zygote.fork(self.connection_file, env, cwd,
                                  str(stderr_log) if stderr_log else None)
            except (ZygoteError, OSError) as e:  # OSError: the zygote itself could not be started
                log.warning("starting the kernel the ordinary way: %s", e)
                return False
            # What LocalProvisioner.launch_kernel records of a process it started itself: the
            # manager polls, signals (the child leads a process group of its own) and waits on it.
            provisioner: Any = self.provisioner
            provisioner.process = ForkedProcess(pid)
            provisioner.pid = provisioner.pgid = pid
            provisioner.cwd = cwd
            self._reconcile_connection_info(provisioner.connection_info)
            return True

    return InterpreterKernelManager


def engine_kwargs(env: Mapping[str, str] | None = None, stderr_log: Path | None = None) -> dict[str, Any]:
    """What :func:`papermill.execute_notebook` passes on to nbclient to use that kernel."""
    return {"kernel_manager_class": kernel_manager_class(env, stderr_log)}


def new_stderr_log() -> Path:
    """A fresh file for one run's kernel messages, in this process's private folder."""
    return _ipc_dir() / f"stderr-{uuid.uuid4().hex[:12]}.log"
