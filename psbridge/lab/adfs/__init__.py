"""The lab's AD FS: the security token service of the Internet-facing CRM deployment.

:func:`start_adfs` serves ``https://host:port/adfs`` over HTTPS with a lab CA certificate: the
authority msal takes for AD FS (OpenID metadata, JWKS, token and device code endpoints, see
:mod:`psbridge.lab.adfs.service`). Users are the lab's Windows accounts, with their passwords;
the farm's clients and relying parties live in ``<state>/adfs/adfs.json`` (:mod:`psbridge.lab.adfs.farm`),
its signing key beside it, its knobs in ``<state>/adfs/adfs-knobs.json``::

    adfs = start_adfs(state_dir / "adfs", ca, accounts)
    farm.add_client(adfs.state_dir, CLIENT_ID, "psbridge", "https://localhost/psbridge")
    adfs.authority                    # https://127.0.0.1:PORT/adfs
    adfs.verify(token, audience)      # what the CRM twin does with a bearer token
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psbridge.lab.adfs import farm
from psbridge.lab.adfs.service import AdfsService
from psbridge.lab.adfs.tokens import AdfsIssuer, TokenInvalid
from psbridge.lab.ca import LabCA
from psbridge.lab.entra.http import TwinServer
from psbridge.lab.entra.wire import Journal, Request, Response
from psbridge.lab.webapi.knobs import ADFS, JsonKnobs
from psbridge.lab.winrm.auth import Directory

__all__ = ["AdfsTwin", "TokenInvalid", "farm", "start_adfs"]

# The client psbridge registers (Add-AdfsClient) in the lab: a fixed id, so a token cache and
# a parameter file stay valid across lab restarts.
LAB_CLIENT_ID = "6a4b8c2e-31d7-4f5a-9e2b-7c1d0f3a5b9e"
LAB_CLIENT_NAME = "psbridge"
LAB_REDIRECT_URI = "https://localhost/psbridge"
# The confidential client username/password sign-in needs; its secret is a lab secret.
LAB_CONFIDENTIAL_CLIENT_ID = "d3e1f0a4-8b27-4c6e-a5d9-2f7b3c1e9a08"
LAB_CONFIDENTIAL_SECRET_REF = "lab:adfs/client-secret"


@dataclass
class AdfsTwin:
    state_dir: Path
    issuer: AdfsIssuer
    knobs: JsonKnobs
    service: AdfsService
    directory: Directory
    _server: TwinServer = field(repr=False)
    journal: Journal = field(default_factory=Journal, repr=False)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def authority(self) -> str:
        return f"{self.url}/adfs"

    @property
    def port(self) -> int:
        return self._server.port

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        return self.issuer.verify(token, audience)

    def describe(self) -> dict[str, Any]:
        knobs = self.knobs.snapshot()
        return {
            "authority": self.authority,
            "client_id": LAB_CLIENT_ID,
            "confidential_client_id": LAB_CONFIDENTIAL_CLIENT_ID,
            "client_secret_ref": LAB_CONFIDENTIAL_SECRET_REF,
            "redirect_uri": LAB_REDIRECT_URI,
            "token_lifetime": knobs["token_lifetime"],
            "device_code_approval": knobs["device_code_approval"],
            "device_code_user": knobs["device_code_user"],
            "knobs_file": str(self.knobs.path),
            "farm_file": str(Path(self.state_dir) / farm.FARM_FILE),
        }

    def set_knobs(self, **values: Any) -> None:
        self.knobs.set(**values)

    def reset_knobs(self) -> None:
        self.knobs.reset()

    def approve_device_code(self, user_code: str, user: str = "LAB\\crmadmin", approve: bool = True) -> bool:
        return self.service.approve(user_code, user, approve)

    def stop(self) -> None:
        self._server.stop()
        self.directory.close()


def start_adfs(state_dir: Path, ca: LabCA, accounts: dict[str, str], host: str = "127.0.0.1",
               port: int = 0) -> AdfsTwin:
    """Serve AD FS from ``state_dir`` (its key, farm and knobs kept there) on ``host``."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    knobs = JsonKnobs(state_dir / "adfs-knobs.json", ADFS)
    directory = Directory(accounts)
    holder: dict[str, AdfsService] = {}
    journal = Journal()

    def endpoint(req: Request) -> Response:
        resp = holder["service"].handle(req)
        journal.record("adfs", req, resp)  # form field names only, never values or tokens
        return resp

    cert = ca.server_certificate("adfs")
    try:
        server = TwinServer(endpoint, host, cert, port)
    except BaseException:
        directory.close()
        raise
    issuer = AdfsIssuer.load_or_create(state_dir, server.url, clock=knobs.now)
    holder["service"] = AdfsService(state_dir, issuer, knobs, directory)
    twin = AdfsTwin(state_dir, issuer, knobs, holder["service"], directory, server, journal)
    server.start()
    return twin


Verifier = Callable[[str, str], dict[str, Any]]
