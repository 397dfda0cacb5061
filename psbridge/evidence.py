"""The change record of a run: executed notebooks, their HTML, a journal and a manifest.

A record lives at ``records/<customer>/<org>/<run-id>/``::

    00-preflight.ipynb   00-preflight.html   10-certificate.ipynb   ...   run.log
    journal.jsonl        what the run intended and did, line by line, each on disk before the next
    index.html           the run page (psbridge.runpage): the whole run on one page, linking each step's
    manifest.json        runbook, operator, machine, times, parameters (secrets as references),
                         each step's status, duration and facts, every change and its outcome,
                         the accounts that acted, the SHA-256 of every file
    manifest.sig         (a signed record) the operator's signature over manifest.json (psbridge.signing)

A record is always in one of three states (:class:`RecordState`):

- **complete**: every step it was asked to run succeeded;
- **failed**: a step failed; the manifest says which and why;
- **interrupted**: the process died (a crash, ``kill -9``): the journal tells what was done
  and what was in flight. Its manifest is rebuilt from the journal by the next run of the same
  organization or by ``psbridge verify --repair``; until then the record has no manifest.

The manifest is always built from the journal (:func:`manifest_from_journal`), by the run
itself at its end or by the repair, so the three states are told by one piece of code.
:func:`inspect` recomputes every hash (and the manifest's own) and tells the states and
tampering apart. The manifest's ``self_sha256`` catches edits of the manifest itself; it is
an integrity check, not a signature: that is ``manifest.sig``, when the operator signs the record,
and :func:`inspect` checks it too (an unsigned record stays valid, and says it is unsigned).

Before anything is written, :func:`scrub` replaces every secret value this process has seen
with the mask (:func:`psbridge.secrets.redact`): a second line of defence behind notebooks
that never print a secret.

Records are written through a :class:`RecordStore` chosen by URL scheme, like papermill's
I/O handlers: a plain path (or ``file://``) is the local disk; an archive elsewhere registers
its own scheme with :func:`register_store`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import nbformat

from psbridge import signing
from psbridge.errors import RecordError
from psbridge.files import TEMPORARY_SUFFIX, write_atomic
from psbridge.intents import JOURNAL, Journal, Outcome
from psbridge.secrets import redact

MANIFEST = "manifest.json"
SIGNATURE = signing.SIGNATURE
# Written with the manifest, so not among the files it hashes: its own hash, and the signature over it.
_NOT_HASHED = frozenset({MANIFEST, SIGNATURE})
FORMAT = "psbridge.record/2"
RUN_LOG = "run.log"


class RecordState(enum.StrEnum):
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


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
            raise RecordError(f"{name!r} is outside the record {self.root}")
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
        raise RecordError(f"no record store for '{scheme}://' (known: {', '.join(sorted(_STORES))})")
    store: RecordStore = _STORES[scheme](text)
    return store


# --- scrubbing ------------------------------------------------------------------------------


def _scrub_value(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    if isinstance(value, str):
        # A secret *reference* of this run is kept whole, even when a short secret value seen
        # elsewhere happens to be part of its name: the record must say where secrets live.
        return redact(value, keep)
    if isinstance(value, list):
        return [_scrub_value(v, keep) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_value(v, keep) for k, v in value.items()}
    return value


def scrub(nb: Any, keep: frozenset[str] = frozenset()) -> Any:
    """A copy of the notebook with every known secret value masked in every string (sources,
    outputs, metadata)."""
    # On the notebook as it is held in memory, where a cell's source and an output's text are one
    # string each (the file splits them into lines): a value that spans a line break is masked
    # too, and nothing is serialized and parsed again on the way (through the file form, scrubbing
    # was 22 of the recorder's 38 ms of CPU a no-change run; now 7). The notebook is validated when
    # its file is written.
    return nbformat.from_dict(_scrub_value(nb, keep))


# --- writing --------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "self_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def notebook_html(nb: Any, title: str = "", header: dict[str, str] | None = None, **page: Any) -> str:
    """The executed notebook as a self-contained page (what an auditor opens; see psbridge.pages).

    ``page``: the rest of :func:`psbridge.pages.notebook_page`'s options (heading, nav, status).
    """
    from psbridge.pages import notebook_page

    return redact(notebook_page(nb, title=title, header=header, **page))


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
            raise RecordError("the manifest is written by write_manifest")
        self.store.write_bytes(name, data)
        digest = sha256(data)
        self.written[name] = digest
        return digest

    def write_text(self, name: str, text: str, keep: frozenset[str] = frozenset()) -> str:
        return self.write(name, redact(text, keep).encode("utf-8"))

    def write_notebook(self, stem: str, nb: Any, *, html: bool = True, keep: frozenset[str] = frozenset(),
                       title: str = "", header: dict[str, str] | None = None, **page: Any) -> Any:
        """Scrub, then write ``<stem>.ipynb`` and (by default) ``<stem>.html``; the scrubbed notebook."""
        clean = scrub(nb, keep)
        self.write(f"{stem}.ipynb", nbformat.writes(clean).encode("utf-8"))
        if html:
            self.write(f"{stem}.html", notebook_html(clean, title or stem, header, **page).encode("utf-8"))
        return clean

    def write_manifest(self, manifest: dict[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
        body = _scrub_value(dict(manifest), keep)
        body["format"] = FORMAT
        body["files"] = dict(sorted(self.written.items()))
        body["self_sha256"] = sha256(_canonical(body))
        text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
        self.store.write_bytes(MANIFEST, text.encode("utf-8"))
        written: dict[str, Any] = body
        return written


# --- the manifest, from the journal -----------------------------------------------------------


def manifest_from_journal(journal: Journal) -> dict[str, Any]:
    """The manifest a journal describes (without ``files``): head, steps, changes, state.

    The journal's ``run-start`` entry carries the head (run id, runbook, who, where, parameters)
    and every step as planned; each ``step-end`` entry a finished step. A journal without a
    ``run-end`` is a run that died: its state is interrupted, and the step that had started but
    not ended is marked so.
    """
    start = journal.first("run-start")
    if start is None:
        raise RecordError("the journal has no run-start entry: not a psbridge run")
    head = dict(start.get("head") or {})
    steps = {s["id"]: dict(s) for s in start.get("steps") or []}
    running: str | None = None
    for entry in journal.entries:
        if entry.get("event") == "step-start":
            running = entry.get("step")
            if running in steps:
                steps[running].update(status="interrupted", started=entry.get("t"))
        elif entry.get("event") == "step-end":
            outcome = dict(entry.get("outcome") or {})
            if outcome.get("id") in steps:
                steps[outcome["id"]] = outcome
            running = None
    end = journal.first("run-end")
    changes = [c.as_dict() for c in journal.changes()]
    if end is None:
        state = RecordState.INTERRUPTED
        in_flight = [c for c in changes if c["outcome"] == Outcome.IN_FLIGHT]
        ended = journal.entries[-1].get("t") if journal.entries else None
        failure = ("the run was interrupted" + (f" during step {running}" if running else "")
                   + (f", with {len(in_flight)} change(s) in flight" if in_flight else ""))
        head.update(status=str(state), failure=failure, ended=ended, interrupted_step=running)
    else:
        state = RecordState(str(end.get("status")))
        head.update(status=str(state), failure=end.get("failure"), ended=end.get("t"),
                    duration_s=end.get("duration_s"))
    head["steps"] = list(steps.values())
    head["changes"] = changes
    head["identities"] = identities_from(journal)
    return head


def identities_from(journal: Journal) -> list[dict[str, Any]]:
    """Every account that acted in the run (``acted-as`` entries: :func:`psbridge.intents.acted_as`),
    once each, with the steps it acted in."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    step: str | None = None
    for entry in journal.entries:
        if entry.get("event") == "step-start":
            step = entry.get("step")
        elif entry.get("event") == "acted-as":
            key = (str(entry.get("as")), str(entry.get("account")), str(entry.get("where") or ""))
            who = found.setdefault(key, {"as": key[0], "account": key[1], "where": key[2], "steps": []})
            if step and step not in who["steps"]:
                who["steps"].append(step)
    return list(found.values())


