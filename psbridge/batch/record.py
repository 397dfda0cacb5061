"""The batch's own record: ``records/batches/<batch-id>/``.

::

    inventory.yaml    the inventory as validated (every org's parameters; secrets as references)
    summary.csv       one row per org: status, failed step and reason, durations, certificate
    summary.parquet   thumbprint and expiry, tenant id, the org's record (relative to this folder),
                      and the facts the runbook names as its summary columns (``summary:`` in its
                      runbook.yaml: s2s-health's verdict, reasons and days left), typed by the fact
    index.html        the same table as a page: sortable, coloured by status, linked; offline (a
                      board coloured and counted by the runbook's ``summary.colour`` column)
    locks.json        when each deployment- or tenant-wide step held its deployment's or tenant's lock
    manifest.json     the batch head, each org's record with the SHA-256 of its manifest, and
                      the SHA-256 of every file here (psbridge.evidence's manifest, kind "batch")

:func:`verify` checks the batch's own files, then that each org's manifest is still the one
hashed here and that each org's record is intact: ``psbridge verify`` on a batch folder.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from psbridge import evidence
from psbridge.batch.work import BLOCKED, COMPLETE, FAILED, INTERRUPTED, PLANNED, SKIPPED
from psbridge.secrets import redact

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.runbook.definition import Runbook

KIND = "batch"
BATCHES = "batches"  # records/batches/<id>/: a name no customer may take
_RAN = ("succeeded", "failed", "interrupted")  # a step's statuses when it ran in this batch (not carried)
COLUMNS = ["customer", "organization", "deployment", "tenant", "lead", "status", "state", "action",
           "failed_step", "reason", "blocked_by", "duration_s", "steps_run", "thumbprint",
           "certificate_not_after", "tenant_id", "run_id", "record", "worker"]


def batch_dir(records_root: Path, batch_id: str) -> Path:
    return Path(records_root) / BATCHES / batch_id


def new_batch_id(now: dt.datetime | None = None) -> str:
    from psbridge.runbook.runner import new_run_id

    return new_run_id(now)


def final_state(status: str) -> str:
    """The state the org's latest record is in after the batch (skipped: complete earlier)."""
    if status in (COMPLETE, SKIPPED):
        return str(evidence.RecordState.COMPLETE)
    return {PLANNED: "planned", BLOCKED: "blocked", INTERRUPTED: "interrupted"}.get(status, FAILED)


# A fact's kind -> the column's dtype: nullable (an org that failed before the fact has none), and
# typed even when no org has it, so a Parquet reader sees days as integers, never as text or null.
_DTYPES = {"int": "Int64", "bool": "boolean", "str": "string", "list": "string", "dict": "string",
           "secret": "string"}
LIST_JOIN = "; "


def board_columns(book: Runbook | None) -> list[str]:
    """The runbook's own summary columns (after the batch's ``action``); none for most runbooks.

    A name the batch's table already has is refused (``psbridge batch`` asks before anything runs).
    """
    extra = list(book.summary.columns) if book is not None else []
    clash = sorted(set(extra) & set(COLUMNS))
    if book is not None and clash:
        from psbridge.runbook.definition import DefinitionError

        raise DefinitionError(f"runbook {book.name}: summary columns {', '.join(clash)} are the batch's "
                              "own; name them otherwise")
    return extra


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "list":
        return redact(LIST_JOIN.join(map(str, value)) if isinstance(value, list) else str(value))
    if kind == "dict":
        return redact(json.dumps(value, sort_keys=True))
    if kind in ("str", "secret"):
        return redact(str(value))
    return value


