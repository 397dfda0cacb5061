"""psbridge's own leftovers on a server: PFX files in its upload folder.

A PFX is uploaded only for the seconds a script reads it, and removed in a ``finally``. A run
killed in between (``kill -9``, a power cut, a connection that never came back) leaves the
file — a private key — in ``C:\\Windows\\Temp\\psbridge``. Nothing else writes there, so
everything found there is psbridge's: every run looks (preflight, before an upload, the
summary), removes what it finds and says so in the record; a plan only lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath, PureWindowsPath

from psbridge.remote.command import Cmd
from psbridge.remote.session import Session
from psbridge.remote.transfer import remove

# Where a PFX waits on the server while a script reads it (removed right after).
UPLOAD_FOLDER = PureWindowsPath(r"C:\Windows\Temp\psbridge")


@dataclass(frozen=True)
class Leftover:
    server: str
    path: PureWindowsPath
    size: int
    written: str

    def __str__(self) -> str:
        return f"{self.server}: {self.path} ({self.size} bytes, written {self.written})"


def find_leftovers(session: Session, folder: str | PurePath = UPLOAD_FOLDER) -> list[Leftover]:
    """The files in psbridge's upload folder on this server (read-only)."""
    where = PureWindowsPath(folder)
    present = session.invoke(Cmd("Test-Path", LiteralPath=str(where), PathType="Container")).output
    if not (present and present[-1] is True):
        return []
    found = session.invoke(Cmd("Get-ChildItem", LiteralPath=str(where), File=True, Force=True)).output
    out = []
    for item in found:
        get = getattr(item, "get_ci", None)
        if get is None:
            continue
        name = str(get("FullName", "") or where / str(get("Name", "")))
        out.append(Leftover(session.server, PureWindowsPath(name), int(get("Length", 0) or 0),
                            str(get("LastWriteTime", "") or "")))
    return out


def sweep_leftovers(session: Session, folder: str | PurePath = UPLOAD_FOLDER, *,
                    plan: bool = False) -> list[str]:
    """Remove what :func:`find_leftovers` finds; what was (in a plan: would be) removed, as sentences."""
    said = []
    for left in find_leftovers(session, folder):
        if plan:
            said.append(f"remove the leftover {left}")
            continue
        remove(session, left.path)
        session.record("leftover", f"removed {left.path}, left by an earlier run that did not finish")
        said.append(f"removed the leftover {left}")
    return said
