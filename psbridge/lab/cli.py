"""``psbridge lab``: start, stop and inspect the embedded lab."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
