"""``psbridge demo --batch``: a small fleet end to end.

Starts a lab fleet (:mod:`psbridge.lab.fleet`: each deployment its own lab process), runs
``psbridge batch`` over the inventory the fleet wrote, verifies the batch record, and stops
the fleet. A second ``demo --batch`` on the same state finds everything done and says so.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from psbridge.runbook.console import escape


def run(state: Path | None, records: Path, *, deployments: int = 2, orgs: int = 2, parallel: int = 2) -> int:
    from psbridge.batch import command, record
    from psbridge.errors import LabError
    from psbridge.lab import fleet
    from psbridge.lab.secretstore import lab_state_dir

    console = Console(highlight=False)
    where = (state or lab_state_dir() / "fleet").expanduser().resolve()
    console.print(f"Starting a lab fleet of {deployments} deployment(s), {orgs} organization(s) each, in "
                  f"{escape(str(where))} ...")
    shape = ["--servers", "2", "--orgs", str(orgs), "--legacy-servers", "0", "--host", "127.0.0.1"]
    try:
        fleet.up(where, deployments, shape, timeout=120)
    except (LabError, OSError) as e:
        console.print(f"[red]cannot start the fleet: {escape(str(e))}[/]")
        return 2
    try:
        code = command.run(where / fleet.INVENTORY, None, records, parallel=parallel, console=console)
    finally:
        fleet.down(where, timeout=30)
    batches = sorted((records.resolve() / record.BATCHES).iterdir()) if code in (0, 1) else []
    if batches:
        problems = record.verify(batches[-1])
        if problems:
            console.print(f"[red]the batch record does not verify: {escape('; '.join(problems))}[/]")
            return 1
        console.print(f"[green]Verified[/]: the batch record and every org's record match their manifests "
                      f"(psbridge verify {escape(str(batches[-1]))})", soft_wrap=True)
    return code
