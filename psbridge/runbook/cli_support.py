"""What ``psbridge run | plan | verify | demo`` do, apart from parsing their arguments."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from psbridge import evidence
from psbridge.runbook import definition
from psbridge.runbook.console import ConsoleProgress, escape, print_result
from psbridge.runbook.deployment import DeploymentError
from psbridge.runbook.params import ParamsError, load_params, validate
from psbridge.runbook.runner import RunError, Runner, RunResult

DEMO_CUSTOMER = "demo"


def _console() -> Console:
    return Console(highlight=False)


def _book(name_or_path: str | Path | None) -> definition.Runbook:
    from psbridge.runbook import registry

    return registry.load(name_or_path)


def list_runbooks() -> int:
    from rich.table import Table

    from psbridge.runbook import registry

    console = _console()
    table = Table(title="runbooks")
    for col in ("name", "title", "steps", "from", "folder"):
        table.add_column(col, overflow="fold")
    for name, src in sorted(registry.available().items()):
        try:
            book = definition.load(src.path)
        except definition.DefinitionError as e:
            table.add_row(escape(name), f"[red]{escape(str(e))}[/]", "", escape(src.origin),
                          escape(str(src.path.parent)))
            continue
        table.add_row(escape(name), escape(book.title), str(len(book.steps)), escape(src.origin),
                      escape(str(src.path.parent)))
    console.print(table)
    return 0


def schema(runbook: str | None) -> int:
    import json

    from psbridge.runbook.schema import json_schema

    try:
        book = _book(runbook)
    except definition.DefinitionError as e:
        _console().print(f"[red]{escape(str(e))}[/]")
        return 2
    print(json.dumps(json_schema(book), indent=2, ensure_ascii=False))
    return 0


def notebooks(runbook: str | None, *, write: bool) -> int:
    from psbridge.runbook import notebooks as nbs

    console = _console()
    try:
        book = _book(runbook)
    except definition.DefinitionError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    if write:
        for path in nbs.sync(book):
            console.print(f"wrote {escape(str(path))}")
        return 0
    problems = nbs.check(book)
    for p in problems:
        console.print(f"[red]{escape(p)}[/]")
    if not problems:
        console.print(f"{book.name}: every notebook is in step with runbook.yaml and its .py source")
    return 1 if problems else 0


def run(params_file: Path, runbook: str | None, records: Path, *, mode: str = "apply",
        start: str | None = None, only: str | None = None, until: str | None = None,
        resume: bool = False) -> int:
    console = _console()
    try:
        book = _book(runbook)
        params = validate(book, load_params(params_file), where=str(params_file))
        if only and (start or until):
            raise definition.DefinitionError("give --only alone, or --from and/or --to")
        for ref in (start, only, until):
            if ref:
                book.step(ref)
        if start and until and book.index(until) < book.index(start):
            raise definition.DefinitionError(f"--to {until} comes before --from {start}")
        if resume and (start or only):
            raise definition.DefinitionError("give --resume alone: it starts where the last run stopped")
    except (definition.DefinitionError, ParamsError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    verb = "Planning" if mode == "plan" else "Running"
    console.print(f"{verb} [bold]{book.name}[/] for {params['customer']}/{params['organization']}")
    try:
        runner = Runner(book, params, records_root=records, mode=mode,
                        progress=ConsoleProgress(console, plan=mode == "plan"))
        result = runner.run(start=start, only=only, until=until, resume=resume)
    except (RunError, DeploymentError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    for rec in runner.repaired:
        console.print(f"The earlier run {escape(rec.name)} had been interrupted: its record now says so "
                      f"(psbridge verify {escape(str(rec))})", highlight=False)
    resume_with = None
    if mode == "apply":
        resume_with = ["psbridge", "run", str(params_file)]
        if runbook is not None:
            resume_with += ["--runbook", str(runbook)]
        if Path(records) != Path("records"):
            resume_with += ["--records", str(records)]
    print_result(console, result, resume_with)
    return 0 if result.ok else 1


def verify(record_dir: Path, repair: bool = False) -> int:
    """Tell the record's state and whether it is intact; the exit code is :class:`evidence.Verdict`."""
    console = _console()
    where = escape(str(record_dir))
    from psbridge.batch import record as batch_record

    if batch_record.is_batch(record_dir):
        return _verify_batch(console, record_dir)
    found = evidence.inspect(record_dir)
    if found.needs_repair and repair:
        from psbridge import files

        # The org's run lock, where the record sits in a records tree: a record without a
        # manifest may belong to a run still going.
        lock_path = evidence.run_lock_of(record_dir)
        lock = files.locked(lock_path, timeout=0) if lock_path.parent.is_dir() else contextlib.nullcontext()
        try:
            with lock:
                evidence.write_manifest_from_journal(record_dir)
        except files.LockTimeout:
            console.print(f"[red]{where}: a run of this organization is in progress; repair it afterwards[/]")
            return int(evidence.Verdict.INTERRUPTED)
        console.print(f"{where}: the manifest of the interrupted run was rebuilt from its journal")
        found = evidence.inspect(record_dir)
    verdict = found.verdict
    V = evidence.Verdict
    if verdict == V.NO_SUCH_FOLDER:
        console.print(f"[red]{where}: no such folder[/]")
    elif verdict == V.NOT_A_FOLDER:
        console.print(f"[red]{where}: a file, not a record folder (a record is the folder holding "
                      "manifest.json)[/]")
    elif verdict == V.NOT_A_RECORD:
        console.print(f"[red]{where}: not a psbridge record (no manifest.json and no journal.jsonl)[/]")
    elif verdict == V.TAMPERED:
        console.print(f"[red]{where}: TAMPERED — {len(found.differences)} difference(s) from its manifest[/]")
        for d in found.differences:
            console.print(f"  {escape(str(d))}")
    elif found.needs_repair:
        console.print(f"[yellow]{where}: INTERRUPTED — the run died before it could write its manifest; "
                      f"rebuild it from the journal with: psbridge verify --repair {where}[/]")
    else:
        _say_state(console, where, found)
    return int(verdict)


