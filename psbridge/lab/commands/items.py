"""Provider commands over a lab server's file system and its ``Cert:`` drive.

Test-Path, Get-Item, Get-ChildItem, Remove-Item, New-Item, Set-Content, Add-Content,
Get-FileHash and Get-PfxData, with the parameters and messages of Windows PowerShell 5.1.

``-Path`` is a wildcard pattern (:mod:`psbridge.lab.commands.wildcards`), in every segment,
and one that matches nothing is not an error for Get-Item, Get-ChildItem and Remove-Item, is
False for Test-Path and "An object at the specified path ... does not exist" for Set-Content;
``-LiteralPath`` (and an item piped in, which binds its PSPath to it) is taken as written.
New-Item and Get-PfxData take their paths literally, as 5.1 does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import psrpcore.types as pst

from psbridge.lab.commands import errors
from psbridge.lab.commands.certstore import PfxError, certificate_object, open_pfx
from psbridge.lab.commands.filesystem import PathFormatError, ServerFiles, windows_path
from psbridge.lab.commands.objects import array, custom_object, get_property, new_object, to_string
from psbridge.lab.commands.registry import (
    OBJECT,
    OBJECTS,
    PSCREDENTIAL,
    SECURE,
    STRING,
    STRINGS,
    SWITCH,
    Param,
    cmdlet,
)
from psbridge.lab.commands.runtime import Call
from psbridge.lab.commands.wildcards import has_wildcards, matches, unescape

_PS = "Microsoft.PowerShell.Commands"
MANAGEMENT = "Microsoft.PowerShell.Management"
FS_PROVIDER = "Microsoft.PowerShell.Core\\FileSystem"
CERT_LOCATIONS = {"localmachine": "LocalMachine", "currentuser": "CurrentUser"}
CERT_STORES = {
    s.lower(): s
    for s in (
        "My",
        "Root",
        "CA",
        "TrustedPeople",
        "TrustedPublisher",
        "AuthRoot",
        "Disallowed",
        "Remote Desktop",
        "WebHosting",
        "Trust",
        "REQUEST",
    )
}
PATH_SETS = ("Path", "LiteralPath")
ENCODINGS = (
    "Unknown",
    "String",
    "Unicode",
    "Byte",
    "BigEndianUnicode",
    "UTF8",
    "UTF7",
    "UTF32",
    "Ascii",
    "Default",
    "Oem",
    "BigEndianUTF32",
)


@dataclass
class Target:
    """A path as a provider sees it: a certificate store location or a file system path."""

    text: str
    kind: str  # "cert" | "file" | "other"
    parts: tuple[str, ...] = ()  # cert: location, store, thumbprint (as many as given)
    path: PureWindowsPath | None = None


def target(text: str, resolve: bool = True) -> Target:
    """Which provider a path is for; ``resolve=False`` leaves a file system path to :func:`_resolve`."""
    t = text.strip()
    low = t.lower()
    for prefix in ("microsoft.powershell.security\\certificate::", "cert:"):
        if low.startswith(prefix):
            rest = t[len(prefix) :].replace("/", "\\").strip("\\")
            return Target(t, "cert", tuple(p for p in rest.split("\\") if p))
    if low.startswith("microsoft.powershell.core\\filesystem::"):
        t = t[len("microsoft.powershell.core\\filesystem::") :]
    drive = t.split(":", 1)[0] if ":" in t else ""
    if drive and len(drive) > 1:
        return Target(text, "other")  # HKLM:, Env:, Variable: ... are not in the lab
    return Target(text, "file", path=windows_path(t) if resolve else None)


# --- certificate drive -----------------------------------------------------------------------------


def _cert_children(call: Call, tgt: Target) -> list[Any] | None:
    """The objects under a Cert: path, or None if the path does not exist."""
    parts = tgt.parts
    if len(parts) >= 1 and parts[0].lower() not in CERT_LOCATIONS:
        return None
    if len(parts) >= 2 and parts[1].lower() not in CERT_STORES:
        return None
    if len(parts) == 2:
        location, store = CERT_LOCATIONS[parts[0].lower()], CERT_STORES[parts[1].lower()]
        if (location, store) != ("LocalMachine", "My"):
            return []
        return [
            certificate_object(e, f"{location}\\{store}\\{e['thumbprint']}")
            for e in call.world.store(call.ctx.server)
        ]
    if len(parts) == 3:
        found = _cert_item(call, tgt)
        return None if found is None else [found]
    # Cert:\ and Cert:\<location>: containers of containers.
    names = list(CERT_LOCATIONS.values()) if not parts else list(CERT_STORES.values())
    return [
        custom_object(
            {"Name": n, "PSChildName": n, "PSIsContainer": True},
            "Microsoft.PowerShell.Commands.X509StoreLocation"
            if not parts
            else "System.Security.Cryptography.X509Certificates.X509Store",
        )
        for n in names
    ]


def _cert_item(call: Call, tgt: Target) -> Any:
    parts = tgt.parts
    if len(parts) != 3:
        children = _cert_children(call, Target(tgt.text, "cert", parts))
        if children is None:
            return None
        return custom_object({"Name": parts[-1] if parts else "\\", "PSIsContainer": True})
    location, store = CERT_LOCATIONS.get(parts[0].lower()), CERT_STORES.get(parts[1].lower())
    if (location, store) != ("LocalMachine", "My"):
        return None
    for e in call.world.store(call.ctx.server):
        if e["thumbprint"].lower() == parts[2].lower():
            return certificate_object(e, f"{location}\\{store}\\{e['thumbprint']}")
    return None


# --- file system objects ----------------------------------------------------------------------------


def _files(call: Call) -> ServerFiles:
    return ServerFiles(call.ctx.state_dir, call.ctx.server)


def _mode(is_dir: bool) -> str:
    return "d-----" if is_dir else "-a----"


def file_object(files: ServerFiles, local: Path) -> Any:
    server = files.server_path(local)
    created, written = files.times(local)
    is_dir = local.is_dir()
    parent = str(server.parent)
    common: dict[str, Any] = {
        "Name": server.name or str(server),
        "FullName": str(server),
        "Parent" if is_dir else "DirectoryName": parent,
        "Exists": True,
        "Extension": server.suffix,
        "CreationTime": created,
        "CreationTimeUtc": created,
        "LastAccessTime": written,
        "LastAccessTimeUtc": written,
        "LastWriteTime": written,
        "LastWriteTimeUtc": written,
        "Attributes": "Directory" if is_dir else "Archive",
    }
    extended = {
        "PSPath": f"{FS_PROVIDER}::{server}",
        "PSParentPath": f"{FS_PROVIDER}::{parent}",
        "PSChildName": server.name,
        "PSDrive": server.drive.rstrip(":"),
        "PSProvider": FS_PROVIDER,
        "PSIsContainer": is_dir,
        "Mode": _mode(is_dir),
        "BaseName": server.stem if not is_dir else server.name,
    }
    if is_dir:
        common["Root"] = server.drive + "\\"
        return new_object(
            ["System.IO.DirectoryInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject"],
            common,
            str(server),
            extended,
        )
    common["Length"] = local.stat().st_size
    common["IsReadOnly"] = False
    common["Directory"] = parent
    return new_object(
        ["System.IO.FileInfo", "System.IO.FileSystemInfo", "System.MarshalByRefObject"],
        common,
        str(server),
        extended,
    )


def _resolve(files: ServerFiles, text: str, literal: bool) -> tuple[list[PureWindowsPath], bool]:
    """The file system paths a ``-Path`` pattern or a ``-LiteralPath`` names: ``(paths, wildcard)``.

    A literal path (or a pattern without wildcards) gives itself, existing or not; a pattern
    gives the existing items it matches, segment by segment. Raises PathFormatError.
    """
    t = text.strip()
    if t.lower().startswith("microsoft.powershell.core\\filesystem::"):
        t = t[len("microsoft.powershell.core\\filesystem::"):]
    if literal or not has_wildcards(t):
        return [windows_path(t if literal else unescape(t))], False
    t = t.replace("/", "\\")
    drive, sep, rest = t.partition(":")
    if not sep or len(drive) != 1 or not drive.isalpha():
        # Relative (from the session's home) or not a drive path at all.
        base = windows_path("C:\\Users\\Default\\Documents")
        segments = t.split("\\")
    else:
        base = PureWindowsPath(drive.upper() + ":\\")
        segments = rest.split("\\")
    found = [base]
    for segment in (seg for seg in segments if seg not in ("", ".")):
        if segment == "..":
            found = [p.parent for p in found]
        elif has_wildcards(segment):
            found = [p / c.name for p in found for c in files.children(p) if matches(segment, c.name)]
        else:
            name = unescape(segment)
            windows_path(str(base / name))  # a bad character is a format error, as for a literal path
            found = [p / name for p in found]
    return [p for p in found if files.exists(p)], True


def _paths(call: Call) -> list[tuple[str, bool]]:
    """The paths the command was given, each with whether it is literal (-LiteralPath, or piped)."""
    if call.has("Path"):
        return [(str(v), False) for v in call["Path"] or []]
    if call.has("LiteralPath"):
        return [(str(v), True) for v in call["LiteralPath"] or []]
    out: list[tuple[str, bool]] = []
    for i in call.input or []:
        if isinstance(i, str):
            out.append((i, False))  # a string binds to -Path (ValueFromPipeline)
        else:
            # An item from Get-ChildItem/Get-Item binds its PSPath to -LiteralPath (by property name).
            out.append((str(get_property(i, "PSPath", None) or get_property(i, "FullName", None)
                             or to_string(i)), True))
    return out


def _cert_matches(call: Call, tgt: Target, literal: bool) -> tuple[list[Any] | None, bool]:
    """Certificates a Cert: path names: a pattern in its last segment matches thumbprints."""
    if not literal and tgt.parts and has_wildcards(tgt.parts[-1]):
        children = _cert_children(call, Target(tgt.text, "cert", tgt.parts[:-1])) or []
        return [c for c in children if matches(tgt.parts[-1], str(get_property(c, "PSChildName", "")))], True
    if not literal and tgt.parts:
        tgt = Target(tgt.text, "cert", (*tgt.parts[:-1], unescape(tgt.parts[-1])))
    item = _cert_item(call, tgt)
    return (None if item is None else [item]), False


def _bad_path(call: Call, text: str) -> None:
    call.error(
        call.record(
            "The given path's format is not supported.",
            "NotSpecified",
            "System.NotSupportedException",
            target=text,
            exception="System.NotSupportedException",
        )
    )


def _not_found(call: Call, text: str) -> None:
    type_name = call.spec.type_name
    call.error(errors.path_not_found(text, call.spec.name, type_name))


# --- Test-Path ----------------------------------------------------------------------------------------


@cmdlet(
    "Test-Path",
    f"{_PS}.TestPathCommand",
    Param("Path", STRINGS, mandatory=True, position=0, pipeline=True, by_property_name=True, sets=("Path",)),
    Param(
        "LiteralPath",
        STRINGS,
        mandatory=True,
        aliases=("PSPath",),
        by_property_name=True,
        sets=("LiteralPath",),
    ),
    Param("Filter", STRING),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("PathType", "Microsoft.PowerShell.Commands.TestPathType", enum=("Any", "Container", "Leaf")),
    Param("IsValid", SWITCH),
    Param("Credential", PSCREDENTIAL),
    Param("OlderThan", "System.DateTime"),
    Param("NewerThan", "System.DateTime"),
    source=MANAGEMENT,
    default_set="Path",
)
def test_path(call: Call) -> None:
    kind = call.get("PathType") or "Any"
    files = _files(call)
    for text, literal in _paths(call):
        if not text:
            call.fail(
                errors.binding(
                    "Cannot bind argument to parameter 'Path' because it is an empty string.",
                    "ParameterArgumentValidationErrorEmptyStringNotAllowed",
                    call.spec.name,
                    call.spec.type_name,
                    category="InvalidData",
                )
            )
        tgt = target(text, resolve=False)
        if call.get("IsValid"):
            call.write(tgt.kind != "other" and _valid(text, literal))
            continue
        if tgt.kind == "cert":
            items, _ = _cert_matches(call, tgt, literal)
            is_leaf = len(tgt.parts) == 3
            call.write(bool(items) and (kind == "Any" or (kind == "Leaf") == is_leaf))
            continue
        if tgt.kind == "other":
            call.write(False)
            continue
        try:
            hits, _ = _resolve(files, text, literal)
        except PathFormatError:
            call.write(False)
            continue
        ok = False
        for p in hits:
            if not files.exists(p):
                continue
            is_dir = files.is_dir(p)
            ok = kind == "Any" or (kind == "Container") == is_dir
            if ok:
                break
        call.write(ok)


def _valid(text: str, literal: bool) -> bool:
    try:
        windows_path(text if literal else unescape(text) if not has_wildcards(text) else "C:\\x")
    except PathFormatError:
        return False
    return True


# --- Get-Item / Get-ChildItem ------------------------------------------------------------------------

_ITEM_PARAMS = (
    Param("Path", STRINGS, mandatory=True, position=0, pipeline=True, by_property_name=True, sets=("Path",)),
    Param(
        "LiteralPath",
        STRINGS,
        mandatory=True,
        aliases=("PSPath",),
        by_property_name=True,
        sets=("LiteralPath",),
    ),
    Param("Filter", STRING),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("Force", SWITCH),
    Param("Credential", PSCREDENTIAL),
    Param("Stream", STRINGS),
)


@cmdlet("Get-Item", f"{_PS}.GetItemCommand", *_ITEM_PARAMS, source=MANAGEMENT, default_set="Path")
def get_item(call: Call) -> None:
    files = _files(call)
    for text, literal in _paths(call):
        tgt = target(text, resolve=False)
        if tgt.kind == "cert":
            items, wildcard = _cert_matches(call, tgt, literal)
            if items is None:
                _not_found(call, text)
            else:
                call.write(items)
            continue
        if tgt.kind == "other":
            _not_found(call, text)
            continue
        try:
            hits, wildcard = _resolve(files, text, literal)
        except PathFormatError:
            _bad_path(call, text)
            continue
        hits = [p for p in hits if files.exists(p)]
        if not hits and not wildcard:
            _not_found(call, text if literal else unescape(text))
        for p in hits:
            call.write(
                file_object(files, files.local(p))
                if len(p.parts) > 1
                else custom_object({"Name": str(p), "PSIsContainer": True}, "System.IO.DirectoryInfo")
            )


@cmdlet(
    "Get-ChildItem",
    f"{_PS}.GetChildItemCommand",
    Param("Path", STRINGS, position=0, pipeline=True, by_property_name=True, sets=("Items",)),
    Param(
        "LiteralPath",
        STRINGS,
        mandatory=True,
        aliases=("PSPath",),
        by_property_name=True,
        sets=("LiteralItems",),
    ),
    Param("Filter", STRING, position=1),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("Recurse", SWITCH, aliases=("s",)),
    Param("Depth", "System.UInt32"),
    Param("Force", SWITCH),
    Param("Name", SWITCH),
    Param("Directory", SWITCH, aliases=("ad", "d")),
    Param("File", SWITCH, aliases=("af",)),
    source=MANAGEMENT,
    default_set="Items",
)
def get_child_item(call: Call) -> None:
    paths = _paths(call) or [("C:\\Users\\Default\\Documents", True)]
    files = _files(call)
    for text, literal in paths:
        tgt = target(text, resolve=False)
        if tgt.kind == "cert":
            if not literal and tgt.parts and has_wildcards(tgt.parts[-1]):
                children, _ = _cert_matches(call, tgt, literal)
            else:
                children = _cert_children(call, tgt)
            if children is None:
                _not_found(call, text)
                continue
            call.write(_filtered(call, children))
            continue
        if tgt.kind == "other":
            _not_found(call, text)
            continue
        try:
            hits, wildcard = _resolve(files, text, literal)
        except PathFormatError:
            _bad_path(call, text)
            continue
        hits = [p for p in hits if files.exists(p)]
        if not hits:
            if not wildcard:
                _not_found(call, text if literal else unescape(text))
            continue
        found: list[Path] = []
        for hit in hits:
            if files.is_dir(hit):  # a folder lists its children, a file itself
                found += _walk(files, hit, bool(call.get("Recurse")))
            else:
                found.append(files.local(hit))
        if call.get("Directory"):
            found = [p for p in found if p.is_dir()]
        if call.get("File"):
            found = [p for p in found if p.is_file()]
        objects = [file_object(files, p) for p in found]
        objects = _filtered(call, objects)
        if call.get("Name"):
            call.write([to_string(_name(o)) for o in objects])
        else:
            call.write(objects)


def _walk(files: ServerFiles, path: PureWindowsPath, recurse: bool) -> list[Path]:
    out: list[Path] = []
    for child in files.children(path):
        out.append(child)
        if recurse and child.is_dir():
            out += _walk(files, files.server_path(child), True)
    return out


def _name(obj: Any) -> Any:
    from psbridge.lab.commands.objects import get_property

    return get_property(obj, "PSChildName", None) or get_property(obj, "Name", "")


def _filtered(call: Call, objects: list[Any]) -> list[Any]:
    # -Filter is the file system's own (FindFirstFile: * and ?, a bracket is a bracket);
    # -Include and -Exclude are PowerShell wildcards.
    filt = call.get("Filter")
    includes = list(call.get("Include") or [])
    excludes = list(call.get("Exclude") or [])
    out = []
    for o in objects:
        n = str(_name(o))
        if filt and not matches(filt.replace("`", "``").replace("[", "`["), n):
            continue
        if includes and not any(matches(p, n) for p in includes):
            continue
        if any(matches(p, n) for p in excludes):
            continue
        out.append(o)
    return out


# --- Remove-Item ----------------------------------------------------------------------------------------


@cmdlet(
    "Remove-Item",
    f"{_PS}.RemoveItemCommand",
    *_ITEM_PARAMS[:2],
    Param("Filter", STRING),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("Recurse", SWITCH),
    Param("Force", SWITCH),
    Param("Credential", PSCREDENTIAL),
    Param("Stream", STRINGS),
    Param("DeleteKey", SWITCH),
    source=MANAGEMENT,
    default_set="Path",
    should_process=True,
)
def remove_item(call: Call) -> None:
    files = _files(call)
    for text, literal in _paths(call):
        tgt = target(text, resolve=False)
        if tgt.kind == "cert":
            if not literal and tgt.parts:
                tgt = Target(tgt.text, "cert", (*tgt.parts[:-1], unescape(tgt.parts[-1])))
            _remove_certificate(call, tgt, text)
            continue
        if tgt.kind == "other":
            _not_found(call, text)
            continue
        try:
            hits, wildcard = _resolve(files, text, literal)
        except PathFormatError:
            _bad_path(call, text)
            continue
        hits = [p for p in hits if files.exists(p)]
        if not hits:
            if not wildcard:  # a pattern that matches nothing removes nothing, silently
                _not_found(call, text if literal else unescape(text))
            continue
        if call.get("WhatIf"):
            continue
        for p in hits:
            if files.is_dir(p) and any(True for _ in files.local(p).iterdir()) and not call.get("Recurse"):
                # Non-interactive: PowerShell cannot ask "are you sure", so it refuses.
                call.error(
                    call.record(
                        f"The item at {p} has children and the Recurse parameter was not specified. If you "
                        "continue, all children will be removed with the item. Are you sure you want to "
                        "continue?",
                        "InvalidOperation",
                        "RemoveItemUnableToAccessItem",
                        target=str(p),
                        exception="System.Management.Automation.Host.HostException",
                    )
                )
                continue
            files.remove(p, recurse=bool(call.get("Recurse")))


def _remove_certificate(call: Call, tgt: Target, text: str) -> None:
    if _cert_item(call, tgt) is None or len(tgt.parts) != 3:
        _not_found(call, text)
        return
    if not call.world.is_local_admin(call.ctx.server, call.ctx.user):
        call.error(
            call.record(
                "Access is denied.",
                "PermissionDenied",
                "RemoveItemUnauthorizedAccessError",
                target=text,
                exception="System.UnauthorizedAccessException",
            )
        )
        return
    if call.get("WhatIf"):
        return
    with call.world.change() as data:
        server = next(s for s in data["servers"] if s["name"].lower() == call.ctx.server.lower())
        server["store"] = [e for e in server["store"] if e["thumbprint"].lower() != tgt.parts[2].lower()]


# --- New-Item, Set-Content, Add-Content --------------------------------------------------------------


@cmdlet(
    "New-Item",
    f"{_PS}.NewItemCommand",
    Param("Path", STRINGS, position=0, by_property_name=True),
    Param("Name", STRING, mandatory=True, by_property_name=True, sets=("nameSet",)),
    Param("ItemType", STRING, aliases=("Type",), by_property_name=True),
    Param("Value", OBJECT, pipeline=True, by_property_name=True, aliases=("Target",)),
    Param("Force", SWITCH),
    Param("Credential", PSCREDENTIAL),
    source=MANAGEMENT,
    default_set="pathSet",
    should_process=True,
)
def new_item(call: Call) -> None:
    files = _files(call)
    kind = (call.get("ItemType") or "File").lower()
    paths = call.get("Path") or ["C:\\Users\\Default\\Documents"]
    for text in paths:
        try:
            tgt = target(text if not call.has("Name") else f"{text}\\{call['Name']}")
        except PathFormatError:
            _bad_path(call, text)
            continue
        if tgt.kind != "file" or tgt.path is None:
            call.error(
                call.record(
                    "The lab's servers create items on the file system only.",
                    "NotImplemented",
                    "NotSupported",
                    target=text,
                    exception="System.NotSupportedException",
                )
            )
            continue
        path = tgt.path
        if kind not in ("directory", "file"):
            call.error(
                call.record(
                    'The type is not a known type for the file system. Only "file" and "directory" can be '
                    "created.",
                    "InvalidArgument",
                    "Argument",
                    target=str(path),
                    exception="System.Management.Automation.PSArgumentException",
                )
            )
            continue
        if files.exists(path):
            if kind == "directory" and files.is_dir(path) and call.get("Force"):
                call.write(file_object(files, files.local(path)))
                continue
            if not call.get("Force") or files.is_dir(path) != (kind == "directory"):
                fqid = "DirectoryExist" if kind == "directory" else "NewItemIOError"
                call.error(
                    call.record(
                        f"An item with the specified name {path} already exists.",
                        "ResourceExists",
                        fqid,
                        target=str(path),
                        exception="System.IO.IOException",
                    )
                )
                continue
        if kind == "directory":
            if call.get("WhatIf"):
                continue
            local = files.make_dirs(path)
        else:
            if not files.is_dir(path.parent):
                call.error(
                    call.record(
                        f"Could not find a part of the path '{path}'.",
                        "WriteError",
                        "NewItemIOError",
                        target=str(path),
                        exception="System.IO.DirectoryNotFoundException",
                    )
                )
                continue
            if call.get("WhatIf"):
                continue
            value = call.get("Value")
            data = value if isinstance(value, bytes) else (to_string(value).encode("utf-8") if value else b"")
            local = files.write_bytes(path, data)
        call.write(file_object(files, local))


def _content_bytes(call: Call, values: list[Any], encoding: str) -> bytes:
    if encoding == "Byte":
        out = bytearray()
        for v in values:
            if isinstance(v, bytes | bytearray):
                out += v
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
                out.append(v)
            else:
                shown = to_string(v)
                call.fail(
                    call.record(
                        f'Cannot convert value "{shown}" to type "System.Byte". Error: "Input string was '
                        'not in a correct format."',
                        "InvalidArgument",
                        "InvalidCastFromStringToInteger",
                        exception="System.Management.Automation.PSInvalidCastException",
                    )
                )
        return bytes(out)
    codec = {
        "Unicode": "utf-16-le",
        "BigEndianUnicode": "utf-16-be",
        "UTF8": "utf-8-sig",
        "UTF7": "utf-7",
        "UTF32": "utf-32-le",
        "BigEndianUTF32": "utf-32-be",
        "Ascii": "ascii",
        "Oem": "cp437",
    }.get(encoding, "cp1252")
    text = "".join(to_string(v) + ("" if call.get("NoNewline") else "\r\n") for v in values)
    return text.encode(codec, errors="replace")


def _content_params() -> tuple[Param, ...]:
    return (
        Param("Path", STRINGS, mandatory=True, position=0, by_property_name=True, sets=("Path",)),
        Param(
            "LiteralPath",
            STRINGS,
            mandatory=True,
            aliases=("PSPath",),
            by_property_name=True,
            sets=("LiteralPath",),
        ),
        Param("Value", OBJECTS, mandatory=True, position=1, pipeline=True, by_property_name=True),
        Param("PassThru", SWITCH),
        Param("Filter", STRING),
        Param("Include", STRINGS),
        Param("Exclude", STRINGS),
        Param("Force", SWITCH),
        Param("Credential", PSCREDENTIAL),
        Param("NoNewline", SWITCH),
        Param("Encoding", "Microsoft.PowerShell.Commands.FileSystemCmdletProviderEncoding", enum=ENCODINGS),
        Param("Stream", STRING),
    )


def _write_content(call: Call, append: bool) -> None:
    values = call.get("Value")
    if values is None:
        values = list(call.input or [])
    elif isinstance(values, bytes):
        values = [values]
    data = _content_bytes(call, list(values), call.get("Encoding") or "Default")
    files = _files(call)
    for text, literal in _paths(call):
        if target(text, resolve=False).kind != "file":
            call.error(
                call.record(
                    "The lab's servers hold content on the file system only.",
                    "NotImplemented",
                    "NotSupported",
                    target=text,
                    exception="System.NotSupportedException",
                )
            )
            continue
        try:
            hits, wildcard = _resolve(files, text, literal)
        except PathFormatError:
            _bad_path(call, text)
            continue
        if wildcard and not hits:
            # -Path 's2s[1].pfx' with no s2s1.pfx there: 5.1 does not create the file.
            call.error(
                call.record(
                    f"An object at the specified path {text} does not exist, or has been filtered by the "
                    "-Include or -Exclude parameter.",
                    "ObjectNotFound",
                    "ItemNotFound",
                    target=[text],
                    exception="System.Exception",
                )
            )
            continue
        for path in hits:
            _write_one(call, files, path, data, append, list(values))


def _write_one(call: Call, files: ServerFiles, path: PureWindowsPath, data: bytes, append: bool,
               values: list[Any]) -> None:
    if len(path.parts) < 2:
        call.error(
            call.record(
                "The lab's servers hold content on the file system only.",
                "NotImplemented",
                "NotSupported",
                target=str(path),
                exception="System.NotSupportedException",
            )
        )
        return
    if not files.is_dir(path.parent):
        call.error(
            call.record(
                f"Could not find a part of the path '{path}'.",
                "ObjectNotFound",
                "GetContentWriterDirectoryNotFoundError",
                target=str(path),
                exception="System.IO.DirectoryNotFoundException",
            )
        )
        return
    if files.is_dir(path):
        call.error(
            call.record(
                f"Access to the path '{path}' is denied.",
                "PermissionDenied",
                "GetContentWriterUnauthorizedAccessError",
                target=str(path),
                exception="System.UnauthorizedAccessException",
            )
        )
        return
    if call.get("WhatIf"):
        return
    files.write_bytes(path, data, append=append)
    if call.get("PassThru"):
        call.write(values)


@cmdlet(
    "Set-Content",
    f"{_PS}.SetContentCommand",
    *_content_params(),
    source=MANAGEMENT,
    default_set="Path",
    should_process=True,
)
def set_content(call: Call) -> None:
    _write_content(call, append=False)


@cmdlet(
    "Add-Content",
    f"{_PS}.AddContentCommand",
    *_content_params(),
    source=MANAGEMENT,
    default_set="Path",
    should_process=True,
)
def add_content(call: Call) -> None:
    _write_content(call, append=True)


# --- Get-FileHash -----------------------------------------------------------------------------------------

ALGORITHMS = ("SHA1", "SHA256", "SHA384", "SHA512", "MACTripleDES", "MD5", "RIPEMD160")


@cmdlet(
    "Get-FileHash",
    "Get-FileHash",
    Param("Path", STRINGS, mandatory=True, position=0, pipeline=True, by_property_name=True, sets=("Path",)),
    Param(
        "LiteralPath",
        STRINGS,
        mandatory=True,
        aliases=("PSPath",),
        by_property_name=True,
        sets=("LiteralPath",),
    ),
    Param("InputStream", "System.IO.Stream", mandatory=True, sets=("Stream",)),
    Param("Algorithm", STRING, choices=ALGORITHMS),
    source="Microsoft.PowerShell.Utility",
    default_set="Path",
)
def get_file_hash(call: Call) -> None:
    algorithm = next(a for a in ALGORITHMS if a.lower() == (call.get("Algorithm") or "SHA256").lower())
    files = _files(call)
    for text, literal in _paths(call):
        tgt = target(text, resolve=False)
        if tgt.kind != "file":
            call.error(
                errors.path_not_found(
                    text, "Resolve-Path", "Microsoft.PowerShell.Commands.ResolvePathCommand"
                )
            )
            continue
        try:
            hits, _ = _resolve(files, text, literal)
        except PathFormatError:
            _bad_path(call, text)
            continue
        hits = [p for p in hits if files.exists(p)]
        if not hits:
            # Get-FileHash resolves its paths with Resolve-Path, whose error this is (pattern or not).
            call.error(
                errors.path_not_found(
                    text if literal else unescape(text), "Resolve-Path",
                    "Microsoft.PowerShell.Commands.ResolvePathCommand",
                )
            )
            continue
        for p in hits:
            if files.is_dir(p):
                continue  # Get-FileHash skips folders silently
            name = {
                "SHA1": "sha1",
                "SHA256": "sha256",
                "SHA384": "sha384",
                "SHA512": "sha512",
                "MD5": "md5",
            }.get(algorithm)
            if name is None:
                call.error(
                    call.record(
                        f"Algorithm {algorithm} is not available in the lab.",
                        "NotImplemented",
                        "AlgorithmNotSupported",
                        target=algorithm,
                    )
                )
                continue
            digest = hashlib.new(name, files.read_bytes(p)).hexdigest().upper()
            call.write(
                custom_object(
                    {"Algorithm": algorithm, "Hash": digest, "Path": str(p)},
                    "Microsoft.Powershell.Utility.FileHash",
                )
            )


# --- Get-PfxData ------------------------------------------------------------------------------------------


@cmdlet(
    "Get-PfxData",
    "Microsoft.CertificateServices.Commands.GetPfxData",
    Param("FilePath", STRING, mandatory=True, position=0, aliases=("FullName",), by_property_name=True),
    Param("Password", SECURE),
    source="PKI",
)
def get_pfx_data(call: Call) -> None:
    files = _files(call)
    text = call["FilePath"]
    try:
        tgt = target(text)
    except PathFormatError:
        call.fail(
            call.record(
                "The given path's format is not supported.",
                "NotSpecified",
                "System.NotSupportedException",
                exception="System.NotSupportedException",
            )
        )
    if tgt.kind != "file" or tgt.path is None or not files.is_file(tgt.path):
        call.fail(
            call.record(
                "The system cannot find the file specified. 0x80070002 (WIN32: 2 ERROR_FILE_NOT_FOUND)",
                "NotSpecified",
                "System.IO.FileNotFoundException",
                target=text,
                exception="System.IO.FileNotFoundException",
            )
        )
    password = call.get("Password")
    plain = str(password.decrypt()) if isinstance(password, pst.PSSecureString) else None
    try:
        content = open_pfx(files.read_bytes(tgt.path), plain)
    except PfxError as e:
        call.fail(
            call.record(
                f"{e} 0x80070056 (WIN32: 86 ERROR_INVALID_PASSWORD)",
                "NotSpecified",
                "System.Security.Cryptography.CryptographicException",
                exception="System.Security.Cryptography.CryptographicException",
            )
        )
    cert = certificate_object(content.entry())
    others = [certificate_object({**content.entry(), **_entry_of(c)}) for c in content.others]
    call.write(
        new_object(
            ["Microsoft.CertificateServices.Commands.PfxData"],
            {
                "PasswordProtectedIndicator": plain is not None,
                "EndEntityCertificates": array(
                    [cert], "System.Security.Cryptography.X509Certificates.X509Certificate2"
                ),
                "OtherCertificates": array(
                    others, "System.Security.Cryptography.X509Certificates.X509Certificate2"
                ),
                "ProtectTo": None,
            },
            "Microsoft.CertificateServices.Commands.PfxData",
        )
    )


def _entry_of(cert: Any) -> dict[str, Any]:
    from psbridge.lab.commands.certstore import store_entry

    return store_entry(cert, False, 0)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
