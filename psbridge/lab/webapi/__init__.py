"""The lab's CRM Web API: every organization's OData endpoint, the discovery service, Test & Enable.

:func:`start_webapi` serves, over HTTPS with lab CA certificates, either deployment the runbook
meets:

- ``ad``: an Active Directory deployment: one site, ``https://host:port/<org>/api/data/v9.0/``,
  Windows authentication (Negotiate/NTLM, pyspnego's acceptor as the lab's WinRM uses) with the
  lab's accounts;
- ``ifd``: an Internet-facing deployment: one site per organization
  (``https://host:port/api/data/v9.0/``, as ``https://<org>.<domain>/`` would be) and a discovery
  site, accepting only bearer tokens from the AD FS twin.

Either way there is also a client-certificate site (IIS "Require client certificates") and the
asynchronous service that runs Test & Enable (:mod:`psbridge.lab.webapi.serversidesync`). The
records live in the lab world (``world.json``, each organization's ``crm``); the knobs in
``<state>/webapi-knobs.json``::

    twin = start_webapi(WebApiSpec(state_dir, ca, accounts, deployment="ad"))
    twin.describe()["organizations"]["contoso"]   # https://127.0.0.1:PORT/contoso
    twin.set_knobs(test_delay=5, allow_listed=False)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from psbridge.lab.ca import LabCA
from psbridge.lab.webapi import records, serversidesync
from psbridge.lab.webapi.http import WebApiHTTPServer
from psbridge.lab.webapi.knobs import WEBAPI, JsonKnobs
from psbridge.lab.webapi.service import Site, Verifier, WebApiService
from psbridge.lab.winrm.auth import Directory, channel_bindings_for

__all__ = ["DEPLOYMENTS", "WebApiSpec", "WebApiTwin", "start_webapi"]

log = logging.getLogger(__name__)

DEPLOYMENTS = ("ad", "ifd")
KNOBS_FILE = "webapi-knobs.json"
_TICK = 0.1  # seconds between the asynchronous service's looks for due jobs


@dataclass(frozen=True)
class WebApiSpec:
    state_dir: Path
    ca: LabCA
    accounts: dict[str, str] = field(repr=False)  # DOMAIN\user -> password (lab secrets)
    deployment: Literal["ad", "ifd"] = "ad"
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # listener name -> the port to try first
    verifier: Verifier | None = None  # IFD: checks AD FS tokens
    authorization_uri: str = ""  # IFD: AD FS's authorize endpoint, named in the 401
    directory: Callable[[], dict[str, Any] | None] = lambda: None  # the tenant, for Test & Enable
    tenant_domain: str = "psbridgelab.onmicrosoft.com"
    service_account: str = "LAB\\CRMAsyncService"
    pace: float = 1.0


class AsyncService:
    """CRM's Asynchronous Processing Service, as far as Test & Enable: a thread finishing due jobs."""

    def __init__(self, spec: WebApiSpec, knobs: JsonKnobs) -> None:
        self.spec = spec
        self.knobs = knobs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-crm-async", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def tick(self) -> list[str]:
        from psbridge.lab.world import World, WorldError

        try:
            world = World.shared(self.spec.state_dir)
        except WorldError:
            return []
        now = time.time()
        if not serversidesync.due(world.data, now):
            return []
        tenant = self.spec.directory()
        allow = bool(self.knobs.get("allow_listed"))
        with world.change() as data:
            done = serversidesync.run_due(data, tenant, allow, now, self.spec.service_account, "CRM01")
        return done

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            try:
                self.tick()
            except Exception:  # a defect must not stop the service for the rest of the lab's life
                log.exception("lab CRM asynchronous service failed")


