"""A fleet of labs: D deployments, each its own lab (its servers, its CRM, its Entra ID twin).

``psbridge lab up --state DIR --deployments D --orgs M`` starts one background lab per
deployment in ``DIR/dep01`` … ``DIR/depNN`` (each as ``psbridge lab up`` would, in a process of its
own), writes ``DIR/fleet.json`` naming them, and an inventory for the fleet,
``DIR/inventory.yaml`` (every org of every deployment, secrets as lab references by template).
``psbridge lab down --state DIR`` stops them all.

Each deployment's twin is its own tenant, so a fleet's tenants are separate; a batch runs the
tenant's steps once for each.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from psbridge.files import write_atomic
from psbridge.lab.config import LabConfig

FLEET_JSON = "fleet.json"
INVENTORY = "inventory.yaml"


def deployment_names(count: int) -> list[str]:
    return [f"dep{i:02d}" for i in range(1, count + 1)]


def members(state: Path) -> list[Path] | None:
    """The deployments' state directories of the fleet at ``state``; None when it is not a fleet."""
    path = state / FLEET_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return [state / name for name in data.get("deployments", [])]


def inventory(state: Path, configs: dict[str, LabConfig], customer: str = "fleet") -> dict[str, Any]:
    """An inventory of every org of every deployment of the fleet (as runbooks/examples/fleet.yaml shows).

    Each deployment is a customer's own: records/<customer>/<org>/ stay apart (lab org names repeat).
    """
    return {
        "defaults": {
            "lab": str(state) + "/{deployment}",
            "pfx_password": "lab:{customer}/{deployment}/pfx-password",
            "client_secret": "lab:{customer}/{deployment}/client-secret",
            "app_name": "psbridge server-side sync ({deployment})",
            "certificate_days": 365,
            "client_secret_days": 180,
        },
        "orgs": [{"customer": f"{customer}-{name}", "deployment": name, "organization": org.name}
                 for name, config in configs.items() for org in config.organizations],
    }


def up(state: Path, deployments: int, shape_args: list[str], timeout: float) -> dict[str, LabConfig]:
    """Start (or find running) every deployment's lab; write fleet.json and inventory.yaml."""
    from psbridge.lab import background

    names = deployment_names(deployments)
    state.mkdir(parents=True, exist_ok=True)

    def start(name: str) -> LabConfig:
        where = state / name
        return background.running(where) or background.spawn(where, shape_args, timeout)

    # Started side by side: each lab's start is mostly waiting for its process to be ready.
    with ThreadPoolExecutor(max_workers=min(8, len(names)) or 1) as pool:
        configs = dict(zip(names, pool.map(start, names), strict=True))
    write_atomic(state / FLEET_JSON, json.dumps({"deployments": names}, indent=1).encode())
    write_atomic(state / INVENTORY, yaml.safe_dump(inventory(state, configs), sort_keys=False).encode())
    return configs


def down(state: Path, timeout: float) -> list[tuple[Path, int | None]]:
    from psbridge.lab import background

    out = []
    for where in members(state) or []:
        out.append((where, background.shutdown(where, timeout)))
    return out
