"""Per-server fault injection for the lab's WinRM endpoints.

Faults live in ``<state>/faults.json`` so that ``psbridge lab fault ...`` in one process
changes a lab serving in another; an endpoint reads the file on every request (cached by
the file's identity, so an unchanged file costs one ``stat``). Knobs:

``drop_after``
    N requests are answered, then the connection carrying the next one is dropped without
    an answer, once per setting (a client that reconnects gets served again).
``delay``
    seconds added before each answer.
``fail_commands``
    command name -> message: such a command fails with a terminating error carrying the
    message (handed to commands as ``ctx.fail_commands``, lower-case keys).
``deny_auth``
    every sign-in is answered 401, as if the account were locked out.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.errors import LabSettingError
from psbridge.files import lock_path, locked, write_atomic

FAULTS_FILE = "faults.json"
KNOBS = ("drop_after", "delay", "fail_commands", "deny_auth")


@dataclass(frozen=True)
class Faults:
    """The faults set for one server; the default is "no fault"."""

    drop_after: int | None = None
    delay: float = 0.0
    fail_commands: dict[str, str] = field(default_factory=dict)
    deny_auth: bool = False
    # Changes on every set_faults, so a counter of requests restarts with a new setting.
    generation: str = ""

    @property
    def any(self) -> bool:
        return bool(self.drop_after is not None or self.delay or self.fail_commands or self.deny_auth)


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / FAULTS_FILE


def _load(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _store(state_dir: Path, data: dict[str, dict[str, Any]]) -> None:
    # Readers in another process must never see half a file.
    write_atomic(_path(state_dir), json.dumps(data, indent=2, sort_keys=True))


@contextlib.contextmanager
def _changing(state_dir: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """Read, change and write the faults under one lock.

    ``psbridge lab fault`` in another process and this process's threads all take it, so no
    change overwrites another.
    """
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with locked(lock_path(_path(state_dir))):
        data = _load(state_dir)
        yield data
        _store(state_dir, data)


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    """``value`` as that kind of number, or None when it is not one (text such as "soon")."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _validate(knobs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise LabSettingError(f"unknown fault knob(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}")
    out: dict[str, Any] = {}
    for name, value in knobs.items():
        if value is None:
            out[name] = None
        elif name == "drop_after":
            if isinstance(value, bool) or _number(value, int) is None or int(value) < 0:
                raise LabSettingError("drop_after must be a number of requests, 0 or more")
            out[name] = int(value)
        elif name == "delay":
            seconds = _number(value, float)
            if seconds is None or seconds < 0:
                raise LabSettingError("delay must be 0 seconds or more")
            out[name] = seconds
        elif name == "fail_commands":
            if not isinstance(value, dict):
                raise LabSettingError("fail_commands must map command names to messages")
            out[name] = {str(k).strip().lower(): str(v) for k, v in value.items()}
        else:
            out[name] = bool(value)
    return out


def set_faults(state_dir: Path, server: str, **knobs: Any) -> Faults:
    """Set (merge) fault knobs for ``server``; a knob set to ``None`` is removed."""
    changes = _validate(knobs)
    with _changing(state_dir) as data:
        entry = {k: v for k, v in data.get(server, {}).items() if k in KNOBS}
        entry.update(changes)
        # "drop after 0 requests" is a setting; a zero delay or an empty map is not.
        entry = {k: v for k, v in entry.items() if v is not None and (k == "drop_after" or bool(v))}
        if entry:
            entry["generation"] = uuid.uuid4().hex
            data[server] = entry
        else:
            data.pop(server, None)
    return read_faults(state_dir, server)


def clear_faults(state_dir: Path, server: str | None = None) -> None:
    """Remove the faults of one server, or of every server."""
    with _changing(state_dir) as data:
        if server is None:
            data.clear()
        else:
            data.pop(server, None)


def _from_entry(entry: dict[str, Any]) -> Faults:
    drop = entry.get("drop_after")
    return Faults(
        drop_after=int(drop) if drop is not None else None,
        delay=float(entry.get("delay") or 0.0),
        fail_commands={str(k).lower(): str(v) for k, v in (entry.get("fail_commands") or {}).items()},
        deny_auth=bool(entry.get("deny_auth", False)),
        generation=str(entry.get("generation", "")),
    )


_CACHE: dict[Path, tuple[tuple[int, int, int], dict[str, dict[str, Any]]]] = {}
_CACHE_LOCK = threading.Lock()


def read_faults(state_dir: Path, server: str) -> Faults:
    """The faults currently set for ``server`` (re-read only when the file changed)."""
    path = _path(state_dir)
    try:
        st = path.stat()
    except FileNotFoundError:
        return Faults()
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
    if cached is None or cached[0] != key:
        try:
            data = _load(state_dir)
        except (OSError, ValueError):
            return Faults()
        with _CACHE_LOCK:
            _CACHE[path] = (key, data)
    else:
        data = cached[1]
    entry = data.get(server)
    return _from_entry(entry) if isinstance(entry, dict) else Faults()


def all_faults(state_dir: Path) -> dict[str, Faults]:
    """Every server's faults (for ``psbridge lab status``); servers without faults are absent."""
    return {server: _from_entry(entry) for server, entry in sorted(_load(state_dir).items())
            if isinstance(entry, dict)}


class DropCounter:
    """Counts one server's answered requests against ``drop_after``.

    Shared by every endpoint of the server in this process. ``should_drop`` answers True
    exactly once per setting: for the request after the N answered ones.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = ""
        self._count = 0
        self._spent = False

    def should_drop(self, faults: Faults) -> bool:
        with self._lock:
            if faults.generation != self._generation:
                self._generation, self._count, self._spent = faults.generation, 0, False
            if faults.drop_after is None or self._spent:
                return False
            if self._count >= faults.drop_after:
                self._spent = True
                return True
            self._count += 1
            return False


_COUNTERS: dict[tuple[str, str], DropCounter] = {}
_COUNTERS_LOCK = threading.Lock()


def drop_counter(state_dir: Path, server: str) -> DropCounter:
    key = (str(Path(state_dir).resolve()), server.lower())
    with _COUNTERS_LOCK:
        return _COUNTERS.setdefault(key, DropCounter())
