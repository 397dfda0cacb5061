"""The ``psbridge`` command."""

from __future__ import annotations

import typer

from psbridge.lab.cli import app as lab_app

app = typer.Typer(
    name="psbridge",
    help="Dynamics 365 on-premises ↔ Exchange Online server-side sync, as a runbook.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
app.add_typer(lab_app, name="lab", help="The embedded lab: simulated CRM servers, Entra ID and Graph.")


def main() -> None:
    app()