@dataclass
class WebApiTwin:
    spec: WebApiSpec
    knobs: JsonKnobs
    service: WebApiService
    servers: dict[str, WebApiHTTPServer]
    directory: Directory
    async_service: AsyncService
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    @property
    def deployment(self) -> str:
        return self.spec.deployment

    def url(self, name: str) -> str:
        return self.servers[name].url

    @property
    def ports(self) -> dict[str, int]:
        return {name: int(s.server_address[1]) for name, s in self.servers.items()}

    def describe(self) -> dict[str, Any]:
        """What lab.json records under ``webapi``."""
        first = next(iter(self.service.org_urls), "")
        return {
            "deployment": self.deployment,
            "sign_in": ("Active Directory (Negotiate/NTLM)" if self.deployment == "ad"
                        else "claims (AD FS OAuth)"),
            "organizations": dict(self.service.org_urls),
            "discovery_url": f"{self.url('web' if self.deployment == 'ad' else 'dev')}/api/discovery/v9.0",
            "client_certificate_site": f"{self.url('clientcert')}/{first}".rstrip("/"),
            "knobs_file": str(self.knobs.path),
            "ports": self.ports,
        }

    def set_knobs(self, **values: Any) -> None:
        self.knobs.set(**values)

    def reset_knobs(self) -> None:
        self.knobs.reset()

    def stop(self) -> None:
        self.async_service.stop()
        for s in self.servers.values():
            s.shutdown()
            s.server_close()
            s.drop_connections()
        for t in self._threads:
            t.join(timeout=5)
        self.directory.close()


def _listen(spec: WebApiSpec, name: str, make: Callable[[int], WebApiHTTPServer]) -> WebApiHTTPServer:
    port = spec.ports.get(name, 0)
    if port:
        with contextlib.suppress(OSError):  # taken meanwhile: any free port will do
            return make(port)
    return make(0)


def start_webapi(spec: WebApiSpec) -> WebApiTwin:
    """Seed the organizations' CRM data if the world has none, then serve every site."""
    from psbridge.lab.world import World

    world = World.shared(spec.state_dir)
    if any("crm" not in o for o in world.data["organizations"]):
        with world.change() as data:
            records.ensure_seeded(data, spec.tenant_domain, time.time())
    orgs = [o["name"] for o in world.data["organizations"]]
    knobs = JsonKnobs(Path(spec.state_dir) / KNOBS_FILE, WEBAPI)
    tls = spec.ca.server_certificate("webapi")
    leaf = x509.load_pem_x509_certificate(Path(tls[0]).read_bytes())
    bindings = channel_bindings_for(leaf.public_bytes(Encoding.DER))
    directory = Directory(spec.accounts)
    service = WebApiService(spec.state_dir, knobs, pace=spec.pace, verifier=spec.verifier,
                            authorization_uri=spec.authorization_uri)
    servers: dict[str, WebApiHTTPServer] = {}

    def server(name: str, site: Site, client_certificate: bool = False) -> WebApiHTTPServer:
        def make(port: int) -> WebApiHTTPServer:
            return WebApiHTTPServer((spec.host, port), service=service, site=site, directory=directory,
                                    knobs=knobs, state_dir=Path(spec.state_dir), tls=tls,
                                    ca_bundle=spec.ca.bundle_path, bindings=bindings,
                                    requires_client_certificate=client_certificate)

        s = _listen(spec, name, make)
        # The site learns its own URL once bound (a port of 0 becomes a real one).
        site.base_url = s.url
        servers[name] = s
        return s

    try:
        if spec.deployment == "ad":
            web = server("web", Site("ad", ""))
            service.org_urls = {o.lower(): f"{web.url}/{o}" for o in orgs}
        else:
            server("dev", Site("ifd", ""))
            urls = {}
            for o in orgs:
                urls[o.lower()] = server(f"org:{o.lower()}", Site("ifd", "", organization=o)).url
            service.org_urls = urls
        # The client-certificate site routes as an AD site does, whatever the deployment.
        server("clientcert", Site("ad", ""), client_certificate=True)
    except BaseException:
        for s in servers.values():
            s.server_close()
        directory.close()
        raise
    async_service = AsyncService(spec, knobs)
    twin = WebApiTwin(spec, knobs, service, servers, directory, async_service)
    for name, s in servers.items():
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"lab-webapi-{name}", daemon=True)
        t.start()
        twin._threads.append(t)
    async_service.start()
    return twin


def directory_snapshot(directory: Any) -> Callable[[], dict[str, Any] | None]:
    """A reader of the Entra twin's directory for the asynchronous service (a copy, under its lock)."""
    def read() -> dict[str, Any] | None:
        if directory is None:
            return None
        with directory.lock:
            return copy.deepcopy({"tenant": directory.data["tenant"],
                                  "servicePrincipals": directory.data["servicePrincipals"]})

    return read
