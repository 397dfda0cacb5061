"""A lab server's file system: Windows paths on the server, files under the state directory.

``C:\\Temp\\s2s.pfx`` on ``CRM01`` is ``<state>/servers/CRM01/files/C/Temp/s2s.pfx``. Windows
paths are case-insensitive: an existing entry is found whatever the case it is named with,
and keeps the case it was created with, as NTFS does.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path, PureWindowsPath

from psbridge.errors import TwinAnswer

_BAD_CHARS = set('<>"|?*') | {chr(i) for i in range(32)}


class PathFormatError(TwinAnswer, ValueError):
    """Not a path Windows accepts (``The given path's format is not supported.``)."""


def windows_path(text: str) -> PureWindowsPath:
    """An absolute, normalised server path; relative paths are taken from the session's home."""
    p = PureWindowsPath(text.strip().replace("/", "\\"))
    if p.drive and not (len(p.drive) == 2 and p.drive[0].isalpha() and p.drive[1] == ":"):
        # A UNC share or device path is not on this server's disks (and must never leave the
        # lab's state directory on the machine running the lab).
        raise PathFormatError(text)
    if not p.drive:
        p = PureWindowsPath("C:\\Users\\Default\\Documents") / p
    if not p.root:
        p = PureWindowsPath(p.drive + "\\") / p.relative_to(p.drive)
    parts: list[str] = []
    for part in p.parts[1:]:
        if part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if set(part) & _BAD_CHARS or ":" in part:
            raise PathFormatError(text)
        parts.append(part.rstrip(" ."))  # Windows drops trailing dots and spaces
    return PureWindowsPath(p.drive.upper() + "\\", *parts)


class ServerFiles:
    """The files of one lab server."""

    def __init__(self, state_dir: Path, server: str) -> None:
        self.root = Path(state_dir) / "servers" / server / "files"

    def local(self, path: str | PureWindowsPath) -> Path:
        """Where a server path lives on this machine (existing entries matched case-insensitively)."""
        wp = path if isinstance(path, PureWindowsPath) else windows_path(path)
        here = self.root / wp.drive.rstrip(":").upper()
        for part in wp.parts[1:]:
            candidate = here / part
            if not candidate.exists() and here.is_dir():
                low = part.lower()
                for entry in here.iterdir():
                    if entry.name.lower() == low:
                        candidate = entry
                        break
            here = candidate
        return here

    def server_path(self, local: Path) -> PureWindowsPath:
        rel = local.relative_to(self.root)
        drive, *rest = rel.parts
        return PureWindowsPath(f"{drive}:\\", *rest)

    def exists(self, path: str | PureWindowsPath) -> bool:
        wp = path if isinstance(path, PureWindowsPath) else windows_path(path)
        if len(wp.parts) == 1:
            return wp.drive.upper() == "C:"  # the system drive is there even before any file is
        return self.local(wp).exists()

    def is_dir(self, path: str | PureWindowsPath) -> bool:
        wp = path if isinstance(path, PureWindowsPath) else windows_path(path)
        if len(wp.parts) == 1:
            return wp.drive.upper() == "C:"
        return self.local(wp).is_dir()

    def is_file(self, path: str | PureWindowsPath) -> bool:
        return self.local(path).is_file()

    def read_bytes(self, path: str | PureWindowsPath) -> bytes:
        return self.local(path).read_bytes()

    def write_bytes(self, path: str | PureWindowsPath, data: bytes, append: bool = False) -> Path:
        target = self.local(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("ab" if append else "wb") as f:
            f.write(data)
        return target

    def make_dirs(self, path: str | PureWindowsPath) -> Path:
        target = self.local(path)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def remove(self, path: str | PureWindowsPath, recurse: bool = False) -> None:
        target = self.local(path)
        if target.is_dir():
            if recurse:
                shutil.rmtree(target)
            else:
                target.rmdir()
        else:
            target.unlink()

    def children(self, path: str | PureWindowsPath) -> list[Path]:
        target = self.local(path) if len(windows_path(str(path)).parts) > 1 else self.root / "C"
        if not target.is_dir():
            return []
        return sorted(target.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))

    @staticmethod
    def times(local: Path) -> tuple[dt.datetime, dt.datetime]:
        st = local.stat()
        return (
            dt.datetime.fromtimestamp(st.st_ctime, dt.UTC),
            dt.datetime.fromtimestamp(st.st_mtime, dt.UTC),
        )
