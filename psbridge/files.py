"""Files that more than one process may touch: an atomic write and a cross-process lock.

Several processes share files: two runs or a batch write records and the token cache, the
``psbridge lab`` CLI changes the world and the faults while the lab server reads and changes
them too, every process reads and writes the lab secret store. Two ways of doing that go wrong:

- *Writing in place, or through a fixed temporary name* (``world.json.tmp``). A reader sees a
  half-written file; two writers share one temporary file and one of them replaces the target
  with the other's half-written bytes, or finds it gone. :func:`write_atomic` writes to a name
  no other writer can pick (:func:`tempfile.mkstemp`, in the target's folder so the rename
  stays on one file system), flushes and fsyncs it (without that, a crash soon after the
  rename can leave an empty file on common file systems), replaces the target with
  :func:`os.replace` and fsyncs the folder so the rename itself is durable where the OS allows.
  Windows refuses the replace while another process has the target open for a moment; the
  replace is retried briefly there.
- *A lock made of a file's existence* (``O_EXCL``). Its holder can die and leave it behind, so
  every waiter has to guess when it is stale. :func:`locked` holds an operating-system lock
  (``flock`` / ``LockFileEx``, through the ``filelock`` library): the kernel releases it when the
  holder exits, however it exits, so nothing is guessed and nothing is broken by force.

Threads of one process first queue on a threading lock of the same path, so they wait on each
other without polling and a thread may take a lock it already holds again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from psbridge.errors import LockTimeout as LockTimeout  # re-exported for its callers

if TYPE_CHECKING:
    from filelock import BaseFileLock

T = TypeVar("T")

PRIVATE_MODE = 0o600
TEMPORARY_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
DEFAULT_LOCK_TIMEOUT = 30.0
# Between two attempts at a lock another process holds: short, since holders keep it for one
# read-modify-write of a small file.
_POLL_INTERVAL = 0.01
_REPLACE_ATTEMPTS = 50
_REPLACE_PAUSE = 0.01


# --- atomic write ----------------------------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, private: bool = False,
                 encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` so that every reader sees the old file or the new one, whole.

    ``private`` makes the file readable and writable by its owner only (mode 0o600; advisory on
    Windows, where the folder's ACL decides), for files that carry secrets. Otherwise the file
    gets the mode a plain ``open()`` would give it. A failed write leaves the old file and no
    temporary one.
    """
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                # mkstemp always makes 0o600; a file that is not secret keeps the usual mode.
                os.fchmod(f.fileno(), PRIVATE_MODE if private else _default_mode())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        retrying_on_windows(lambda: os.replace(tmp, target))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)
    return target


def retrying_on_windows(action: Callable[[], T]) -> T:
    """Run ``action``, retrying briefly on PermissionError.

    Windows refuses to replace, and sometimes to open, a file that another process has open
    that instant (without delete sharing); the refusal lasts as long as that other access.
    """
    for _ in range(_REPLACE_ATTEMPTS - 1):
        try:
            return action()
        except PermissionError:
            if sys.platform != "win32":
                raise
            time.sleep(_REPLACE_PAUSE)
    return action()


def _fsync_folder(folder: Path) -> None:
    if sys.platform == "win32":
        return  # a folder cannot be opened as a file there; NTFS journals the rename itself
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not sync folders (EINVAL): the file itself is synced
    finally:
        os.close(fd)


_umask_guard = threading.Lock()
_umask: int | None = None


def _default_mode() -> int:
    """0o666 less the process umask: what ``open(path, "w")`` gives a new file."""
    global _umask
    with _umask_guard:
        if _umask is None:
            # The only portable way to read the umask is to set it. Set it to the strictest
            # usual value meanwhile, so a file another thread creates in that instant is
            # private rather than open.
            _umask = os.umask(0o077)
            os.umask(_umask)
        return 0o666 & ~_umask


# --- cross-process lock ----------------------------------------------------------------------


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file that guards ``path``: ``<path>.lock`` beside it."""
    p = Path(path)
    return p.with_name(p.name + LOCK_SUFFIX)


class _PathLock:
    """One path's lock in this process: a threading lock in front of the operating-system lock."""

    def __init__(self, path: str) -> None:
        from filelock import FileLock

        self.threads = threading.RLock()
        # Shared by the threads of this process, but only ever used by the one holding
        # ``threads``: its counter then makes a nested acquire by that thread reentrant.
        self.os_lock: BaseFileLock = FileLock(path, thread_local=False)


_locks: dict[str, _PathLock] = {}
_locks_guard = threading.Lock()


def _forget_locks() -> None:
    # A child made by fork inherits threading locks that threads which no longer exist may
    # hold: it starts with none.
    global _locks_guard
    _locks.clear()
    _locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def _path_lock(path: Path) -> _PathLock:
    key = os.path.abspath(path)
    with _locks_guard:
        entry = _locks.get(key)
        if entry is None:
            entry = _locks[key] = _PathLock(key)
        return entry


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Path]:
    """Hold the lock file ``path`` (for a state file, :func:`lock_path` of it) across processes.

    Waits at most ``timeout`` seconds (0: one attempt, negative: no limit), then raises
    :class:`LockTimeout`. The lock file is created if missing and may stay on disk after
    release: on its own it means nothing. A thread that holds the lock may take it again.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    entry = _path_lock(p)
    deadline = time.monotonic() + timeout
    if not _take(entry.threads, timeout):
        raise LockTimeout(p, timeout)
    try:
        from filelock import Timeout

        left = -1.0 if timeout < 0 else max(0.0, deadline - time.monotonic())
        try:
            entry.os_lock.acquire(timeout=left, poll_interval=_POLL_INTERVAL)
        except Timeout:
            raise LockTimeout(p, timeout) from None
        try:
            yield p
        finally:
            entry.os_lock.release()
    finally:
        entry.threads.release()


def claim(path: str | os.PathLike[str]) -> BaseFileLock:
    """Take the lock file ``path`` now, for as long as the caller keeps it, or raise :class:`LockTimeout`.

    For a process that must be the only one doing something (serving a lab state directory)
    for its whole life: not reentrant, so a second claim fails in this process too. Release it
    with ``.release()``; if the process dies first, the operating system releases it.
    """
    from filelock import FileLock, Timeout

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    held = FileLock(os.fspath(p), thread_local=False)
    try:
        held.acquire(timeout=0)
    except Timeout:
        raise LockTimeout(p, 0) from None
    return held


def _take(lock: threading.RLock, timeout: float) -> bool:
    if timeout < 0:
        return lock.acquire()
    if timeout == 0:
        return lock.acquire(blocking=False)
    return lock.acquire(timeout=timeout)


# --- temporary files a killed process would leave ------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signal 0
        return True
    return True


def owned_temp_name(prefix: str) -> str:
    """``PREFIX<pid>-`` for :func:`tempfile.mkstemp`/``mkdtemp``: what :func:`sweep_temp` recognises.

    A process killed with SIGKILL runs no clean-up; the next process of psbridge to make the same
    kind of temporary file removes what dead processes left (:func:`sweep_temp`).
    """
    sweep_temp(prefix)
    return f"{prefix}{os.getpid()}-"


def sweep_temp(prefix: str) -> None:
    """Remove the temporary files and folders named by :func:`owned_temp_name` whose process is gone."""
    import shutil

    root = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for path in root.glob(f"{prefix}*-*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if not _ours(path):
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()


def _ours(path: Path) -> bool:
    getuid = getattr(os, "getuid", None)  # not on Windows, whose temporary folder is per user
    return getuid is None or path.lstat().st_uid == getuid()
