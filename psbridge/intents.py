"""The intent journal: what a run is about to change, written down before it changes it.

A run can die at any line: a fault, Ctrl-C, ``kill -9``, a laptop lid. What it was doing must
still be known afterwards, from the record alone, so that the next run (or ``psbridge verify
--repair``) can say what was done and what was in flight, and the resume can look at the
world for that one thing before acting. So every state-changing operation says::

    with intent("install-certificate", "CRM01", f"CertificateReconfiguration.ps1 installs {thumb}"):
        ...   # the change

and the journal gets, durably (one JSON line, flushed and fsync'd), an ``intent`` entry before
the block and an ``outcome`` entry after it (``done``, or ``failed`` with the reason). An intent
without an outcome is a change in flight when the process died.

Library code records intents as it logs: when no journal is configured (the bridge used on its
own, a notebook in JupyterLab) they go nowhere. The runner points ``PSBRIDGE_JOURNAL`` at the
record's ``journal.jsonl``, for itself and for the step kernels it starts.

The entries carry no secret values: what and where, references at most; every text passes
through :func:`psbridge.secrets.redact` on the way in, as a second line.

For tests only, ``PSBRIDGE_TEST_CRASH_AT=ACTION[@WHERE]:before|after`` kills the process (and
with ``PSBRIDGE_TEST_CRASH_PARENT=1`` the runner that started it: ``PSBRIDGE_RUNNER_PID`` when
the kernel was forked from the zygote, whose child it is, else its parent) with SIGKILL at that point: just
after the intent is on disk (``before`` the change) or just after the change, before its
outcome is written (``after``) — the two moments a crash leaves something to reconcile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import itertools
import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.secrets import redact

ENV_JOURNAL = "PSBRIDGE_JOURNAL"
ENV_CRASH_AT = "PSBRIDGE_TEST_CRASH_AT"
ENV_CRASH_PARENT = "PSBRIDGE_TEST_CRASH_PARENT"
ENV_RUNNER_PID = "PSBRIDGE_RUNNER_PID"
JOURNAL = "journal.jsonl"


class Outcome(enum.StrEnum):
    """What became of an intent. A StrEnum: the journal and the manifest hold its text."""

    DONE = "done"
    FAILED = "failed"
    IN_FLIGHT = "in flight"  # no outcome was written: the process died during the change


DONE, FAILED, IN_FLIGHT = Outcome.DONE, Outcome.FAILED, Outcome.IN_FLIGHT

_lock = threading.Lock()
_ids = itertools.count(1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def journal_path() -> Path | None:
    where = os.environ.get(ENV_JOURNAL)
    return Path(where) if where else None


def append(entry: dict[str, Any], path: Path | None = None, *, durable: bool = True) -> None:
    """Write one entry as one line, on disk before this returns (no-op without a journal).

    ``durable=False``: written (a killed process loses nothing written), not fsync'd — for
    entries no change waits on; the next durable entry of the file takes it to disk with it.
    """
    target = path or journal_path()
    if target is None:
        return
    line = redact(json.dumps({"t": _now(), **entry}, ensure_ascii=False, default=str)) + "\n"
    with _lock:
        # O_APPEND: the runner and its kernel append to one file, each line in one write.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


def sync(path: Path) -> None:
    """Take what was appended to the journal at ``path`` without fsync to disk now."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crash_point(action: str, where: str, phase: str) -> None:
    wanted = os.environ.get(ENV_CRASH_AT)
    if not wanted or wanted not in (f"{action}:{phase}", f"{action}@{where}:{phase}"):
        return
    kill = getattr(signal, "SIGKILL", signal.SIGTERM)
    if os.environ.get(ENV_CRASH_PARENT) == "1":
        os.kill(int(os.environ.get(ENV_RUNNER_PID) or os.getppid()), kill)
    os.kill(os.getpid(), kill)