def _verify_batch(console: Console, batch_dir: Path) -> int:
    """A batch record: its own files, each org's manifest as hashed there, each org's record intact."""
    from psbridge.batch import record as batch_record

    where = escape(str(batch_dir))
    problems = batch_record.verify(batch_dir)
    manifest = evidence.read_manifest(batch_dir)
    if problems:
        console.print(f"[red]{where}: TAMPERED — {len(problems)} difference(s)[/]")
        for p in problems:
            console.print(f"  {escape(p)}")
        return int(evidence.Verdict.TAMPERED)
    orgs = manifest.get("orgs", [])
    state = str(manifest.get("status"))
    colour = "green" if state == "complete" else "yellow" if state == "interrupted" else "red"
    recorded = sum(1 for o in orgs if o.get("record"))
    console.print(f"[{colour}]{where}: intact batch, {state.upper()}[/] — its files and the records of "
                  f"{recorded} of {len(orgs)} organizations match their manifests")
    verdicts = {"complete": evidence.Verdict.COMPLETE, "interrupted": evidence.Verdict.INTERRUPTED}
    return int(verdicts.get(state, evidence.Verdict.FAILED))


def _say_state(console: Console, where: str, found: evidence.Inspection) -> None:
    manifest = found.manifest or {}
    count = len(manifest.get("files", {}))
    intact = f"{count} files match manifest.json (run {escape(str(manifest.get('run_id')))})"
    state = found.state
    if state == evidence.RecordState.COMPLETE:
        console.print(f"[green]{where}: intact, COMPLETE[/] — {intact}")
        return
    colour = "yellow" if state == evidence.RecordState.INTERRUPTED else "red"
    console.print(f"[{colour}]{where}: intact, {str(state).upper()}[/] — {intact}")
    console.print(f"  {escape(str(manifest.get('failure') or ''))}")
    for change in manifest.get("changes", []):
        if change.get("outcome") != "done":
            console.print(f"  {escape(change.get('outcome', ''))}: {escape(change.get('action', ''))} on "
                          f"{escape(change.get('where', ''))} ({escape(change.get('what', ''))})")


@contextlib.contextmanager
def _lab(state: Path) -> Iterator[Any]:
    """The lab for the demo: started here for the run, and stopped after."""
    from psbridge.runbook import demolab

    lab = demolab.start(state)
    try:
        yield lab
    finally:
        lab.stop()


def demo_parameters(book: definition.Runbook, state: Path, organization: str) -> dict[str, Any]:
    return validate(book, {
        "customer": DEMO_CUSTOMER,
        "organization": organization,
        "lab": str(state),
        "pfx_password": f"lab:{DEMO_CUSTOMER}/{organization}/pfx-password",
        "client_secret": f"lab:{DEMO_CUSTOMER}/{organization}/client-secret",
        "app_name": f"psbridge server-side sync ({organization})",
    }, where="demo parameters")


def run_demo(state: Path, records: Path, organization: str, console: Console | None = None) -> RunResult:
    """Run the whole runbook against the lab at ``state`` (which must be up)."""
    book = _book(None)
    params = demo_parameters(book, state, organization)
    progress = ConsoleProgress(console) if console else None
    return Runner(book, params, records_root=records, progress=progress).run()


def demo(state: Path | None, records: Path, organization: str) -> int:
    from psbridge.lab.secretstore import lab_state_dir

    console = _console()
    state = (state or lab_state_dir()).expanduser().resolve()
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    # The demo tenant's sign-in stays with the lab, apart from any real tenant's.
    os.environ.setdefault("PSBRIDGE_TOKEN_CACHE", str(state / "msal"))
    console.print(f"Starting the lab in {escape(str(state))} ...")
    try:
        with _lab(state):
            from psbridge.runbook.deployment import running_lab

            servers = ", ".join(s.name for s in running_lab(str(state)).servers)
            console.print(f"Lab up: CRM servers {servers}; Entra ID and Graph twin. "
                          f"Running the runbook for organization {organization}:")
            result = run_demo(state, records.resolve(), organization, console)
    except (RunError, DeploymentError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    print_result(console, result)
    if not result.ok:
        return 1
    found = evidence.verify(result.record_dir)
    if found:
        console.print(f"[red]the record does not verify: {', '.join(map(str, found))}[/]")
        return 1
    console.print(f"[green]Verified[/]: every file matches manifest.json "
                  f"(psbridge verify {escape(str(result.record_dir))})")
    return 0
