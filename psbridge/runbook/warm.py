"""Warm kernels: each step gets a kernel of its own, started (and psbridge imported) ahead of need.

Starting a Python kernel and importing what a step uses (pypsrp, msal, cryptography, pandas,
papermill's own client) costs a couple of seconds; the protocols a step speaks cost a fraction of
that. So while one step runs, the next step's kernel starts and imports in the background; when
the step ends, its kernel is shut down in the background too. Every step still runs in a new
process: nothing of an earlier step's namespace, module state or remembered secrets is there.

A kernel that died while it waited, or that does not answer while warming, is not handed out:
it is killed, replaced, and the replacement is reported (:attr:`KernelPool.events`), so the
record says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.errors import RunbookError
from psbridge.runbook.zygote import STEP_MODULES

log = logging.getLogger(__name__)


class KernelError(RunbookError):
    """No kernel could be had for a step: it would not start, or not answer while warming."""

# What a step's notebook imports, imported before the step starts: every step module (new ones
# too) and what they lean on. Inside a function, so that no name is left in the kernel's
# namespace; run silently, so no execution count or history entry is used.
WARM_CODE = f"""\
def _psbridge_warm():
    import importlib, pkgutil
    import psbridge.runbook.steps as steps
    for found in pkgutil.iter_modules(steps.__path__, steps.__name__ + "."):
        importlib.import_module(found.name)
    for name in {STEP_MODULES!r}:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