def write_manifest_from_journal(location: str | Path, keep: frozenset[str] = frozenset(),
                                signer: signing.Signer | None = None, html: bool = True) -> dict[str, Any]:
    """Write the run page and the manifest the record's journal describes, hashing every file;
    with ``signer``, sign the manifest (``manifest.sig``) and name the signer on the run page."""
    store = store_for(location)
    manifest = manifest_from_journal(Journal.read(Path(str(store.location)) / JOURNAL))
    if signer is not None:
        manifest["signer"] = signer.identity
    if isinstance(store, LocalStore):
        # A write cut short by the crash: its temporary file is not part of the record.
        for name in store.names():
            if PurePosixPath(name).name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                (store.root / name).unlink(missing_ok=True)
    from psbridge import runpage

    writer = RecordWriter(store)
    for name in store.names():
        if name not in _NOT_HASHED and name != runpage.RUN_PAGE:
            writer.written[name] = sha256(store.read_bytes(name))
    if html:
        others = dict(writer.written)
        page = runpage.run_page(_scrub_value(dict(manifest), keep), others)
        writer.write_text(runpage.RUN_PAGE, page, keep=keep)
    written = writer.write_manifest(manifest, keep=keep)
    if signer is not None:
        store.write_bytes(SIGNATURE, signer.sign(store.read_bytes(MANIFEST)))
    return written


