"""The lab's Entra ID and Microsoft Graph twin.

:func:`start_twin` starts two HTTPS listeners on loopback, trusted through the lab CA:
the authority (``login_url``; tokens at ``{login_url}/{tenant}/oauth2/v2.0/token``) and
Graph (``graph_url``; ``{graph_url}/v1.0/...``). msal uses the authority unmodified, given
``instance_discovery=False`` and the CA bundle as ``verify``. The directory lives in
``<state>/entra.json`` (tenant id random per state dir and kept), the signing key in
``<state>/entra-signing-key.pem``, the knobs (faults, token lifetime, device code approval)
in ``<state>/entra-knobs.json``::

    twin = start_twin(state_dir, LabCA.load_or_create(state_dir))
    twin.set_knobs(throttle=2, retry_after=3)     # the next two Graph calls get 429
    twin.describe()                               # what lab.json records under "entra"
    twin.stop()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.lab.ca import LabCA
from psbridge.lab.entra.directory import Directory
from psbridge.lab.entra.graph import Graph
from psbridge.lab.entra.http import TwinServer
from psbridge.lab.entra.knobs import Knobs
from psbridge.lab.entra.login import Authority
from psbridge.lab.entra.tokens import TokenIssuer
from psbridge.lab.entra.wire import Journal, Request, Response

__all__ = ["EntraTwin", "start_twin"]


@dataclass
class EntraTwin:
    state_dir: Path
    directory: Directory
    knobs: Knobs
    authority: Authority
    graph: Graph
    ca_bundle: Path
    _servers: list[TwinServer] = field(default_factory=list, repr=False)
    # Every request answered, for tests that compare a client's requests with a real one's.
    journal: Journal = field(default_factory=Journal, repr=False)

    @property
    def login_url(self) -> str:
        return self._servers[0].url

    @property
    def graph_url(self) -> str:
        return self._servers[1].url

    @property
    def tenant_id(self) -> str:
        return self.directory.tenant_id

    @property
    def tenant_domain(self) -> str:
        return self.directory.domain

    def describe(self) -> dict[str, Any]:
        knobs = self.knobs.snapshot()
        return {
            "login_url": self.login_url,
            "graph_url": self.graph_url,
            "authority": f"{self.login_url}/{self.tenant_id}",
            "tenant_id": self.tenant_id,
            "tenant_domain": self.tenant_domain,
            "admin_user": self.directory.admin["userPrincipalName"],
            "device_code_client_id": "14d82eec-204b-4c2f-b7e8-296a70dab67e",
            "device_code_approval": knobs["device_code_approval"],
            "token_lifetime": knobs["token_lifetime"],
            "ca_bundle": str(self.ca_bundle),
            "state_file": str(self.directory.path),
            "knobs_file": str(self.knobs.path),
        }

    # --- knobs for tests and the CLI ------------------------------------------------------

    def set_knobs(self, **values: Any) -> None:
        """Set faults and settings (see :mod:`psbridge.lab.entra.knobs`)."""
        self.knobs.set(**values)

    def reset_knobs(self) -> None:
        self.knobs.reset()

    def approve_device_code(self, user_code: str, approve: bool = True) -> bool:
        """Enter a device code as the lab administrator (``approve=False`` declines)."""
        return self.authority.approve(user_code, approve=approve)

    def stop(self) -> None:
        for s in self._servers:
            s.stop()
        self._servers.clear()


def start_twin(state_dir: Path, ca: LabCA, host: str = "127.0.0.1",
               ports: tuple[int, int] = (0, 0)) -> EntraTwin:
    """Start the authority and Graph on ``host``; the state persists in ``state_dir``.

    ``ports`` are the (authority, Graph) ports, 0 for a free one: a restarted lab passes its
    previous ones so that URLs, token issuers and clients' token caches stay valid.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    directory = Directory.load_or_seed(state_dir)
    knobs = Knobs(state_dir)
    cert = ca.server_certificate("entra")
    # Bind both listeners first: the endpoints need each other's URLs.
    holder: dict[str, Any] = {}
    journal = Journal()

    def serve(service: str) -> Callable[[Request], Response]:
        def endpoint(req: Request) -> Response:
            resp: Response = holder[service].handle(req)
            journal.record("login" if service == "authority" else "graph", req, resp)
            return resp

        return endpoint

    login = TwinServer(serve("authority"), host, cert, ports[0])
    try:
        graph_server = TwinServer(serve("graph"), host, cert, ports[1])
    except BaseException:
        login.httpd.server_close()
        raise
    issuer = TokenIssuer.load_or_create(state_dir, login.url, directory.tenant_id, clock=knobs.now)
    holder["authority"] = Authority(directory, issuer, knobs, login.url, graph_server.url)
    holder["graph"] = Graph(directory, issuer, knobs, graph_server.url)
    twin = EntraTwin(state_dir, directory, knobs, holder["authority"], holder["graph"], ca.bundle_path,
                     [login, graph_server], journal)
    login.start()
    graph_server.start()
    return twin