_psbridge_warm()
del _psbridge_warm
"""


@dataclass
class WarmKernel:
    """A started kernel, its modules imported, waiting for one step."""

    manager: Any  # jupyter_client's AsyncKernelManager (a subclass of psbridge.runbook.kernel's)
    started: float
    warm_seconds: float
    timings_file: Path | None = None
    # What this kernel's kernel_info reply said of its language, asked while it warmed: the
    # executed notebook's metadata.language_info, without asking again after the step's cells.
    language_info: dict[str, Any] | None = None
    # The client that warmed it, its channels still connected: the step's client, so the step
    # does not connect, and wait for the kernel's welcome, again (take_client()).
    client: Any = None

    def take_client(self) -> Any:
        """The connected client, now the caller's to stop (None once taken)."""
        client, self.client = self.client, None
        return client

    def close_client(self) -> None:
        client = self.take_client()
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self.manager, "provisioner", None)
        process = getattr(provisioner, "process", None)
        pid = getattr(process, "pid", None)
        return int(pid) if pid is not None else None

    def alive(self) -> bool:
        provisioner = getattr(self.manager, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return process is not None and process.poll() is None


@dataclass
class KernelPool:
    """Kernels for the steps of one run, one ahead of the step that runs.

    ``manager_for(n)`` makes the kernel manager of the n-th kernel (its environment included).
    ``needed``: how many kernels the run will take, when it knows; none is started beyond them
    (the last step's run would otherwise start one nobody takes, and wait for its shutdown),
    except to replace one that failed.
    ``quick``: the kernels are forked from the zygote (some 40 ms a start, most of it the kernel's
    own CPU): a take that must wait does not start the next kernel beside the one it waits for,
    which would share the two CPUs with it (the run's first kernel ready at 60 ms rather than 43);
    the next one starts when :meth:`start_next` is called. Kernels started the ordinary way take a
    second or more: there the next one starts at once, or every other step would wait.
    """

    manager_for: Callable[[int], tuple[Any, Path | None]]
    ahead: int = 1
    start_timeout: float = 60.0
    warm_timeout: float = 60.0
    needed: int | None = None
    quick: bool = False
    # The kernels' working folder (the notebooks' folder, as papermill's ``cwd`` gives a kernel it
    # starts); None: this process's at the time each starts (papermill changes it during a step).
    cwd: str | None = None
    events: list[str] = field(default_factory=list)
    _executor: ThreadPoolExecutor = field(init=False)
    _pending: list[Future[WarmKernel]] = field(default_factory=list, init=False)
    _count: int = field(default=0, init=False)
    _handed: int = field(default=0, init=False)
    _waiting: int = field(default=0, init=False)  # 1 while take() waits for a kernel
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # One worker a kernel ahead, one for shutting used ones down.
        self._executor = ThreadPoolExecutor(max_workers=self.ahead + 1, thread_name_prefix="psbridge-kernel")
        self.start_next()

    def start_next(self) -> None:
        """Start kernels until ``ahead`` wait, or every kernel still needed is started."""
        with self._lock:
            while not self._closed and len(self._pending) < self.ahead and (
                    self.needed is None or self._handed + self._waiting + len(self._pending) < self.needed):
                self._submit()

    def _submit(self) -> None:  # the lock held
        self._count += 1
        self._pending.append(self._executor.submit(self._warm, self._count))

    def _warm(self, number: int) -> WarmKernel:
        manager, timings = self.manager_for(number)
        t0 = time.monotonic()
        try:
            client, language = asyncio.run(_start_and_warm(manager, WARM_CODE, self.warm_timeout, self.cwd))
        except BaseException:
            _shutdown(manager)
            raise
        return WarmKernel(manager, t0, time.monotonic() - t0, timings, language, client)

    def take(self, start_next: bool = True) -> WarmKernel:
        """The next warm kernel (waiting for it if it is still starting); another starts behind it,
        now, or with ``start_next`` False when :meth:`start_next` is called (the runner calls it
        once the step's cells run: starting a kernel is work for the runner's own threads too) or
        this kernel must be waited for (unless kernels start ``quick``)."""
        for _ in range(3):
            with self._lock:
                if self._closed:
                    raise KernelError("the kernel pool is closed")
                if not self._pending:  # replacing one that failed, or a take beyond those needed
                    self._submit()
                future = self._pending.pop(0)
                self._waiting = 1
            if start_next or not (future.done() or self.quick):  # a long wait: the next starts meanwhile
                self.start_next()
            try:
                kernel = future.result(timeout=self.start_timeout + self.warm_timeout)
            except Exception as e:  # any way a kernel fails to start: replaced, and said with its cause
                self._report(f"a kernel did not start or answer while warming ({type(e).__name__}: {e}); "
                             "it was replaced")
                continue
            if kernel.alive():
                with self._lock:
                    self._handed += 1
                    self._waiting = 0
                    # A zygote that failed: kernels start the ordinary way from here on.
                    self.quick = self.quick and bool(getattr(kernel.manager, "forked", False))
                return kernel
            self._report(f"the kernel (pid {kernel.pid}) waiting for this step had died; it was replaced")
            self.discard(kernel)
        with self._lock:
            self._waiting = 0
        raise KernelError("three kernels in a row failed to start; see kernels.log")

    def _report(self, text: str) -> None:
        log.warning("%s", text)
        self.events.append(text)

    def discard(self, kernel: WarmKernel) -> None:
        """Shut a used (or broken) kernel down in the background: never reused."""
        if self._closed:
            _retire(kernel)
            return
        self._executor.submit(_retire, kernel)

    def close(self) -> None:
        """Stop starting kernels; shut down those started and not taken; wait for every shutdown."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, []
        for future in pending:
            with contextlib.suppress(Exception):
                _retire(future.result(timeout=self.start_timeout + self.warm_timeout))
        self._executor.shutdown(wait=True)

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _start_and_warm(manager: Any, code: str, timeout: float,
                          cwd: str | None = None) -> tuple[Any, dict[str, Any] | None]:
    """Start the kernel and, unless it was forked from the zygote, run ``code`` in it without a
    trace in its history; raise if it fails or hangs. Returns the client, still connected, and the
    language_info of the kernel's kernel_info reply. (The client's sockets move to the event loop
    of the thread that uses them next, as pyzmq's asyncio sockets do when a loop changes.)"""
    await manager.start_kernel(**({"cwd": cwd} if cwd else {}))
    await _bound(manager, timeout)
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        # A kernel forked from the zygote has all of these imported already (the zygote imports
        # the same modules before it forks): running the code would only be a round trip, on the
        # runner's threads and the kernel's CPU while the step before runs (about 2% of a
        # no-change run). Its kernel_info reply below proves it answers all the same.
        if not getattr(manager, "forked", False):
            reply = await client.execute(code, silent=True, store_history=False, reply=True, timeout=timeout)
            if reply["content"].get("status") != "ok":
                content = reply["content"]
                raise KernelError(
                    f"warming the kernel failed: {content.get('ename')}: {content.get('evalue')}")
        info = await client.kernel_info(reply=True, timeout=timeout)
    except BaseException:
        client.stop_channels()
        raise
    language = info["content"].get("language_info")
    return client, dict(language) if isinstance(language, dict) else None


async def _bound(manager: Any, timeout: float) -> None:
    """Wait until a kernel on Unix sockets has bound them: a client connecting earlier is retried
    by ZeroMQ only after its reconnect interval (100 ms), most of a forked kernel's start."""
    if getattr(manager, "transport", "tcp") != "ipc":
        return
    ports = [manager.shell_port, manager.iopub_port, manager.stdin_port, manager.hb_port,
             manager.control_port]
    paths = [Path(f"{manager.ip}-{port}") for port in ports]
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline or (manager.has_kernel and not await manager.is_alive()):
            return  # wait_for_ready says what is wrong
        await asyncio.sleep(0.005)


def _retire(kernel: WarmKernel) -> None:
    kernel.close_client()  # a kernel never taken, or taken by a step that did not use its client
    _shutdown(kernel.manager)


def _shutdown(manager: Any) -> None:
    with contextlib.suppress(Exception):  # a kernel that is gone already is shut down
        asyncio.run(manager.shutdown_kernel(now=True))
