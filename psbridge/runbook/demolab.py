"""The lab ``psbridge demo`` runs against, assembled from the lab's own pieces.

:func:`start` prefers the lab's orchestrator (``psbridge.lab.orchestrator.Lab``). Where that is
not part of the installation, it starts the same pieces itself — the world on disk
(``psbridge.lab.world``), one WinRM endpoint per server and scheme (``psbridge.lab.winrm``), the
Entra ID/Graph twin, the lab CA — and writes ``lab.json`` in the orchestrator's shape, so the
runbook connects exactly as it would to a lab started with ``psbridge lab up``.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge import secrets

ACCOUNTS = ("crmadmin", "operator")
SERVICE_ACCOUNT = "LAB\\CRMAsyncService"
TOOLS_FOLDER = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"


@dataclass
class AssembledLab:
    state_dir: Path
    description: dict[str, Any]
    _running: list[Any] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for part in reversed(self._running):
            part.stop()
        self._running.clear()
        lab_json = self.state_dir / "lab.json"
        if lab_json.exists():
            data = json.loads(lab_json.read_text(encoding="utf-8"))
            data["ready"] = False
            _write_json(lab_json, data)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _password(name: str) -> str:
    """The account's password, random per state directory and kept across restarts."""
    ref = f"lab:accounts/{name}"
    try:
        return secrets.resolve(ref).reveal()
    except secrets.SecretError:
        value = pysecrets.token_urlsafe(18)
        secrets.store(ref, value)
        return value


def assemble(state_dir: Path, servers: int = 2, orgs: int = 2) -> AssembledLab:
    from psbridge.lab.ca import LabCA
    from psbridge.lab.entra import start_twin
    from psbridge.lab.runspace import CloudEndpoints
    from psbridge.lab.winrm import EndpointSpec, start_endpoint
    from psbridge.lab.world import World

    state_dir = Path(state_dir)
    os.environ["PSBRIDGE_LAB_STATE"] = str(state_dir)
    world = World.seed(state_dir, servers=servers, orgs=orgs)
    ca = LabCA.load_or_create(state_dir)
    lab = AssembledLab(state_dir, {})
    try:
        twin = start_twin(state_dir / "entra", ca)
        lab._running.append(twin)
        entra = twin.describe()
        cloud = CloudEndpoints(login=entra["login_url"], graph=entra["graph_url"],
                               ca_bundle=entra["ca_bundle"])
        passwords = {name: _password(name) for name in ACCOUNTS}
        accounts = {f"LAB\\{name}": pw for name, pw in passwords.items()}
        described = []
        for name in world.server_names():
            endpoints = []
            for scheme in ("http", "https"):
                tls = ca.server_certificate(name.lower()) if scheme == "https" else None
                ep = start_endpoint(EndpointSpec(name, scheme, accounts, state_dir, cloud=cloud, tls=tls))
                lab._running.append(ep)
                endpoints.append({"scheme": scheme, "host": "127.0.0.1", "port": ep.port, "path": "/wsman"})
            described.append({"name": name, "roles": world.server_roles(name),
                              "script_generation": world.server_generation(name), "endpoints": endpoints})
    except BaseException:
        lab.stop()
        raise
    lab.description = {
        "version": 1, "state_dir": str(state_dir), "ready": True, "pid": os.getpid(),
        "ca_bundle": str(ca.bundle_path), "domain": "LAB",
        "accounts": [{"name": n, "user": f"LAB\\{n}", "password_ref": f"lab:accounts/{n}"} for n in ACCOUNTS],
        "service_account": SERVICE_ACCOUNT, "tools_folder": TOOLS_FOLDER, "servers": described,
        "organizations": [{"name": o["name"], "friendly_name": o.get("friendly_name", ""), "id": o["id"]}
                          for o in world.organizations()],
        "entra": entra,
    }
    _write_json(state_dir / "lab.json", lab.description)
    return lab


def start(state_dir: Path) -> Any:
    """A started lab with ``stop()``: the orchestrator's if installed, else one assembled here."""
    try:
        from psbridge.lab.orchestrator import Lab
    except ImportError:
        return assemble(state_dir)
    lab = Lab(state_dir)
    lab.start()
    return lab