def summary(outcomes: list[dict[str, Any]], where: Path, book: Runbook | None = None) -> pd.DataFrame:
    """One row per org, as a DataFrame; ``record`` relative to ``where`` (the batch folder).

    With ``book``, the facts its ``summary:`` names follow the ``action`` column, each under its
    column name and typed by the fact's kind.
    """
    import pandas as pd

    extra = board_columns(book)
    kinds = {col: book.facts[fact].type for col, fact in book.summary.columns.items()} if book else {}

    rows = []
    for o in outcomes:
        facts = o.get("facts") or {}
        record = o.get("record")
        rows.append({
            "customer": o["customer"], "organization": o["organization"], "deployment": o["deployment"],
            "tenant": o["tenant"], "lead": bool(o["lead"]), "status": o["status"],
            "state": final_state(o["status"]), "action": o.get("action") or "",
            "failed_step": o.get("failed_step"), "reason": redact(o["reason"]) if o.get("reason") else None,
            "blocked_by": o.get("blocked_by"), "duration_s": o.get("duration_s"),
            "steps_run": sum(1 for s in o.get("steps") or [] if s["status"] in _RAN),
            "thumbprint": facts.get("thumbprint"),
            "certificate_not_after": facts.get("certificate_not_after"),
            "tenant_id": facts.get("tenant_id") or facts.get("s2s_tenant_id") or None,
            "run_id": o.get("run_id"),
            "record": Path(os.path.relpath(record, where)).as_posix() if record else None,
            "worker": o.get("worker") or "",
        })
        if book is not None:
            rows[-1].update({col: _cell(facts.get(fact), kinds[col])
                             for col, fact in book.summary.columns.items()})
    at = COLUMNS.index("action") + 1
    table = pd.DataFrame(rows, columns=COLUMNS[:at] + extra + COLUMNS[at:])
    return table.astype({col: _DTYPES[kinds[col]] for col in extra})


def write(records_root: Path, batch_id: str, head: dict[str, Any], inventory: dict[str, Any],
          outcomes: list[dict[str, Any]], book: Runbook | None = None) -> tuple[Path, pd.DataFrame]:
    """Write the batch record; its folder and its summary table (with ``book``'s summary columns)."""
    from psbridge.batch.page import summary_page

    where = batch_dir(records_root, batch_id)
    where.mkdir(parents=True, exist_ok=True)
    writer = evidence.RecordWriter.at(where)
    table = summary(outcomes, where, book)
    writer.write_text("inventory.yaml", yaml.safe_dump(inventory, sort_keys=False, allow_unicode=True))
    writer.write_text("summary.csv", table.to_csv(index=False))
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    writer.write("summary.parquet", buf.getvalue())
    writer.write_text("index.html", summary_page(head, table, outcomes, where,
                                                 book.summary if book is not None else None))
    # When each state-changing deployment- or tenant-wide step held its lock (seconds since the epoch).
    held = [{"org": o["key"], "lock": name, "acquired": since, "released": until}
            for o in outcomes for name, since, until in o.get("held") or []]
    writer.write_text("locks.json", json.dumps(held, indent=1) + "\n")
    orgs = []
    for o in outcomes:
        # From the outcome, not the table: pandas makes a missing record NaN, which is no JSON.
        rel = Path(os.path.relpath(o["record"], where)).as_posix() if o.get("record") else None
        entry: dict[str, Any] = {"key": o["key"], "status": o["status"], "record": rel,
                                 "manifest_sha256": None}
        if o.get("record"):
            manifest = Path(o["record"]) / evidence.MANIFEST
            if manifest.is_file():
                entry["manifest_sha256"] = evidence.sha256(manifest.read_bytes())
        orgs.append(entry)
    writer.write_manifest({**head, "kind": KIND, "orgs": orgs})
    return where, table


def is_batch(location: Path) -> bool:
    try:
        return evidence.read_manifest(location).get("kind") == KIND
    except (OSError, ValueError):
        return False


def verify(location: Path) -> list[str]:
    """Every way the batch record, or an org record it names, differs from what was recorded."""
    found = [f"batch: {d}" for d in evidence.verify(location)]
    try:
        manifest = evidence.read_manifest(location)
    except (OSError, ValueError):
        return found or ["batch: manifest.json unreadable"]
    for org in manifest.get("orgs", []):
        rel, digest = org.get("record"), org.get("manifest_sha256")
        if not isinstance(rel, str):  # an org that left no record (blocked, never started)
            rel = None
        if not rel:
            continue
        record = (Path(location) / rel).resolve()
        name = f"{org.get('key')} ({rel})"
        try:
            now = evidence.sha256((record / evidence.MANIFEST).read_bytes())
        except OSError:
            found.append(f"{name}: its manifest.json is missing")
            continue
        if digest and now != digest:
            found.append(f"{name}: its manifest.json is not the one this batch recorded")
        found += [f"{name}: {d}" for d in evidence.verify(record)]
    return found
