"""The lab's secret store, ``lab:NAME`` references: ``<lab state>/secrets.json``.

The lab's account passwords live here, and the secrets a step creates during a demo land here,
so a demo needs no keyring. Not for production use. The lab registers this backend itself when
this module is imported; :mod:`psbridge.secrets` imports it the first time it meets a ``lab:``
reference, so a run against a real deployment loads nothing of the lab.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from psbridge import files
from psbridge.secrets import SecretError, _write_private, register_backend


def lab_state_dir() -> Path:
    """Where the embedded lab keeps its world (``PSBRIDGE_LAB_STATE`` overrides the default)."""
    env = os.environ.get("PSBRIDGE_LAB_STATE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("psbridge")) / "lab"


class LabBackend:
    """``lab:NAME``: the lab's secret store, ``<lab state>/secrets.json``.

    The lab's account passwords live here, and secrets a step creates during a demo land
    here, so a demo needs no keyring. Not for production use. The lab server, the CLI, a run
    and its kernels all write it: every change re-reads the file under a cross-process lock.
    """

    writable = True
    _NAME = re.compile(r"^[A-Za-z0-9_.@/-]+$")

    def check(self, locator: str) -> None:
        if not self._NAME.match(locator):
            raise SecretError("a lab: reference is written lab:NAME with letters, digits and _.@/- only")

    @staticmethod
    def path() -> Path:
        return lab_state_dir() / "secrets.json"

    def _load(self, p: Path) -> dict[str, str]:
        if not p.exists():
            return {}
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise SecretError(f"the lab secret store {p} is not a JSON object")
        return {str(k): str(v) for k, v in data.items()}

    def get(self, locator: str) -> str:
        # No lock: every write replaces the whole file, so a read sees one version of it.
        data = self._load(self.path())
        if locator not in data:
            raise SecretError(f"no secret 'lab:{locator}' in the lab secret store {self.path()}")
        return data[locator]

    def put(self, locator: str, value: str) -> None:
        with self._changing() as data:
            data[locator] = value

    def delete(self, locator: str) -> None:
        if not self.path().exists():
            return  # nothing stored: no lock file, nor a state folder, made for nothing
        with self._changing() as data:
            data.pop(locator, None)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, str]]:
        p = self.path()
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(files.locked(files.lock_path(p)))
            except files.LockTimeout as e:
                raise SecretError(
                    f"the lab secret store {p} stayed locked by another process for {e.timeout:g} s"
                ) from None
            data = self._load(p)
            before = dict(data)
            yield data
            if data != before:
                _write_private(p, json.dumps(data, indent=2, sort_keys=True))


register_backend("lab", LabBackend())
