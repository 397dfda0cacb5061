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
from psbridge.runbook.console import ConsoleProgress, escape, make_console, print_result
from psbridge.runbook.deployment import DeploymentError
from psbridge.runbook.params import ParamsError, check, load_params, validate
from psbridge.runbook.runner import RunError, Runner, RunResult

DEMO_CUSTOMER = "demo"


def _console() -> Console:
    return make_console()


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


def _signer(sign: str | None, sign_password: str) -> Any:
    from psbridge import signing

    return signing.load_signer(sign, sign_password) if sign else None


def _program() -> str:
    """The psbridge command as this process was started, so a printed command runs as pasted."""
    import shutil
    import sys

    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("psbridge")
    if argv0.name.lower().startswith("psbridge") and argv0.parent != Path():
        return str(argv0.resolve())
    return shutil.which("psbridge") or "psbridge"


def resume_command(params_file: Path, runbook: str | None, records: Path, sign: str | None = None,
                   sign_password: str = "") -> list[str]:
    """The command that runs this org's runbook again with every option it had (without --resume).

    Paths are absolute, so the command works pasted into another folder's shell too.
    """
    command = [_program(), "run", str(Path(params_file).resolve())]
    if runbook is not None:
        folder = Path(runbook)
        command += ["--runbook", str(folder.resolve()) if folder.exists() else runbook]
    command += ["--records", str(Path(records).resolve())]
    if sign:
        key = Path(sign)
        command += ["--sign", str(key.resolve()) if key.exists() else sign]
        if sign_password:
            command += ["--sign-password", sign_password]  # a reference, never a value
    return command


def start_zygote() -> None:
    """Start this process's kernel zygote now (psbridge.runbook.zygote): its imports, about a second,
    then overlap what comes before the first step — reading the runbook and the parameters, the
    lab's start — instead of delaying the first step's kernel.

    The runner's own imports for executing a step (papermill and psbridge's engine for it) are made
    on a thread meanwhile, as this process mostly waits for the zygote.
    """
    import threading

    from psbridge.runbook import zygote

    zygote.shared()
    threading.Thread(target=_import_execution, name="psbridge-imports", daemon=True).start()


def _import_execution() -> None:
    # What the runner imports as its first step starts; an import another thread makes meanwhile
    # waits for this one (the import system locks each module), so nothing is imported twice.
    import psbridge.runbook.engine  # noqa: F401  # papermill, as psbridge imports it