@contextlib.contextmanager
def intent(action: str, where: str, what: str, **detail: Any) -> Iterator[dict[str, Any]]:
    """Journal the intent, run the block, journal its outcome; yields a dict for outcome details."""
    number = f"{os.getpid()}-{next(_ids)}"
    append({"event": "intent", "id": number, "action": action, "where": where, "what": what, **detail})
    _crash_point(action, where, "before")
    said: dict[str, Any] = {}
    try:
        yield said
    except BaseException as e:
        append({"event": "outcome", "id": number, "outcome": FAILED, "why": f"{type(e).__name__}: {e}"})
        raise
    _crash_point(action, where, "after")
    append({"event": "outcome", "id": number, "outcome": DONE, **said})


def note(event: str, **detail: Any) -> None:
    """A journal entry that is not an intent (who signed in, a PFX opened): no change waits on it,
    so it is not fsync'd on its own (:func:`append`)."""
    append({"event": event, **detail}, durable=False)


def acted_as(role: str, account: str, where: str = "") -> None:
    """Journal that ``account`` signed in as ``role`` (``winrm``, ``entra``, ``crm``) at ``where``:
    the run page names the people and accounts that acted, not only the OS user."""
    note("acted-as", **{"as": role, "account": account, "where": where})


PFX_OPENED = "pfx-opened"


def pfx_opened(sha256: str, password_at: str) -> None:
    """Journal that the PFX with these bytes opened with the password kept at ``password_at``:
    later steps of this run need not open it again to know. Only a reference is written; a value
    given in its place is not written down at all (not even redacted)."""
    from psbridge.secrets import SecretError, SecretRef

    try:
        SecretRef.parse(password_at)
    except SecretError:
        return
    note(PFX_OPENED, sha256=sha256, password_at=password_at)


def pfx_opened_in_this_run(sha256: str, password_at: str) -> bool:
    """Whether a step of this run (this journal) opened these PFX bytes with that password."""
    where = journal_path()
    if where is None:
        return False
    wanted = {"event": PFX_OPENED, "sha256": sha256, "password_at": password_at}
    return any(all(e.get(k) == v for k, v in wanted.items()) for e in Journal.read(where).entries)


# --- reading a journal back ------------------------------------------------------------------


def _outcome(text: str) -> Outcome | str:
    try:
        return Outcome(text)
    except ValueError:
        return text


_INTENT_KEYS = ("t", "event", "id", "action", "where", "what")


@dataclass
class Change:
    """One intent and what became of it."""

    action: str
    where: str
    what: str
    step: str | None
    outcome: Outcome | str = IN_FLIGHT  # str: an outcome this psbridge does not know, kept as written
    started: str = ""
    ended: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "action": self.action, "where": self.where, "what": self.what,
                "outcome": self.outcome, "started": self.started, "ended": self.ended, **self.detail}


@dataclass
class Journal:
    """A journal as read back: its entries, and the changes they describe, in order."""

    entries: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> Journal:
        entries = []
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls([])
        for line in text.splitlines():
            # The last line may be cut short by the crash itself: what was whole is kept.
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return cls(entries)

    def first(self, event: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e.get("event") == event), None)

    def changes(self) -> list[Change]:
        step: str | None = None
        found: dict[str, Change] = {}
        for e in self.entries:
            kind = e.get("event")
            if kind == "step-start":
                step = e.get("step")
            elif kind == "intent":
                extra = {k: v for k, v in e.items() if k not in _INTENT_KEYS}
                key = str(e.get("id"))
                found[key] = Change(str(e.get("action")), str(e.get("where")), str(e.get("what")), step,
                                    started=str(e.get("t")), detail=extra)
            elif kind == "outcome" and str(e.get("id")) in found:
                change = found[str(e.get("id"))]
                change.outcome = _outcome(str(e.get("outcome")))
                change.ended = str(e.get("t"))
                change.detail.update({k: v for k, v in e.items() if k not in ("t", "event", "id", "outcome")})
        return list(found.values())

    def in_flight(self) -> list[Change]:
        return [c for c in self.changes() if c.outcome == IN_FLIGHT]
