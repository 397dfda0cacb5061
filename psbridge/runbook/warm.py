"""Warm kernels: each step gets a kernel of its own, started (and psbridge imported) ahead of need.

Starting a Python kernel and importing what a step uses (pypsrp, msal, cryptography, pandas,
papermill's own client) costs a couple of seconds; the protocols a step speaks cost a fraction of
that. So while one step runs, the next step's kernel starts and imports in the background; when
the step ends, its kernel is shut down in the background too. Every step still runs in a new
process: nothing of an earlier step's namespace, module state or remembered secrets is there.

A kernel that died while it waited, or that does not answer while warming, is not handed out:
it is killed, replaced, and the replacement is reported (:attr:`KernelPool.events`), so the
record says so.

A process that runs one organization after another (a batch's worker) can have each run leave a
kernel for the next (:meth:`KernelPool.leave`, :func:`take_left`): started while the run's last
step runs, it is the next run's first kernel when that run's kernels would be started the same
way (the same environment but for psbridge's own variables, the same folder). It never ran a
step; the taking run points psbridge's variables in it at its own journal and timings
(:func:`retarget`) before its first step. Without it a run's first step waits for its kernel to
start (some 40 ms forked, a second or more otherwise).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.errors import RunbookError
from psbridge.runbook.zygote import OWN_PREFIX, STEP_MODULES

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
    # The first kernel, made ready by this call on the pool's thread (a kernel an earlier run left,
    # retargeted): handed out before any the pool starts itself, counted among those ``needed``.
    first: Callable[[], WarmKernel] | None = None
    # A kernel for the next run of this process: its manager and standard-error log, started as the
    # run's last step runs; :meth:`leave` keeps it, else it is shut down.
    spare: Callable[[], tuple[Any, Path]] | None = None
    events: list[str] = field(default_factory=list)
    _executor: ThreadPoolExecutor = field(init=False)
    _pending: list[Future[WarmKernel]] = field(default_factory=list, init=False)
    _count: int = field(default=0, init=False)
    _handed: int = field(default=0, init=False)
    _waiting: int = field(default=0, init=False)  # 1 while take() waits for a kernel
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _closed: bool = field(default=False, init=False)
    _spare: Future[tuple[WarmKernel, Path]] | None = field(default=None, init=False)
    _retiring: list[Future[None]] = field(default_factory=list, init=False)
    _leave_as: Hashable | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        # One worker a kernel ahead, one for shutting used ones down.
        self._executor = ThreadPoolExecutor(max_workers=self.ahead + 1, thread_name_prefix="psbridge-kernel")
        if self.first is not None:
            with self._lock:
                self._count += 1
                self._pending.append(self._executor.submit(self.first))
        self.start_next()

    def start_next(self) -> None:
        """Start kernels until ``ahead`` wait, or every kernel still needed is started (then the
        spare, if there is to be one)."""
        with self._lock:
            while not self._closed and len(self._pending) < self.ahead and (
                    self.needed is None or self._handed + self._waiting + len(self._pending) < self.needed):
                self._submit()
            # The spare once the run's last kernel is taken: it starts as the last step runs.
            if (self.spare is not None and self._spare is None and not self._closed
                    and self.needed is not None and self._handed + self._waiting >= self.needed):
                self._spare = self._executor.submit(self._warm_spare)

    def _warm_spare(self) -> tuple[WarmKernel, Path]:
        assert self.spare is not None
        # Once the kernels used before have gone: a run holds no more kernels at once than without
        # a spare (the runner, the zygote, the last step's kernel and this one).
        with self._lock:
            retiring = list(self._retiring)
        futures_wait(retiring)
        manager, stderr = self.spare()
        try:
            return self._started(manager, None), stderr
        except BaseException:
            stderr.unlink(missing_ok=True)
            raise

    def leave(self, key: Hashable) -> None:
        """Keep the spare, once started, for the next run of this process that asks for ``key``
        (:func:`take_left`), instead of shutting it down as the pool closes."""
        self._leave_as = key

    def _submit(self) -> None:  # the lock held
        self._count += 1
        self._pending.append(self._executor.submit(self._warm, self._count))

    def _warm(self, number: int) -> WarmKernel:
        return self._started(*self.manager_for(number))

    def _started(self, manager: Any, timings: Path | None) -> WarmKernel:
        """The kernel of ``manager`` started and warmed (shut down if that fails)."""
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
        with self._lock:
            self._retiring = [f for f in self._retiring if not f.done()]
            self._retiring.append(self._executor.submit(_retire, kernel))

    def close(self) -> None:
        """Stop starting kernels; shut down those started and not taken (the spare unless it is
        left for the next run); wait for every shutdown."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, []
            spare, self._spare = self._spare, None
        for future in pending:
            with contextlib.suppress(Exception):
                _retire(future.result(timeout=self.start_timeout + self.warm_timeout))
        if spare is not None:
            try:
                kernel, stderr = spare.result(timeout=self.start_timeout + self.warm_timeout)
            except Exception:  # noqa: S110  # a spare that failed is no loss: the next run starts its own
                pass
            else:
                if self._leave_as is not None and kernel.alive():
                    _keep_left(self._leave_as, kernel, stderr)
                else:
                    _retire(kernel)
                    stderr.unlink(missing_ok=True)
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


