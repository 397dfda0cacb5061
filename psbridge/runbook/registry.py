"""Runbooks by name: the ones psbridge ships, the ones other packages add, and folders on disk.

A runbook is a folder holding ``runbook.yaml`` and its step notebooks. psbridge's own live in the
package (``psbridge/runbooks/<name>/``, found with :mod:`importlib.resources`, so an installed
wheel carries them). Another package adds one the way papermill's engines and I/O handlers are
added: an entry point in the group ``psbridge.runbooks`` whose value is the package (or module)
whose folder holds the runbook::

    [project.entry-points."psbridge.runbooks"]
    contoso-hardening = "contoso_runbooks.hardening"

A path (a folder, or its ``runbook.yaml``) is taken as it is: a runbook under development.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import logging
from dataclasses import dataclass
from pathlib import Path

from psbridge.runbook import definition
from psbridge.runbook.definition import DEFAULT_RUNBOOK, DefinitionError, Runbook

log = logging.getLogger(__name__)

ENTRY_POINTS = "psbridge.runbooks"
RUNBOOK_FILE = "runbook.yaml"


@dataclass(frozen=True)
class RunbookSource:
    name: str
    path: Path  # the runbook.yaml
    origin: str  # "psbridge", the distribution that adds it, or "path"


def _builtin() -> dict[str, RunbookSource]:
    root = importlib.resources.files("psbridge.runbooks")
    found = {}
    for entry in root.iterdir():
        yaml = entry / RUNBOOK_FILE
        if entry.is_dir() and yaml.is_file():
            # Installed packages are on disk (wheels unpack); a zipped one would need as_file.
            found[entry.name] = RunbookSource(entry.name, Path(str(yaml)), "psbridge")
    return found


def _from_entry_points() -> dict[str, RunbookSource]:
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            module = importlib.import_module(ep.value)
        except ImportError as e:
            log.warning("runbook %s (from %s) cannot be loaded: %s", ep.name, ep.value, e)
            continue
        folder = Path(getattr(module, "__file__", "") or "").parent
        yaml = folder / RUNBOOK_FILE
        if yaml.is_file():
            dist = ep.dist.name if ep.dist is not None else ep.value
            found[ep.name] = RunbookSource(ep.name, yaml, dist)
        else:
            log.warning("runbook %s (from %s) has no %s in %s", ep.name, ep.value, RUNBOOK_FILE, folder)
    return found


def available() -> dict[str, RunbookSource]:
    """Every runbook known by name; psbridge's own win over a package's of the same name."""
    return {**_from_entry_points(), **_builtin()}


def source(name_or_path: str | Path | None = None) -> RunbookSource:
    """Where a runbook named (or at a path) lives; the default runbook when None."""
    wanted = str(name_or_path) if name_or_path is not None else DEFAULT_RUNBOOK
    # psbridge's own win over a package's of the same name: one of them is found without importing
    # every package that adds runbooks (reading the installed distributions' entry points costs
    # about 10 ms a run).
    own = _builtin()
    if wanted in own:
        return own[wanted]
    known = available()
    if wanted in known:
        return known[wanted]
    path = Path(wanted).expanduser()
    if path.is_dir():
        path = path / RUNBOOK_FILE
    if path.is_file():
        return RunbookSource(path.parent.name, path, "path")
    names = ", ".join(sorted(known)) or "none"
    raise DefinitionError(f"no runbook {wanted!r}: not a known name ({names}) nor a runbook folder")


def load(name_or_path: str | Path | None = None) -> Runbook:
    """The runbook of that name (or at that path), checked."""
    return definition.load(source(name_or_path).path)
