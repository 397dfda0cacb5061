"""What ``psbridge batch`` does, apart from parsing its arguments.

Everything is checked before anything runs — the runbook, the inventory whole (every problem
with its row), ``--only``/``--from`` — then the orgs go to Dask (:mod:`psbridge.batch.engine`)
and, whatever happened, the batch's record is written (:mod:`psbridge.batch.record`).

Exit codes: 0 every org complete (or planned), 1 some org failed or was blocked, 2 bad input
(nothing ran), 3 stopped by Ctrl-C (resumable: run the same command again).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

from rich.console import Console

from psbridge import __version__
from psbridge.batch import engine, record
from psbridge.batch.graphgate import DEFAULT_CONCURRENCY
from psbridge.batch.inventory import Inventory, InventoryError, load
from psbridge.batch.progress import BatchProgress
from psbridge.batch.work import BLOCKED, FAILED, INTERRUPTED, OrgTask
from psbridge.runbook import definition
from psbridge.runbook.console import escape
from psbridge.runbook.definition import Runbook


def prepare(inventory_file: Path, runbook: str | None, *, only: str | None, start: str | None,
            orgs: str | None) -> tuple[Runbook, Inventory]:
    """The runbook and the inventory (selected by ``orgs``), or the error that says what is wrong."""
    from psbridge.runbook import registry

    if only and start:
        raise definition.DefinitionError("give --only or --from, not both")
    # The inventory may name its runbook; the command line wins.
    named = runbook
    if named is None and inventory_file.suffix.lower() in (".yaml", ".yml") and inventory_file.is_file():
        from psbridge.batch.inventory import read_rows

        named = read_rows(inventory_file)[0]
    book = registry.load(named)
    record.board_columns(book)
    for ref in (only, start):
        if ref:
            book.step(ref)
    inventory = load(inventory_file, book).select(orgs)
    if not inventory.orgs:
        raise InventoryError(str(inventory_file), [f"no organization matches --orgs {orgs}"])
    if any(o.customer == record.BATCHES for o in inventory.orgs):
        raise InventoryError(str(inventory_file),
                             [f"customer {record.BATCHES!r} is taken by the batch records"])
    return book, inventory


def run(inventory_file: Path, runbook: str | None, records: Path, *, parallel: int = 2,
        plan: bool = False, only: str | None = None, start: str | None = None, orgs: str | None = None,
        cluster: str | None = None, console: Console | None = None, forked_kernels: bool = True,
        graph_concurrency: int = DEFAULT_CONCURRENCY) -> int:
    console = console or Console(highlight=False)
    try:
        book, inventory = prepare(inventory_file, runbook, only=only, start=start, orgs=orgs)
    except (definition.DefinitionError, InventoryError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    records = records.resolve()
    batch_id = record.new_batch_id() + ("-plan" if plan else "")
    mode = "plan" if plan else "apply"
    deployments = inventory.deployments()
    verb = "Planning" if plan else "Running"
    console.print(f"{verb} [bold]{escape(book.name)}[/] for {len(inventory.orgs)} organization(s)"
                  f" in {len(deployments)} deployment(s), "
                  + (f"on the cluster at {escape(cluster)}" if cluster else f"{parallel} at a time")
                  + f"; batch {batch_id}")
    if inventory.ignored.note():
        console.print(f"[dim]{escape(inventory.ignored.note())}[/]", soft_wrap=True)
    base = OrgTask(entry=inventory.orgs[0], runbook=str(book.source.parent if book.source else book.name),
                   records_root=str(records), batch_id=batch_id, lead=True, mode=mode, start=start, only=only,
                   forked_kernels=forked_kernels, graph_concurrency=graph_concurrency)
    if cluster and not plan:
        from psbridge.batch.shared import generated_pfx_warning

        warning = generated_pfx_warning(inventory)
        if warning:
            console.print(f"[yellow]{escape(warning)}[/]")
    started = dt.datetime.now(dt.UTC)
    progress = BatchProgress(console, [o.key for o in inventory.orgs], [s.id for s in book.steps])
    try:
        with progress:
            outcomes, stopped = engine.run(inventory, base, parallel=parallel, cluster=cluster,
                                           on_event=progress)
    except engine.ClusterError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    ended = dt.datetime.now(dt.UTC)
    bad = [o for o in outcomes if o["status"] in (FAILED, BLOCKED, INTERRUPTED)]
    status = "interrupted" if stopped else ("failed" if bad else "complete")
    head: dict[str, Any] = {
        "batch_id": batch_id, "runbook": {"name": book.name, "version": book.version, "sha256": book.sha256},
        "inventory": str(inventory_file), "mode": mode, "status": status, "started": started.isoformat(),
        "ended": ended.isoformat(), "duration_s": round((ended - started).total_seconds(), 3),
        "parallel": parallel, "graph_concurrency": graph_concurrency, "cluster": cluster,
        "orgs_selected": orgs, "only": only, "from": start,
        "operator": _operator(), "machine": platform.node(), "psbridge": __version__,
    }
    where, table = record.write(records, batch_id, head, inventory.as_validated, outcomes, book)
    _print_summary(console, table, [c for c in (book.summary.colour, book.summary.sort) if c])
    console.print(f"Batch record: {escape(str(where))} (index.html; psbridge verify {escape(str(where))})",
                  soft_wrap=True)
    if stopped:
        console.print("[yellow]Stopped by Ctrl-C: run the same command again to resume[/]")
        return 3
    return 1 if bad else 0


def _print_summary(console: Console, table: Any, board: list[str]) -> None:
    """The summary on the terminal; with the runbook's board columns (s2s-health: verdict, days left)."""
    from rich.table import Table

    shown = Table(title="batch summary")
    for col in ("organization", "deployment", "status", *board, "action", "failed_step", "reason"):
        shown.add_column(col, overflow="fold")
    for row in table.to_dict("records"):
        colours = {"complete": "green", "skipped": "green", "planned": "cyan", "failed": "red"}
        colour = colours.get(row["status"], "yellow")
        shown.add_row(escape(f"{row['customer']}/{row['organization']}"), escape(str(row["deployment"])),
                      f"[{colour}]{escape(str(row['status']))}[/]",
                      *(escape("" if _blank(row[c]) else str(row[c])) for c in board),
                      escape(str(row["action"] or "")),
                      escape(str(row["failed_step"] or "")), escape(str(row["reason"] or "")))
    console.print(shown)


def _blank(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USERNAME", "unknown")