# --- a kernel left for the next run of this process --------------------------------------------

_left: tuple[Hashable, WarmKernel, Path] | None = None
_left_lock = threading.Lock()


def _keep_left(key: Hashable, kernel: WarmKernel, stderr: Path) -> None:
    global _left
    with _left_lock:
        earlier, _left = _left, (key, kernel, stderr)
    if earlier is not None:  # one at most: runs side by side in one process each left one
        _retire_left(earlier)


def take_left(key: Hashable) -> tuple[WarmKernel, Path] | None:
    """The kernel an earlier run of this process left for a run asking for ``key``, and its
    standard-error log (now the caller's to read and remove). A kernel left for another key, or
    that has died, is shut down (in the background) and None returned."""
    global _left
    with _left_lock:
        left, _left = _left, None
    if left is None:
        return None
    key_left, kernel, stderr = left
    if key_left == key and kernel.alive():
        return kernel, stderr
    threading.Thread(target=_retire_left, args=(left,), name="psbridge-kernel-retire", daemon=True).start()
    return None


def retire_left() -> None:
    """Shut the kernel left for a next run down, if there is one (at exit, or when a batch ends)."""
    global _left
    with _left_lock:
        left, _left = _left, None
    if left is not None:
        _retire_left(left)


def _retire_left(left: tuple[Hashable, WarmKernel, Path]) -> None:
    _retire(left[1])
    left[2].unlink(missing_ok=True)


atexit.register(retire_left)


# psbridge's variables in a left kernel, made the taking run's: set those the run gives its kernels,
# remove the others. In a function, so that no name is left in the kernel's namespace; silent, so no
# execution count or history entry is used.
_RETARGET_CODE = """\
def _psbridge_retarget(wanted):
    import os
    for name in [n for n in os.environ if n.startswith({prefix!r}) and n not in wanted]:
        del os.environ[name]
    os.environ.update(wanted)
_psbridge_retarget({wanted})
del _psbridge_retarget
"""


def retarget(kernel: WarmKernel, env: Mapping[str, str], timings_file: Path | None,
             timeout: float = 60.0) -> WarmKernel:
    """``kernel`` (left by an earlier run) with psbridge's variables of ``env`` as its own, and this
    run's timings file; raise if it does not answer."""
    wanted = {k: v for k, v in env.items() if k.startswith(OWN_PREFIX)}
    code = _RETARGET_CODE.format(prefix=OWN_PREFIX, wanted=repr(wanted))

    async def run() -> None:
        reply = await kernel.client.execute(code, silent=True, store_history=False, reply=True,
                                            timeout=timeout)
        if reply["content"].get("status") != "ok":
            content = reply["content"]
            raise KernelError(f"the kernel left by the run before would not take this run's settings: "
                              f"{content.get('ename')}: {content.get('evalue')}")

    try:
        asyncio.run(run())
    except BaseException:
        _retire(kernel)
        raise
    kernel.timings_file = timings_file
    return kernel


def _retire(kernel: WarmKernel) -> None:
    kernel.close_client()  # a kernel never taken, or taken by a step that did not use its client
    _shutdown(kernel.manager)


def _shutdown(manager: Any) -> None:
    with contextlib.suppress(Exception):  # a kernel that is gone already is shut down
        asyncio.run(manager.shutdown_kernel(now=True))
