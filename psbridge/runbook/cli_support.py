"""What ``psbridge run | plan | verify | demo`` do, apart from parsing their arguments."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from psbridge import evidence
from psbridge.runbook import definition
from psbridge.runbook.console import ConsoleProgress, print_result
from psbridge.runbook.params import ParamsError, load_params, validate
from psbridge.runbook.runner import Runner, RunResult

DEMO_CUSTOMER = "demo"


def _console() -> Console:
    return Console(highlight=False)


def _book(path: Path | None) -> definition.Runbook:
    return definition.load(path or definition.default_runbook_path())


def run(params_file: Path, runbook: Path | None, records: Path, *, mode: str = "apply",
        start: str | None = None, only: str | None = None, until: str | None = None) -> int:
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
    except (definition.DefinitionError, ParamsError) as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    verb = "Planning" if mode == "plan" else "Running"
    console.print(f"{verb} [bold]{book.name}[/] for {params['customer']}/{params['organization']}")
    try:
        runner = Runner(book, params, records_root=records, mode=mode,
                        progress=ConsoleProgress(console, plan=mode == "plan"))
        result = runner.run(start=start, only=only, until=until)
    except RuntimeError as e:
        console.print(f"[red]{escape(str(e))}[/]")
        return 2
    print_result(console, result, params_file if mode == "apply" else None)
    return 0 if result.ok else 1


def verify(record_dir: Path) -> int:
    console = _console()
    found = evidence.verify(record_dir)
    if found:
        console.print(f"[red]{record_dir}: {len(found)} difference(s) from its manifest[/]")
        for d in found:
            console.print(f"  {escape(str(d))}")
        return 1
    manifest = evidence.read_manifest(record_dir)
    count = len(manifest.get("files", {}))
    console.print(f"[green]{escape(str(record_dir))}: intact[/] — {count} files match "
                  f"manifest.json (run {manifest.get('run_id')}, {manifest.get('status')})")
    return 0


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
    from psbridge.secrets import lab_state_dir

    console = _console()
    state = (state or lab_state_dir()).expanduser().resolve()
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    # The demo tenant's sign-in stays with the lab, apart from any real tenant's.
    os.environ.setdefault("PSBRIDGE_TOKEN_CACHE", str(state / "msal"))
    console.print(f"Starting the lab in {escape(str(state))} ...")
    try:
        with _lab(state):
            from psbridge.runbook.deployment import lab_description

            servers = ", ".join(s["name"] for s in lab_description(str(state))[1].get("servers", []))
            console.print(f"Lab up: CRM servers {servers}; Entra ID and Graph twin. "
                          f"Running the runbook for organization {organization}:")
            result = run_demo(state, records.resolve(), organization, console)
    except RuntimeError as e:
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
