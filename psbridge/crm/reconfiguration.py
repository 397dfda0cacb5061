"""Step 2: install the S2S certificate with the official CertificateReconfiguration.ps1.

The certificate must be on every server that runs the Asynchronous Processing Service (and the
Web Application role): the script runs on each, and records the certificate in the configuration
database (``-updateCrm``) once, on the first server given (the Deployment Tools server).
Everything that can be checked is checked on every server before the first change: inputs,
the installed script, the subject's uniqueness in each store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from psbridge.crm import validation
from psbridge.crm.certificates import check_subject_unique, crm_certificates, store_certificates
from psbridge.crm.inputs import secret
from psbridge.crm.leftovers import UPLOAD_FOLDER
from psbridge.crm.scripts import (
    CERTIFICATE_RECONFIGURATION,
    RECONFIGURATION_PARAMETERS,
    TOOLS_FOLDER,
    require_parameters,
    script_path,
)
from psbridge.errors import ChangeNotApplied, ParameterError
from psbridge.intents import intent
from psbridge.remote.paths import server_path
from psbridge.remote.result import Result
from psbridge.remote.session import Session
from psbridge.remote.transfer import uploaded
from psbridge.secrets import Secret, SecretRef
from psbridge.tables import Table, dataframe, html_table


@dataclass(frozen=True)
class ServerOutcome:
    server: str
    changed: bool
    update_crm: bool
    detail: str
    result: Result | None = None


@dataclass
class CertificateInstallation:
    """What step 2 did, server by server, and what the servers report afterwards."""

    thumbprint: str
    subject: str
    not_after: dt.datetime
    certificate_type: str
    servers: list[ServerOutcome] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.servers)

    def _server_rows(self) -> list[dict[str, Any]]:
        return [{"server": s.server, "changed": s.changed, "updateCrm": s.update_crm, "detail": s.detail}
                for s in self.servers]

    def to_frame(self) -> Any:
        return dataframe(self._server_rows(), ["server", "changed", "updateCrm", "detail"])

    def to_table(self) -> Table:
        return Table(self._server_rows(), ["server", "changed", "updateCrm", "detail"])

    def __str__(self) -> str:
        lines = [
            f"{self.certificate_type} {self.subject} ({self.thumbprint}), "
            f"valid until {self.not_after:%Y-%m-%d}"
        ]
        for o in self.servers:
            lines.append(f"  {o.server}: {'changed' if o.changed else 'unchanged'}, {o.detail}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        head = html.escape(str(self).splitlines()[0])
        return f"<b>{head}</b>" + html_table(self._server_rows())

    def facts(self) -> dict[str, str]:
        return {
            "thumbprint": self.thumbprint, "subject": self.subject, "not_after": self.not_after.isoformat(),
        }


def certificate_reconfiguration(
    sessions: Session | Sequence[Session],
    pfx: str | Path,
    password: Secret | SecretRef | str,
    service_account: str,
    certificate_type: str = "S2STokenIssuer",
    *,
    tools_folder: str | PurePath = TOOLS_FOLDER,
    upload_folder: str | PurePath = UPLOAD_FOLDER,
    force: bool = False,
) -> CertificateInstallation:
    """Run CertificateReconfiguration.ps1 on each server; ``-updateCrm`` on the first only.

    A server that already holds this very certificate (same thumbprint, with its private key)
    and a configuration database that already records it are left alone unless ``force``.
    """
    servers = [sessions] if isinstance(sessions, Session) else list(sessions)
    if not servers:
        raise ParameterError("give at least one server session")
    # --- everything checked before anything changes -----------------------------------------
    ctype = validation.certificate_type(certificate_type)
    account = validation.service_account(service_account)
    pfx_password = secret(password, "password")
    info = validation.inspect_pfx(pfx, pfx_password)
    script = script_path(CERTIFICATE_RECONFIGURATION, tools_folder)
    folder = server_path(upload_folder, "upload_folder")
    remote_pfx = folder / f"{info.thumbprint}.pfx"
    installed = {}
    for s in servers:
        require_parameters(s, script, RECONFIGURATION_PARAMETERS)
        installed[s.server] = check_subject_unique(s, info) and _has_key(s, info.thumbprint)
    in_database = any(c.thumbprint == info.thumbprint for c in crm_certificates(servers[0], ctype))

    report = CertificateInstallation(info.thumbprint, info.subject, info.not_after, ctype)
    for i, s in enumerate(servers):
        update_crm = i == 0 and (force or not in_database)
        if installed[s.server] and not update_crm and not force:
            detail = f"{info.thumbprint} already in LocalMachine\\My with its private key"
            s.record("unchanged", f"{CERTIFICATE_RECONFIGURATION}: {detail}")
            report.servers.append(ServerOutcome(s.server, False, False, detail))
            continue
        what = (f"{CERTIFICATE_RECONFIGURATION} installs {info.thumbprint} as {ctype} for {account}"
                + (" and records it in CRM (-updateCrm)" if update_crm else ""))
        with uploaded(s, Path(pfx), remote_pfx) as receipt, \
                intent("certificate-reconfiguration", s.server, what):
            result = s.run_script(
                script,
                certificateFile=str(receipt.path),
                password=pfx_password,
                certificateType=ctype,
                serviceAccount=account,
                updateCrm=True if update_crm else None,
            )
        if not _has_key(s, info.thumbprint):
            raise ChangeNotApplied(
                f"{CERTIFICATE_RECONFIGURATION} reported success on {s.server} but {info.thumbprint} "
                "is not in LocalMachine\\My with a private key"
            )
        detail = f"installed {info.thumbprint} for {account}"
        if update_crm:
            detail += " and recorded it in CRM"
        report.servers.append(ServerOutcome(s.server, True, update_crm, detail, result))
    if not any(c.thumbprint == info.thumbprint for c in crm_certificates(servers[0], ctype)):
        raise ChangeNotApplied(
            f"after {CERTIFICATE_RECONFIGURATION} the configuration database has no {ctype} certificate "
            f"{info.thumbprint} (read on {servers[0].server})"
        )
    return report


def _has_key(session: Session, thumbprint: str) -> bool:
    return any(c.has_private_key for c in store_certificates(session, thumbprint=thumbprint))
