"""The ``psbridge`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

LAB_HELP = "The embedded lab: simulated CRM servers, Entra ID and Graph."


class _LabCommands(TyperGroup):
    """``psbridge lab``, whose commands are imported only when the lab is asked for.

    The product imports nothing of the lab until then: ``psbridge --help`` and a run against a
    customer's servers stay as quick as they can be.
    """

    def __init__(self) -> None:
        super().__init__(name="lab", help=LAB_HELP, no_args_is_help=True)
        self._real: TyperGroup | None = None

    def _group(self) -> TyperGroup:
        if self._real is None:
            from psbridge.lab.cli import app as lab_app

            command = typer.main.get_command(lab_app)
            assert isinstance(command, TyperGroup)
            self._real = command
        return self._real

    def list_commands(self, ctx: Any) -> list[str]:
        return self._group().list_commands(ctx)

    def get_command(self, ctx: Any, name: str) -> Any:
        return self._group().get_command(ctx, name)


class _Commands(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted([*super().list_commands(ctx), "lab"])

    def get_command(self, ctx: Any, name: str) -> Any:
        return _LAB if name == "lab" else super().get_command(ctx, name)


_LAB = _LabCommands()

app = typer.Typer(
    name="psbridge",
    help="Dynamics 365 on-premises ↔ Exchange Online server-side sync, as a runbook.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    cls=_Commands,
)

RunbookOpt = Annotated[str | None, typer.Option(
    "--runbook", help="a runbook's name (psbridge runbooks lists them) or its folder; default "
    "exchange-online-s2s")]
RecordsOpt = Annotated[Path, typer.Option("--records", help="where records/<customer>/<org>/<run>/ go")]
SignOpt = Annotated[str | None, typer.Option(
    "--sign", metavar="KEY", help="sign the record with this key: a PFX or PEM file (key and certificate), "
    "or a secret reference holding the PEM text (keyring:psbridge/operator-signing)")]
SignPasswordOpt = Annotated[str, typer.Option(
    "--sign-password", metavar="REFERENCE", help="where the key's password is kept (env:NAME, "
    "keyring:SERVICE/NAME, file:PATH), never the value")]


@app.command()
def run(
    params_file: Annotated[Path, typer.Argument(metavar="PARAMS.yaml", help="the customer's parameter file")],
    start: Annotated[str | None, typer.Option("--from", help="resume at this step (id or number)")] = None,
    only: Annotated[str | None, typer.Option("--only", help="run this one step")] = None,
    until: Annotated[str | None, typer.Option("--to", help="stop after this step (id or number)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="start where this org's last run failed or was "
                                         "interrupted")] = False,
    runbook: RunbookOpt = None,
    records: RecordsOpt = Path("records"),
    sign: SignOpt = None,
    sign_password: SignPasswordOpt = "",
) -> None:
    """Run the runbook for one organization; each executed step is kept in the record."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.run(params_file, runbook, records, start=start, only=only, until=until,
                                     resume=resume, sign=sign, sign_password=sign_password))


@app.command()
def batch(
    inventory: Annotated[Path, typer.Argument(metavar="INVENTORY", help="the inventory: a .csv or .yaml, one "
                                              "row per organization")],
    runbook: RunbookOpt = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=64, help="organizations run at once "
                                          "(worker processes) without --cluster")] = 2,
    plan: Annotated[bool, typer.Option(
        "--plan", help="say what each step would change; change nothing")] = False,
    only: Annotated[str | None, typer.Option("--only", help="run this one step for every org")] = None,
    start: Annotated[str | None, typer.Option("--from", help="run every org from this step")] = None,
    orgs: Annotated[str | None, typer.Option(
        "--orgs", help="only the orgs matching this pattern (customer/org, org, deployment or customer; "
        "* and ? as in a shell)")] = None,
    cluster: Annotated[str | None, typer.Option("--cluster", help="a Dask scheduler to send the work to: "
                                                "tcp://HOST:8786")] = None,
    graph_concurrency: Annotated[int, typer.Option(
        "--graph-concurrency", min=1, max=64,
        help="steps calling one tenant's Microsoft Graph at once, across the batch (or the cluster)")] = 4,
    records: RecordsOpt = Path("records"),
) -> None:
    """Run the runbook for every organization of an inventory: deployment-wide steps once per deployment,
    never two at once on one deployment or tenant; a bounded number of Graph steps a tenant, none while
    Graph asks it to wait (Retry-After); failures isolated; resumable; a batch record.

    Exit codes: 0 all complete, 1 some failed or blocked, 2 bad input (nothing ran), 3 stopped by Ctrl-C.
    """
    from psbridge.batch import command

    raise typer.Exit(command.run(inventory, runbook, records, parallel=parallel, plan=plan, only=only,
                                 start=start, orgs=orgs, cluster=cluster,
                                 graph_concurrency=graph_concurrency))


