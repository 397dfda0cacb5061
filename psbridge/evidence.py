"""The change record of a run: executed notebooks, their HTML, and a manifest of hashes.

A record lives at ``records/<customer>/<org>/<run-id>/``::

    00-preflight.ipynb   00-preflight.html   10-certificate.ipynb   ...   run.log
    manifest.json        runbook, operator, machine, times, parameters (secrets as references),
                         each step's status, duration and facts, SHA-256 of every file

:func:`verify` recomputes every hash (and the manifest's own) and lists each difference: a
changed byte, a missing file, a file nobody recorded. The manifest's ``self_sha256`` catches
edits of the manifest itself; it is an integrity check, not a signature.

Before anything is written, :func:`scrub` replaces every secret value this process has seen
with the mask (:func:`psbridge.secrets.redact`): a second line of defence behind notebooks
that never print a secret.

Records are written through a :class:`RecordStore` chosen by URL scheme, like papermill's
I/O handlers: a plain path (or ``file://``) is the local disk; an archive elsewhere registers
its own scheme with :func:`register_store`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import nbformat

from psbridge.files import write_atomic
from psbridge.secrets import redact

MANIFEST = "manifest.json"
FORMAT = "psbridge.record/1"


# --- stores ---------------------------------------------------------------------------------


class RecordStore(Protocol):
    """Where one record's files go. Paths are relative, with forward slashes."""

    @property
    def location(self) -> str: ...

    def write_bytes(self, name: str, data: bytes) -> None: ...

    def read_bytes(self, name: str) -> bytes: ...

    def names(self) -> list[str]: ...


@dataclass
class LocalStore:
    root: Path

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        p = (self.root / name).resolve()
        if self.root.resolve() not in p.parents and p != self.root.resolve():
            raise ValueError(f"{name!r} is outside the record {self.root}")
        return p

    def write_bytes(self, name: str, data: bytes) -> None:
        p = self._path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, data)

    def read_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())


_STORES: dict[str, Any] = {}


def register_store(scheme: str, factory: Any) -> None:
    """``factory(url) -> RecordStore`` for records whose location starts with ``scheme://``."""
    _STORES[scheme] = factory


def _local(url: str) -> LocalStore:
    return LocalStore(Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url))


register_store("file", _local)


def store_for(location: str | Path) -> RecordStore:
    text = str(location)
    # A Windows drive letter ("C:\\records") is a path, not a one-letter scheme.
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://", text)
    if not m:
        return LocalStore(Path(text))
    scheme = m.group(1).lower()
    if scheme not in _STORES:
        raise ValueError(f"no record store for '{scheme}://' (known: {', '.join(sorted(_STORES))})")
    store: RecordStore = _STORES[scheme](text)
    return store


# --- scrubbing ------------------------------------------------------------------------------


def _scrub_value(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, str):
        # A secret *reference* of this run is kept whole, even when a short secret value seen
        # elsewhere happens to be part of its name: the record must say where secrets live.
        return value if value in keep else redact(value)
    if isinstance(value, list):
        return [_scrub_value(v, keep) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, keep) for k, v in value.items()}
    return value


def scrub(nb: Any, keep: frozenset[str] = frozenset()) -> Any:
    """The notebook with every known secret value masked in every string (sources and outputs)."""
    # Through the on-disk JSON form, so that multi-line text split into lists is scrubbed too,
    # then read back (which joins the lines again, as nbconvert expects).
    return nbformat.reads(json.dumps(_scrub_value(json.loads(nbformat.writes(nb)), keep)), as_version=4)


# --- writing --------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "self_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_exporter: Any = None


def notebook_html(nb: Any) -> str:
    """The executed notebook as a standalone HTML page (what an auditor opens)."""
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter

        _exporter = HTMLExporter()
    body, _ = _exporter.from_notebook_node(nb)
    return redact(str(body))


@dataclass
class RecordWriter:
    """Writes one record: notebooks (scrubbed) and their HTML, extra files, then the manifest."""

    store: RecordStore
    written: dict[str, str] = field(default_factory=dict)  # name -> sha256

    @classmethod
    def at(cls, location: str | Path) -> RecordWriter:
        return cls(store_for(location))

    @property
    def location(self) -> str:
        return self.store.location

    def write(self, name: str, data: bytes) -> str:
        if name == MANIFEST:
            raise ValueError("the manifest is written by write_manifest")
        self.store.write_bytes(name, data)
        digest = sha256(data)
        self.written[name] = digest
        return digest

    def write_text(self, name: str, text: str) -> str:
        return self.write(name, redact(text).encode("utf-8"))

    def write_notebook(self, stem: str, nb: Any, *, html: bool = True,
                       keep: frozenset[str] = frozenset()) -> Any:
        """Scrub, then write ``<stem>.ipynb`` and (by default) ``<stem>.html``; the scrubbed notebook."""
        clean = scrub(nb, keep)
        self.write(f"{stem}.ipynb", nbformat.writes(clean).encode("utf-8"))
        if html:
            self.write(f"{stem}.html", notebook_html(clean).encode("utf-8"))
        return clean

    def write_manifest(self, manifest: dict[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
        body = _scrub_value(dict(manifest), keep)
        body["format"] = FORMAT
        body["files"] = dict(sorted(self.written.items()))
        body["self_sha256"] = sha256(_canonical(body))
        text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
        self.store.write_bytes(MANIFEST, text.encode("utf-8"))
        return body


# --- reading and verifying ------------------------------------------------------------------


def read_manifest(location: str | Path) -> dict[str, Any]:
    data = json.loads(store_for(location).read_bytes(MANIFEST))
    if not isinstance(data, dict):
        raise ValueError(f"{location}/{MANIFEST} is not a manifest")
    return data


@dataclass(frozen=True)
class Difference:
    name: str
    what: str  # changed | missing | unrecorded | manifest

    def __str__(self) -> str:
        return f"{self.what}: {self.name}"


def verify(location: str | Path) -> list[Difference]:
    """Every way the record differs from its manifest; ``[]`` when it is intact."""
    store = store_for(location)
    try:
        raw = store.read_bytes(MANIFEST)
    except FileNotFoundError:
        return [Difference(MANIFEST, "missing")]
    try:
        manifest = json.loads(raw)
    except ValueError:
        return [Difference(MANIFEST, "manifest")]
    found: list[Difference] = []
    if not isinstance(manifest, dict) or manifest.get("self_sha256") != sha256(_canonical(manifest)):
        found.append(Difference(MANIFEST, "manifest"))
    files: dict[str, str] = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    for name, digest in files.items():
        try:
            data = store.read_bytes(name)
        except (FileNotFoundError, ValueError):
            found.append(Difference(name, "missing"))
            continue
        if sha256(data) != digest:
            found.append(Difference(name, "changed"))
    for name in store.names():
        if name != MANIFEST and name not in files:
            found.append(Difference(name, "unrecorded"))
    return found


def records_of(root: Path, customer: str, org: str) -> Iterator[Path]:
    """The record directories of one org, oldest first (run ids sort by time)."""
    base = Path(root) / customer / org
    if base.is_dir():
        yield from sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())
