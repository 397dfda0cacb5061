"""A stand-in for the shared ``lab`` fixtures until tests/conftest.py provides them.

It assembles the lab's own pieces (world, WinRM endpoints, Entra twin, CA, faults) the way the
orchestrator does and describes them in lab.json's shape; nothing here imitates a server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from psbridge.lab import faults
from psbridge.lab.ca import LabCA
from psbridge.lab.runspace import CloudEndpoints
from psbridge.lab.winrm import EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.secrets import store

PASSWORDS = {"crmadmin": "Adm1n 'p;w$(x)`ü", "operator": "0perator!"}


class MiniLab:
    def __init__(self, state_dir: Path, servers: int = 2, orgs: int = 2, legacy_servers: int = 0,
                 cloud: bool = True) -> None:
        self.state_dir = state_dir
        self._env = os.environ.get("PSBRIDGE_LAB_STATE")
        os.environ["PSBRIDGE_LAB_STATE"] = str(state_dir)
        world = World.seed(state_dir, servers=servers, orgs=orgs, legacy_servers=legacy_servers)
        ca = LabCA.load_or_create(state_dir)
        self.twin: Any = None
        endpoints = CloudEndpoints(login=None, graph=None)
        if cloud:
            from psbridge.lab.entra import start_twin

            self.twin = start_twin(state_dir / "entra", ca)
            d = self.twin.describe()
            endpoints = CloudEndpoints(login=d["login_url"], graph=d["graph_url"], ca_bundle=d["ca_bundle"])
        accounts = {f"LAB\\{k}": v for k, v in PASSWORDS.items()}
        for name, pw in PASSWORDS.items():
            store(f"lab:accounts/{name}", pw)
        self._eps = []
        servers_json = []
        for name in world.server_names():
            eps = []
            for scheme in ("http", "https"):
                tls = ca.server_certificate(name.lower()) if scheme == "https" else None
                ep = start_endpoint(EndpointSpec(name, scheme, accounts, state_dir, cloud=endpoints, tls=tls))
                self._eps.append(ep)
                eps.append({"scheme": scheme, "host": "127.0.0.1", "port": ep.port, "path": "/wsman"})
            servers_json.append({"name": name, "roles": world.server_roles(name),
                                 "script_generation": world.server_generation(name), "endpoints": eps})
        self.config = {
            "servers": servers_json,
            "accounts": [
                {"name": k, "user": f"LAB\\{k}", "password_ref": f"lab:accounts/{k}"} for k in PASSWORDS
            ],
            "ca_bundle": str(ca.bundle_path),
            "service_account": "LAB\\CRMAsyncService",
            "organizations": [{"name": o["name"], "id": o["id"]} for o in world.organizations()],
        }

    def set_faults(self, server: str, **knobs: Any) -> None:
        faults.set_faults(self.state_dir, server, **knobs)

    def clear_faults(self) -> None:
        faults.clear_faults(self.state_dir)

    def stop(self) -> None:
        for ep in self._eps:
            ep.stop()
        if self.twin is not None:
            self.twin.stop()
        if self._env is None:
            os.environ.pop("PSBRIDGE_LAB_STATE", None)
        else:
            os.environ["PSBRIDGE_LAB_STATE"] = self._env


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniLab]:
    m = MiniLab(tmp_path_factory.mktemp("minilab"))
    yield m
    m.stop()


@pytest.fixture
def fresh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniLab]:
    m = MiniLab(tmp_path_factory.mktemp("freshlab"))
    yield m
    m.stop()


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., MiniLab]]:
    made: list[MiniLab] = []

    def factory(**kw: Any) -> MiniLab:
        m = MiniLab(tmp_path_factory.mktemp("factorylab"), **kw)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.stop()
