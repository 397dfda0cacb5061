"""The twin's knobs: faults to inject and settings a test or the CLI may change while it runs.

Kept in ``<state>/entra-knobs.json`` and re-read when the file changes, so another process
(``psbridge lab fault``) can turn them; the running twin writes back the counters it uses up.

- ``throttle``: the next N Graph requests get ``429 TooManyRequests`` with ``Retry-After``.
- ``unavailable``: the next N Graph requests get ``503 serviceNotAvailable``.
- ``retry_after``: seconds named in ``Retry-After`` (429 and 503).
- ``token_lifetime``: seconds an access token lives (short for tests).
- ``device_code_approval``: ``auto`` (the lab admin approves at once, so a demo or a batch
  never blocks) or ``manual`` (someone enters the code at ``/devicelogin``, or a test calls
  ``EntraTwin.approve_device_code``).
- ``page_size``: how many objects a Graph collection page holds before ``@odata.nextLink``.
- ``clock_offset``: seconds added to the twin's clock, to make tokens expire without waiting.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psbridge.errors import LabSettingError
from psbridge.files import lock_path, locked, write_atomic

DEFAULTS: dict[str, Any] = {
    "throttle": 0,
    "unavailable": 0,
    "retry_after": 1,
    "token_lifetime": 3600,
    "device_code_approval": "auto",
    "page_size": 100,
    "clock_offset": 0.0,
}


class Knobs:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "entra-knobs.json"
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._values: dict[str, Any] = dict(DEFAULTS)

    def _refresh(self, force: bool = False) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._values = None, dict(DEFAULTS)
            return
        if force or mtime != self._mtime:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            self._values = {**DEFAULTS, **{k: v for k, v in data.items() if k in DEFAULTS}}
            self._mtime = mtime

    def _write(self) -> None:
        write_atomic(self.path, json.dumps(self._values, indent=1, sort_keys=True))
        self._mtime = self.path.stat().st_mtime_ns

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        # The CLI in another process sets knobs while the twin uses up its faults: a change
        # re-reads the file under a cross-process lock (an equal mtime proves nothing).
        with self._lock, locked(lock_path(self.path)):
            self._refresh(force=True)
            yield

    def get(self, name: str) -> Any:
        with self._lock:
            self._refresh()
            return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            return dict(self._values)

    def set(self, **values: Any) -> None:
        unknown = set(values) - set(DEFAULTS)
        if unknown:
            raise LabSettingError(
                f"unknown twin knob(s): {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}"
            )
        if "device_code_approval" in values and values["device_code_approval"] not in ("auto", "manual"):
            raise LabSettingError("device_code_approval must be 'auto' or 'manual'")
        with self._changing():
            self._values.update(values)
            self._write()

    def reset(self) -> None:
        with self._changing():
            self._values = dict(DEFAULTS)
            self._write()

    def take_fault(self) -> tuple[int, int] | None:
        """Use up one injected fault, if any: ``(status, retry_after)``."""
        if not any(int(self.get(name)) > 0 for name in ("throttle", "unavailable")):
            return None  # the usual case, on every Graph request: no lock taken
        with self._changing():
            for name, status in (("throttle", 429), ("unavailable", 503)):
                if int(self._values[name]) > 0:
                    self._values[name] = int(self._values[name]) - 1
                    self._write()
                    return status, int(self._values["retry_after"])
            return None

    def now(self) -> float:
        return time.time() + float(self.get("clock_offset"))