# --- reading and verifying ------------------------------------------------------------------


def read_manifest(location: str | Path) -> dict[str, Any]:
    data = json.loads(store_for(location).read_bytes(MANIFEST))
    if not isinstance(data, dict):
        raise RecordError(f"{location}/{MANIFEST} is not a manifest")
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
            # A name outside the record (RecordError) or one no path can hold (a NUL) is missing too.
            data = store.read_bytes(name)
        except (FileNotFoundError, ValueError):
            found.append(Difference(name, "missing"))
            continue
        if sha256(data) != digest:
            found.append(Difference(name, "changed"))
    for name in store.names():
        if name not in _NOT_HASHED and name not in files:
            found.append(Difference(name, "unrecorded"))
    return found


class Verdict(enum.IntEnum):
    """What ``psbridge verify`` says of a folder, and its exit code."""

    COMPLETE = 0
    TAMPERED = 1
    # 2 is the command line's own: a usage error.
    FAILED = 3
    INTERRUPTED = 4
    NOT_A_RECORD = 5
    NO_SUCH_FOLDER = 6
    NOT_A_FOLDER = 7
    BAD_SIGNATURE = 8  # manifest.sig does not sign this manifest, or the signature is gone
    WRONG_SIGNER = 9  # a good signature, by someone other than the signer asked for (or none)


@dataclass
class Inspection:
    """A record as :func:`inspect` found it."""

    location: str
    verdict: Verdict
    differences: list[Difference] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    needs_repair: bool = False  # interrupted, and no manifest rebuilt yet
    signature: signing.SignatureCheck | None = None  # None: unsigned
    problem: str = ""  # for a bad signature or a wrong signer, what is wrong

    @property
    def state(self) -> RecordState | None:
        if self.manifest is None:
            return RecordState.INTERRUPTED if self.needs_repair else None
        try:
            return RecordState(str(self.manifest.get("status")))
        except ValueError:
            return None


def _signature(store: RecordStore, manifest: dict[str, Any], names: list[str],
               expected: str | None) -> tuple[signing.SignatureCheck | None, Verdict | None, str]:
    """The record's signature, checked; a verdict and why when it fails."""
    named = manifest.get("signer") if isinstance(manifest.get("signer"), dict) else None
    if SIGNATURE not in names:
        if named:
            return None, Verdict.BAD_SIGNATURE, (f"the manifest names the signer {named.get('subject')}, but "
                                                 f"{SIGNATURE} is missing")
        if expected:
            return None, Verdict.WRONG_SIGNER, f"unsigned, but a signature by {expected} was asked for"
        return None, None, ""
    check = signing.check_signature(store.read_bytes(MANIFEST), store.read_bytes(SIGNATURE))
    if not check.valid:
        return check, Verdict.BAD_SIGNATURE, check.problem
    if not named or named.get("thumbprint") != check.signer.get("thumbprint"):
        return check, Verdict.BAD_SIGNATURE, (
            f"signed by {check.signer.get('subject')}, but the manifest and its run page name "
            f"{(named or {}).get('subject') or 'no signer'}")
    if expected and check.signer.get("thumbprint") != expected:
        return check, Verdict.WRONG_SIGNER, (f"signed by {check.signer.get('subject')} "
                                             f"(SHA-1 {check.signer.get('thumbprint')}), not by {expected}")
    return check, None, ""