def run(params_file: Path, runbook: str | None, records: Path, *, mode: str = "apply",
        start: str | None = None, only: str | None = None, until: str | None = None,
        resume: bool = False, sign: str | None = None, sign_password: str = "") -> int:
    from psbridge.errors import SigningError

    console = _console()
    start_zygote()
    try:
        book = _book(runbook)
        checked = check(book, load_params(params_file), where=str(params_file))
        params = checked.params
        if only and (start or until):
            raise definition.DefinitionError("give --only alone, or --from and/or --to")
        for ref in (start, only, until):
            if ref:
                book.step(ref)
        if start and until and book.index(until) < book.index(start):
            raise definition.DefinitionError(f"--to {until} comes before --from {start}")
        if resume and (start or only):
            raise definition.DefinitionError("give --resume alone: it starts where the last run stopped")
        if sign and mode == "plan":
            raise definition.DefinitionError("a plan changes nothing and keeps no record to sign: "
                                             "drop --sign")
        signer = _signer(sign, sign_password)
    except (definition.DefinitionError, ParamsError, SigningError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    verb = "Planning" if mode == "plan" else "Running"
    console.print(f"{verb} [bold]{book.name}[/] for {params['customer']}/{params['organization']}")
    if checked.note():
        console.print(f"[dim]{escape(checked.note())}[/]", soft_wrap=True)
    if signer is not None:
        console.print(f"The record will be signed by {escape(signer.identity['subject'])}")
    resume_with = (resume_command(params_file, runbook, records, sign, sign_password) if mode == "apply"
                   else None)
    try:
        runner = Runner(book, params, records_root=records, mode=mode, signer=signer, command=resume_with,
                        progress=ConsoleProgress(console, plan=mode == "plan"))
        result = runner.run(start=start, only=only, until=until, resume=resume)
    except (RunError, DeploymentError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    for rec in runner.repaired:
        console.print(f"The earlier run {escape(rec.name)} had been interrupted: its record now says so "
                      f"(psbridge verify {escape(str(rec))})", highlight=False)
    print_result(console, result, resume_with)
    return 0 if result.ok else 1


def verify(record_dir: Path, repair: bool = False, signer: str | None = None) -> int:
    """Tell the record's state and whether it is intact; the exit code is :class:`evidence.Verdict`."""
    from psbridge import signing

    console = _console()
    where = escape(str(record_dir))
    from psbridge.batch import record as batch_record

    if batch_record.is_batch(record_dir):
        # A batch's record: its own files, then each org's record it names (signatures: per org, not here).
        return _verify_batch(console, record_dir)
    try:
        expected = signing.expected_signer(signer) if signer else None
    except signing.SigningError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    found = evidence.inspect(record_dir, expected)
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
        found = evidence.inspect(record_dir, expected)
    verdict = found.verdict
    V = evidence.Verdict
    if verdict == V.NO_SUCH_FOLDER:
        console.print(f"[red]{where}: no such folder[/]")
    elif verdict == V.NOT_A_FOLDER:
        console.print(f"[red]{where}: a file, not a record folder (a record is the folder holding "
                      "manifest.json)[/]")
    elif verdict == V.NOT_A_RECORD:
        console.print(f"[red]{where}: not a psbridge record (no manifest.json and no journal.jsonl); a "
                      "record is a folder records/<customer>/<organization>/<run-id>/[/]")
    elif verdict == V.BAD_SIGNATURE:
        console.print(f"[red]{where}: BAD SIGNATURE — {escape(found.problem)}[/]")
    elif verdict == V.WRONG_SIGNER:
        console.print(f"[red]{where}: WRONG SIGNER — {escape(found.problem)}[/]")
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
    if found.signature is not None:
        who = found.signature.signer
        signed = f"signed by {escape(str(who.get('subject')))} (SHA-1 {escape(str(who.get('thumbprint')))})"
    else:
        signed = "unsigned"
    if state == evidence.RecordState.COMPLETE:
        console.print(f"[green]{where}: intact, COMPLETE[/] — {intact}; {signed}")
        return
    colour = "yellow" if state == evidence.RecordState.INTERRUPTED else "red"
    console.print(f"[{colour}]{where}: intact, {str(state).upper()}[/] — {intact}; {signed}")
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


def sign(record_dir: Path, key: str, password: str) -> int:
    """Sign an intact, finished record: its run page and manifest are written again naming the signer."""
    from psbridge import files, signing

    console = _console()
    where = escape(str(record_dir))
    try:
        signer = signing.load_signer(key, password)
    except signing.SigningError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    found = evidence.inspect(record_dir)
    signable = (evidence.Verdict.COMPLETE, evidence.Verdict.FAILED, evidence.Verdict.INTERRUPTED)
    if found.verdict not in signable or found.needs_repair:
        console.print(f"[red]{where}: only an intact record with its manifest can be signed; psbridge verify "
                      f"{where} says why this one is not[/]")
        return int(found.verdict) or 1
    lock_path = evidence.run_lock_of(record_dir)
    lock = files.locked(lock_path, timeout=0) if lock_path.parent.is_dir() else contextlib.nullcontext()
    with lock:
        from psbridge.intents import JOURNAL, Journal

        start = Journal.read(Path(record_dir) / JOURNAL).first("run-start") or {}
        references = frozenset(start.get("references") or [])
        evidence.write_manifest_from_journal(record_dir, keep=references, signer=signer)
    console.print(f"[green]{where}: signed by {escape(signer.identity['subject'])}[/] "
                  f"(SHA-1 {escape(signer.identity['thumbprint'])}) in {signing.SIGNATURE}")
    return 0


def _lab_folder(state: Path, fresh: bool, console: Console) -> bool:
    """Whether the demo reuses a lab left in ``state``; with ``fresh``, it is removed first."""
    import shutil

    from psbridge.lab.config import LAB_JSON

    # A lab's world or description: anything else in the folder (keys laid out ahead) is not a lab
    # to reuse, and --fresh never removes a folder that holds no lab.
    left = (state / "world.json").exists() or (state / LAB_JSON).exists()
    if not left:
        return False
    if fresh:
        console.print(f"Removing the lab an earlier demo left in {escape(str(state))} (--fresh) ...")
        shutil.rmtree(state)
        return False
    console.print(f"[yellow]Reusing the lab an earlier demo left in {escape(str(state))}:[/] its servers and "
                  "tenant hold that run's changes, so each step finds its work done and changes nothing. "
                  "psbridge demo --fresh starts a new lab.")
    return True


def demo(state: Path | None, records: Path, organization: str, fresh: bool = False) -> int:
    from psbridge.lab.secretstore import lab_state_dir

    console = _console()
    start_zygote()
    state = (state or lab_state_dir()).expanduser().resolve()
    try:
        reused = _lab_folder(state, fresh, console)
    except OSError as e:  # --fresh, and a file of the old lab held open (a lab still running, on Windows)
        console.print(f"[red]cannot remove the earlier lab in {escape(str(state))}: {escape(str(e))}; stop "
                      "it first (psbridge lab down)[/]")
        return 2
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    # The demo tenant's sign-in stays with the lab, apart from any real tenant's.
    os.environ.setdefault("PSBRIDGE_TOKEN_CACHE", str(state / "msal"))
    console.print(f"{'Starting the reused' if reused else 'Starting a new'} lab in {escape(str(state))} ...")
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
