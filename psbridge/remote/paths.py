"""Paths on the server are Windows paths, whatever the consultant's laptop runs."""

from __future__ import annotations

from pathlib import PurePath, PureWindowsPath

from psbridge.remote.errors import ValidationError
from psbridge.text import shown

# Characters Windows refuses in a file or folder name (besides the separators).
_FORBIDDEN = set('<>"|?*') | {chr(c) for c in range(32)}


def server_path(value: str | PurePath, field: str = "path") -> PureWindowsPath:
    """An absolute Windows path (``C:\\...`` or ``\\\\server\\share\\...``), or :class:`ValidationError`."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ValidationError(field, "a full Windows path on the server is required")
    path = PureWindowsPath(text)
    if not path.is_absolute():
        raise ValidationError(
            field, f"{shown(text)} is not an absolute Windows path (expected e.g. C:\\Program Files\\...)"
        )
    # The drive's colon is allowed; anywhere else it names an alternate data stream.
    rest = text[len(path.drive):]
    bad = sorted({c for c in rest if c in _FORBIDDEN or c == ":"})
    if bad:
        listed = ", ".join(repr(c) for c in bad)
        raise ValidationError(
            field, f"{shown(text)} contains characters Windows does not allow in a path: {listed}"
        )
    if path.name in ("", ".", ".."):
        raise ValidationError(field, f"{shown(text)} does not name a file or folder")
    if any(part in (".", "..") for part in path.parts[1:]):
        # A server path is written out whole: one that climbs back up is a typo or a trick.
        raise ValidationError(field, f"{shown(text)} has . or .. in it: give the folder's full path")
    return path