@app.command()
def plan(
    params_file: Annotated[Path, typer.Argument(metavar="PARAMS.yaml", help="the customer's parameter file")],
    runbook: RunbookOpt = None,
    records: RecordsOpt = Path("records"),
) -> None:
    """Say what each step would change, from the current state; change nothing."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.run(params_file, runbook, records, mode="plan"))


@app.command()
def verify(
    record_dir: Annotated[Path, typer.Argument(metavar="RECORD_DIR", help="records/<customer>/<org>/<run>")],
    repair: Annotated[bool, typer.Option(
        "--repair", help="rebuild the manifest of an interrupted run from its journal")] = False,
    signer: Annotated[str | None, typer.Option(
        "--signer", metavar="CERT|THUMBPRINT", help="the signature must be this certificate's (a PEM or DER "
        "file, or its SHA-1 thumbprint)")] = None,
) -> None:
    """Tell a record's state, recompute its hashes and check its signature.

    Exit codes: 0 complete and intact, 1 tampered, 3 failed, 4 interrupted, 5 not a record,
    6 no such folder, 7 a file, not a folder, 8 a signature that does not match, 9 not signed by
    --signer.
    """
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.verify(record_dir, repair=repair, signer=signer))


@app.command()
def sign(
    record_dir: Annotated[Path, typer.Argument(metavar="RECORD_DIR", help="records/<customer>/<org>/<run>")],
    key: Annotated[str, typer.Option("--key", metavar="KEY", help="a PFX or PEM file (key and certificate), "
                                     "or a secret reference holding the PEM text")],
    password: SignPasswordOpt = "",
) -> None:
    """Sign an intact record (one run without --sign): its run page then names the signer."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.sign(record_dir, key, password))


@app.command()
def demo(
    state: Annotated[Path | None, typer.Option("--state", help="lab state directory")] = None,
    records: RecordsOpt = Path("records"),
    organization: Annotated[str, typer.Option("--organization", help="the lab organization")] = "contoso",
    batch: Annotated[bool, typer.Option("--batch", help="a small fleet instead: psbridge batch over "
                                        "--deployments labs of --orgs organizations each")] = False,
    deployments: Annotated[int, typer.Option("--deployments", min=1, max=20, help="with --batch")] = 2,
    orgs: Annotated[int, typer.Option("--orgs", min=1, max=8, help="with --batch: organizations each")] = 2,
    fresh: Annotated[bool, typer.Option("--fresh", help="start a new lab, forgetting the one an earlier demo "
                                        "left (otherwise it is reused, and every step finds its work done)")
                     ] = False,
) -> None:
    """Start the lab, run the whole runbook for a demo org, verify the record."""
    if batch:
        from psbridge.batch import demo as batch_demo

        raise typer.Exit(batch_demo.run(state, records, deployments=deployments, orgs=orgs))
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.demo(state, records, organization, fresh=fresh))


@app.command()
def runbooks() -> None:
    """List the runbooks psbridge knows: its own, other packages', by name."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.list_runbooks())


@app.command()
def schema(runbook: RunbookOpt = None) -> None:
    """Print a runbook's parameter schema as JSON Schema (for an editor checking parameter files)."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.schema(runbook))


notebooks_app = typer.Typer(help="The step notebooks of a runbook: their .py sources and .ipynb twins.",
                            no_args_is_help=True)
app.add_typer(notebooks_app, name="notebooks")


@notebooks_app.command("sync")
def notebooks_sync(runbook: RunbookOpt = None) -> None:
    """Write each notebook's parameters cell from runbook.yaml, and its .ipynb from its .py."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.notebooks(runbook, write=True))


@notebooks_app.command("check")
def notebooks_check(runbook: RunbookOpt = None) -> None:
    """Exit 1 when a notebook's .py, .ipynb and runbook.yaml disagree."""
    from psbridge.runbook import cli_support

    raise typer.Exit(cli_support.notebooks(runbook, write=False))


def main() -> None:
    app()
