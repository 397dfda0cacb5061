"""Knobs of a lab twin kept in a JSON file: faults and settings a test or ``psbridge lab`` turns.

The file is re-read when it changes, so another process (the CLI) can turn a knob of a twin
serving elsewhere; a change re-reads it under a cross-process lock, so two writers never lose
each other's change. The CRM Web API twin and the AD FS twin each have one, with their own
defaults (:data:`WEBAPI` and :data:`ADFS`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from psbridge.errors import LabSettingError
from psbridge.files import lock_path, locked, write_atomic

# The CRM Web API twin:
# - delay: seconds added before every answer; drop_after: answer N requests, then drop the
#   connection of the next one (once per setting); deny_auth: every sign-in refused (401)
# - fail_requests: "METHOD set" (e.g. "PATCH mailboxes") -> message: answered 500 with CRM's
#   error body carrying the message
# - expire_tokens_before: bearer tokens issued before this time (epoch seconds) are refused as
#   expired, the way a token revoked or expired early is; expire_next: the next N requests with a
#   bearer token are refused so (then it counts down); refuse_tokens: every token refused so
# - test_delay: seconds Test & Enable takes (unset: 2 s times the lab's pace, so at once in the test
#   suite, where the pace is 0, and a moment in the demo); allow_listed: whether Exchange
#   Online lets the tenant in (the allow-list since 1 Oct 2025)
# - page_size: the most records a page holds; extended_protection: Negotiate needs channel
#   bindings; client_certificate: how the client-certificate site refuses a client without one,
#   in the TLS handshake ("tls") or as IIS's 403.7 page ("iis")
WEBAPI: dict[str, Any] = {
    "delay": 0.0, "drop_after": None, "deny_auth": False, "fail_requests": {}, "expire_tokens_before": 0.0,
    "expire_next": 0, "refuse_tokens": False, "test_delay": None, "allow_listed": True, "page_size": 5000,
    "extended_protection": False, "client_certificate": "tls", "generation": "",
}
# The AD FS twin: access token lifetime (AD FS's default is an hour), who approves a device code
# (auto: the consultant's lab account at once), whether username/password sign-in is allowed,
# a clock offset to make tokens expire without waiting.
ADFS: dict[str, Any] = {
    "token_lifetime": 3600, "refresh_token_lifetime": 28800, "device_code_approval": "auto",
    "device_code_user": "LAB\\crmadmin", "password_grant": True, "clock_offset": 0.0,
}


class JsonKnobs:
    def __init__(self, path: Path, defaults: dict[str, Any]) -> None:
        self.path = Path(path)
        self.defaults = dict(defaults)
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._values = dict(defaults)

    def _refresh(self, force: bool = False) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._values = None, dict(self.defaults)
            return
        if force or mtime != self._mtime:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            except ValueError:
                data = {}
            self._values = {**self.defaults, **{k: v for k, v in data.items() if k in self.defaults}}
            self._mtime = mtime

    def get(self, name: str) -> Any:
        with self._lock:
            self._refresh()
            return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._refresh()
            return dict(self._values)

    def set(self, **values: Any) -> dict[str, Any]:
        unknown = set(values) - set(self.defaults)
        if unknown:
            raise LabSettingError(f"unknown knob(s): {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(k for k in self.defaults if k != 'generation')}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, locked(lock_path(self.path)):
            self._refresh(force=True)
            self._values.update(values)
            if "generation" in self.defaults:
                # A counter of requests (drop_after) starts again with every new setting.
                self._values["generation"] = f"{time.time_ns()}"
            write_atomic(self.path, json.dumps(self._values, indent=1, sort_keys=True))
            self._mtime = self.path.stat().st_mtime_ns
            return dict(self._values)

    def take(self, name: str) -> bool:
        """Use up one of a counted fault (``expire_next``): True if there was one left."""
        if not int(self.get(name) or 0):
            return False  # the usual case: no lock taken
        with self._lock, locked(lock_path(self.path)):
            self._refresh(force=True)
            left = int(self._values.get(name) or 0)
            if left <= 0:
                return False
            self._values[name] = left - 1
            write_atomic(self.path, json.dumps(self._values, indent=1, sort_keys=True))
            self._mtime = self.path.stat().st_mtime_ns
            return True

    def reset(self) -> None:
        with self._lock, locked(lock_path(self.path)):
            self._values = dict(self.defaults)
            if self.path.exists():
                write_atomic(self.path, json.dumps(self._values, indent=1, sort_keys=True))
                self._mtime = self.path.stat().st_mtime_ns

    def now(self) -> float:
        offset = float(self.get("clock_offset")) if "clock_offset" in self.defaults else 0.0
        return time.time() + offset
