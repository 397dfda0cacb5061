"""The lab as a background process: ``psbridge lab up`` spawns it, ``psbridge lab down`` ends it.

The serving process is ``python -m psbridge.lab serve --state DIR ...``. It is found again
through ``lab.json`` (``ready`` and ``pid``). Stopping it is asked for with a file,
``<state>/lab.stop``, which works the same on every platform (a console control event cannot
reach a detached process on Windows); the process also stops on SIGTERM, SIGINT and, on
Windows, Ctrl-Break.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from psbridge.files import LockTimeout, claim, write_atomic
from psbridge.lab.config import LabConfig, LabConfigError
from psbridge.lab.orchestrator import Lab, LabError

STOP_FILE = "lab.stop"
LOG_FILE = "lab.log"
LOCK_FILE = "lab.lock"  # locked (by the operating system) by the process serving this state directory
PID_FILE = "lab.pid"  # that process's id
_POLL = 0.1  # seconds between looks at lab.json / the process while waiting (each wait is bounded)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (never signals it)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    # A child of this process that exited is a zombie until reaped: it no longer serves.
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """An exited process that its parent (init, for a detached lab) has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False  # no /proc (macOS): os.kill is all there is
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def described(state_dir: Path) -> LabConfig | None:
    try:
        return LabConfig.load(state_dir)
    except LabConfigError:
        return None


def running(state_dir: Path) -> LabConfig | None:
    """lab.json of a lab serving for ``state_dir`` from a live process, else None."""
    config = described(state_dir)
    if config is None or not config.ready or config.pid is None or not pid_alive(config.pid):
        return None
    return config


def _mark_stopped(state_dir: Path) -> None:
    config = described(state_dir)
    if config is not None and config.ready:
        config.model_copy(update={"ready": False}).save(LabConfig.path_for(state_dir))


# --- the serving process ------------------------------------------------------------------


def serve(lab: Lab, on_ready: Callable[[LabConfig], None] | None = None) -> None:
    """Start ``lab`` and serve until a signal or a stop request; then stop it cleanly."""
    claimed = _claim(lab.state_dir)
    stop_file = lab.state_dir / STOP_FILE
    stop_file.unlink(missing_ok=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {}
    try:
        for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, on_signal)
        lab.start()
        if on_ready is not None:
            on_ready(lab.config)
        # Short waits so a stop request by file is noticed; signals set the event at once.
        while not stop.wait(0.25):
            if stop_file.exists():
                break
    finally:
        lab.stop()
        stop_file.unlink(missing_ok=True)
        claimed.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _claim(state_dir: Path) -> contextlib.ExitStack:
    """Become the one process serving ``state_dir`` (two at once would overwrite lab.json).

    The claim is an operating-system lock on ``lab.lock``: it lasts while this process lives and
    the system drops it when the process ends, however it ends, so a killed server's claim is
    free for the next one and a live one's is never taken. ``lab.pid`` beside it names the
    holder for the refusal.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = claim(state_dir / LOCK_FILE)
    except LockTimeout:
        holder = _holder(state_dir)
        said = f" (pid {holder})" if holder else ""
        raise LabError(f"a lab is already running for {state_dir}{said}") from None
    held = contextlib.ExitStack()
    held.callback(lock.release)
    pid_file = state_dir / PID_FILE
    try:
        write_atomic(pid_file, str(os.getpid()))
    except BaseException:
        held.close()
        raise
    held.callback(pid_file.unlink, missing_ok=True)
    return held


def _holder(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None  # the holder has not written it yet


# --- the controlling side -----------------------------------------------------------------


def spawn(state_dir: Path, args: list[str], timeout: float = 60.0) -> LabConfig:
    """Start ``python -m psbridge.lab serve`` detached; return its lab.json once it is ready."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STOP_FILE).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "psbridge.lab", "serve", "--state", str(state_dir), *args]
    env = {**os.environ, "PSBRIDGE_LAB_STATE": str(state_dir)}
    kwargs: dict[str, object] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    else:
        kwargs["start_new_session"] = True  # a Ctrl-C in the terminal that ran `lab up` must not end it
    log_path = state_dir / LOG_FILE
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, **kwargs)  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        config = described(state_dir)
        if config is not None and config.ready and config.pid == proc.pid:
            return config
        if code is not None:
            raise LabError(f"the lab process exited with code {code} before it was ready:\n{_tail(log_path)}")
        time.sleep(_POLL)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    raise LabError(f"the lab was not ready within {timeout:g} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def shutdown(state_dir: Path, timeout: float = 30.0) -> int | None:
    """Stop the lab serving for ``state_dir``; returns its pid, or None if none was running."""
    config = running(state_dir)
    if config is None:
        _mark_stopped(state_dir)
        return None
    pid = config.pid
    assert pid is not None
    (state_dir / STOP_FILE).touch()
    if sys.platform != "win32":
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL)
    if pid_alive(pid):
        # It did not stop when asked: end it (TerminateProcess on Windows).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    (state_dir / STOP_FILE).unlink(missing_ok=True)
    _mark_stopped(state_dir)
    return pid