def inspect(location: str | Path, expected_signer: str | None = None) -> Inspection:
    """Whether ``location`` is a record, in which state, whether it is intact and whose signature
    it carries. ``expected_signer``: the thumbprint the signature must be made with."""
    where = str(location)
    if "://" not in where:
        path = Path(where)
        if not path.exists():
            return Inspection(where, Verdict.NO_SUCH_FOLDER)
        if not path.is_dir():
            return Inspection(where, Verdict.NOT_A_FOLDER)
    store = store_for(location)
    names = store.names()
    if MANIFEST not in names:
        if JOURNAL in names and Journal.read(Path(store.location) / JOURNAL).first("run-start"):
            return Inspection(where, Verdict.INTERRUPTED, needs_repair=True)
        return Inspection(where, Verdict.NOT_A_RECORD)
    found = verify(location)
    manifest = None
    with contextlib.suppress(ValueError, OSError):
        manifest = read_manifest(location)
    if found or manifest is None:
        return Inspection(where, Verdict.TAMPERED, found, manifest)
    check, bad, problem = _signature(store, manifest, names, expected_signer)
    if bad is not None:
        return Inspection(where, bad, [], manifest, signature=check, problem=problem)
    verdicts = {str(RecordState.COMPLETE): Verdict.COMPLETE, str(RecordState.FAILED): Verdict.FAILED,
                str(RecordState.INTERRUPTED): Verdict.INTERRUPTED}
    return Inspection(where, verdicts.get(str(manifest.get("status")), Verdict.TAMPERED), [], manifest,
                      signature=check)


def records_of(root: Path, customer: str, org: str) -> Iterator[Path]:
    """The record directories of one org, oldest first (:func:`in_run_order`)."""
    base = Path(root) / customer / org
    if base.is_dir():
        yield from in_run_order(p for p in base.iterdir() if (p / MANIFEST).is_file())


def in_run_order(records: Iterable[Path], newest_first: bool = False) -> list[Path]:
    """Record directories in the order their runs started.

    A run id sorts by its start to the second, then by a random suffix: two runs of one org that
    started within the same second (a run to one step, then its resume) are ordered by when each
    started, as its manifest (or, for a run that died, its journal) says, or the later could be
    taken for the earlier.
    """
    found = sorted(records)
    seconds = Counter(_run_second(p) for p in found)

    def order(p: Path) -> tuple[str, str, str]:
        started = ""
        if seconds[_run_second(p)] > 1:
            with contextlib.suppress(OSError, ValueError, RecordError):
                if (p / MANIFEST).is_file():
                    started = str(read_manifest(p).get("started") or "")
                else:
                    head = (Journal.read(p / JOURNAL).first("run-start") or {}).get("head") or {}
                    started = str(head.get("started") or "")
        return _run_second(p), started, p.name

    return sorted(found, key=order, reverse=newest_first)


def _run_second(record: Path) -> str:
    return record.name.split("-", 1)[0]


def run_lock(root: Path, customer: str, org: str) -> Path:
    """The lock file a run of one org holds (outside the records themselves, so they hold only records)."""
    return Path(root) / ".locks" / customer / f"{org}.lock"


def run_lock_of(record_dir: Path) -> Path:
    """:func:`run_lock` for the org a record directory ``<root>/<customer>/<org>/<run>`` belongs to."""
    record_dir = Path(record_dir).resolve()
    return run_lock(record_dir.parents[2], record_dir.parents[1].name, record_dir.parent.name)


def unfinished_records(root: Path, customer: str, org: str) -> list[Path]:
    """Records of one org left without a manifest by a run that died (oldest first)."""
    base = Path(root) / customer / org
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir()
                  if p.is_dir() and not (p / MANIFEST).exists() and (p / JOURNAL).is_file())
