"""What every worker of a ``--cluster`` must see, checked before any org runs.

On a cluster the orgs run on other machines, and the paths a batch hands them are read there:
the records folder (each org's record, its lead's facts, the resume point) and each org's
``pfx_path``. A folder that only the machine running ``psbridge batch`` has would fail every org
late, one step in, on a server half changed; so the batch leaves a token in the records folder
and asks every worker (``Client.run``) whether it reads the same token there and whether each
``pfx_path`` is a file there. A generated certificate (no ``pfx_path``) is written where the
deployment's lead runs, and its other orgs read it in their summary: that cannot be checked
before it exists, so it is a warning.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from psbridge.batch.engine import ClusterError
from psbridge.batch.inventory import Inventory

PROBE = ".psbridge-cluster-probe"


def _reads(path: str, token: str, pfx_paths: list[str]) -> tuple[bool, list[str]]:
    """On a worker: whether it reads ``token`` at ``path``, and which PFX paths it does not have."""
    try:
        with open(path, encoding="utf-8") as f:
            sees = f.read() == token
    except OSError:
        sees = False
    return sees, [p for p in pfx_paths if not os.path.isfile(p)]


def check(client: Any, records_root: Path, inventory: Inventory) -> None:
    """ClusterError naming the workers that do not see the records folder or an org's PFX."""
    records_root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex  # a mark that no other folder holds
    # A file of this batch's own: two batches starting on one records folder (two partners'
    # inventories sharing a deployment) would otherwise overwrite or remove each other's mark.
    probe = records_root / f"{PROBE}-{token}"
    probe.write_text(token, encoding="utf-8")
    pfx_paths = sorted({str(Path(str(o.params["pfx_path"])).expanduser())
                        for o in inventory.orgs if o.params.get("pfx_path")})
    try:
        answers: dict[str, tuple[bool, list[str]]] = client.run(_reads, str(probe), token, pfx_paths)
    finally:
        probe.unlink(missing_ok=True)
    if not answers:
        raise ClusterError("the cluster has no worker to run the batch on")
    problems = []
    blind = sorted(w for w, (sees, _) in answers.items() if not sees)
    if blind:
        problems.append(f"the records folder {records_root} is not this folder on worker(s) "
                        f"{', '.join(blind)}: give --records a folder every worker shares")
    for worker, (_, missing) in sorted(answers.items()):
        if missing:
            problems.append(f"worker {worker} has no file at pfx_path {', '.join(missing)}: put the PFX "
                            "on a share every worker reads")
    if problems:
        raise ClusterError("; ".join(problems))


def generated_pfx_warning(inventory: Inventory) -> str | None:
    """The warning for deployments whose certificate the batch generates (no ``pfx_path``), or None."""
    deployments = sorted({o.deployment for o in inventory.orgs if not o.params.get("pfx_path")})
    if not deployments:
        return None
    return (f"deployment(s) {', '.join(deployments)} have no pfx_path: the generated certificate's PFX is "
            "written on the worker of the deployment's lead, and its other orgs read it there; give "
            "pfx_path on a share every worker reads, or send a deployment's orgs to one worker (zone)")
