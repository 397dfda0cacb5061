"""Step 2 — the certificate on every asynchronous server, and in the configuration database once.

``CertificateReconfiguration.ps1`` runs on each server that lacks the certificate (the Deployment
Tools server first, where ``-updateCrm`` records it in the configuration database, once). A server
that already holds it with its private key is left alone, so a re-run, or a resume after a crash
between two servers, installs nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psbridge.crm.snapin import use_crm_snapin
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    Action,
    StepError,
    certificate_for,
    norm_thumbprint,
    sweep_leftovers,
)
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CertificateState", "ServerCertificate", "certificate_for", "certificate_state",
           "install_certificate"]

COLUMNS = ["where", "present", "detail"]
CERTIFICATE_TYPE = "S2STokenIssuer"


@dataclass(frozen=True)
class ServerCertificate:
    """The certificate in one server's ``LocalMachine\\My``."""

    server: str
    present: bool  # there, with its private key
    not_after: str = ""
    has_private_key: bool = False
    same_subject: int = 0  # other certificates with this subject ("Private key not found" ahead)

    @property
    def detail(self) -> str:
        if self.not_after:
            text = f"until {self.not_after}, private key {'yes' if self.has_private_key else 'NO'}"
        else:
            text = "not installed"
        if self.same_subject:
            text += f"; {self.same_subject} other certificate(s) with this subject"
        return text


@dataclass
class CertificateState:
    """Where the certificate is: each server's store, and the configuration database."""

    thumbprint: str
    servers: list[ServerCertificate] = field(default_factory=list)
    in_database: bool = False
    database: list[str] = field(default_factory=list)  # the S2STokenIssuer thumbprints recorded there

    @property
    def lacking(self) -> list[str]:
        return [s.server for s in self.servers if not s.present]

    @property
    def installed_on(self) -> list[str]:
        return [s.server for s in self.servers if s.present]

    @property
    def complete(self) -> bool:
        return not self.lacking and self.in_database

    def _dicts(self) -> list[dict[str, Any]]:
        rows = [{"where": f"{s.server} LocalMachine\\My", "present": s.present, "detail": s.detail}
                for s in self.servers]
        rows.append({"where": f"CRM configuration database ({CERTIFICATE_TYPE})", "present": self.in_database,
                     "detail": ", ".join(self.database) or "none"})
        return rows

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), COLUMNS)

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), COLUMNS)

    def require_present(self) -> None:
        missing = [f"{s} LocalMachine\\My" for s in self.lacking]
        if not self.in_database:
            missing.append(f"the CRM configuration database ({CERTIFICATE_TYPE})")
        if missing:
            raise StepError("the certificate is still missing from: " + ", ".join(missing))


def certificate_state(dep: Deployment, thumbprint: str, subject: str = "") -> CertificateState:
    from psbridge.crm import crm_certificates, store_certificates

    want = norm_thumbprint(thumbprint)
    state = CertificateState(want)
    for server in dep.servers:
        session = dep.session(server)
        mine = store_certificates(session, thumbprint=want) if want else []
        same = store_certificates(session, subject=subject) if subject else []
        found = mine[0] if mine else None
        state.servers.append(ServerCertificate(
            server, bool(found and found.has_private_key), str(found.not_after) if found else "",
            bool(found and found.has_private_key), len([c for c in same if c.thumbprint != want])))
    recorded = crm_certificates(use_crm_snapin(dep.session(dep.deployment_server)), CERTIFICATE_TYPE)
    state.database = [c.thumbprint for c in recorded]
    state.in_database = bool(want) and want in state.database
    return state


def install_certificate(dep: Deployment, pfx_file: str, pfx_password: str, thumbprint: str,
                        subject: str = "", *, plan: bool = False) -> Action:
    """CertificateReconfiguration.ps1 on each async server lacking the certificate, ``-updateCrm`` once.

    In a plan, the state is read and the would-be actions listed; nothing is uploaded or run.
    """
    from psbridge.crm import certificate_reconfiguration

    state = certificate_state(dep, thumbprint, subject)
    if state.complete:
        return Action([], plan)
    if plan:
        todo = [f"install the certificate on {s}" for s in state.lacking]
        if not state.in_database:
            todo.append("record it in the CRM configuration database "
                        f"(-updateCrm on {dep.deployment_server})")
        return Action(todo, True)
    swept = sweep_leftovers(dep)
    # The Deployment Tools server first: -updateCrm runs there, once.
    order = [s for s in dep.servers if s != dep.deployment_server]
    if dep.deployment_server in dep.servers or not state.in_database:
        order.insert(0, dep.deployment_server)
    report = certificate_reconfiguration(
        [dep.session(s) for s in order], Path(pfx_file), pfx_password, dep.service_account,
        tools_folder=dep.tools_folder,
    )
    shown: list[Any] = [report.to_table()] + [o.result for o in report.servers if o.result is not None]
    return swept + Action([f"{o.server}: {o.detail}" for o in report.servers if o.changed], False, shown)
