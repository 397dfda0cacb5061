"""The deployment a runbook works on: its CRM servers, their sessions, and the cloud.

Built from the runbook's parameters, the same way in every step notebook::

    dep = Deployment.from_params(organization="contoso", lab="auto")
    dep.servers              # ['CRM01', 'CRM02']: where the Asynchronous Processing Service runs
    dep.session("CRM01")     # one psbridge.remote.Session per server, opened once, reused
    dep.cloud                # psbridge.cloud.CloudSettings (the lab's twin, or a named cloud)

With ``lab`` set, servers, accounts, the service account and the cloud come from the lab's
``lab.json``; for a real deployment each server is given as ``NAME=https://host:5986/wsman``.
"""

from __future__ import annotations

import atexit
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Literal
from urllib.parse import urlsplit

from psbridge.secrets import lab_state_dir

SCRIPT_CERTIFICATE = "CertificateReconfiguration.ps1"
SCRIPT_S2S = "ConfigureCrmServerSideSync.ps1"


class DeploymentError(Exception):
    pass


def lab_description(lab: str) -> tuple[Path, dict[str, Any]]:
    """``lab`` ('auto', a state dir or a lab.json) -> (state dir, the parsed lab.json)."""
    path = lab_state_dir() if lab.strip().lower() == "auto" else Path(lab).expanduser()
    if path.is_dir() or not path.suffix:
        path = path / "lab.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeploymentError(
            f"no lab at {path.parent}: start it with 'psbridge lab up' (or run 'psbridge demo')"
        ) from None
    if not data.get("ready", True):
        raise DeploymentError(f"the lab at {path.parent} is not running: start it with 'psbridge lab up'")
    return path.parent, data


def _has_role(server: dict[str, Any], word: str) -> bool:
    return any(word in str(r).lower().replace(" ", "") for r in server.get("roles", []))


@dataclass
class Deployment:
    organization: str
    servers: list[str]
    deployment_server: str
    tools_folder: PureWindowsPath
    service_account: str
    profiles: dict[str, Any]
    cloud: Any
    tenant: str
    lab: dict[str, Any] | None = None
    lab_state: Path | None = None
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_params(cls, organization: str, *, lab: str = "", servers: list[str] | tuple[str, ...] = (),
                    deployment_server: str = "", winrm_scheme: str = "http", winrm_user: str = "",
                    winrm_password: str = "", ca_bundle: str = "",
                    tools_folder: str = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools",
                    service_account: str = "", cloud: str = "lab", tenant: str = "", **_: Any) -> Deployment:
        from psbridge.cloud import CloudSettings
        from psbridge.remote.profile import ConnectionProfile

        profiles: dict[str, Any] = {}
        lab_data: dict[str, Any] | None = None
        state: Path | None = None
        if lab:
            state, lab_data = lab_description(lab)
            os.environ.setdefault("PSBRIDGE_LAB_STATE", str(state))
            known = {s["name"].upper(): s for s in lab_data.get("servers", [])}
            wanted = [s.replace(" ", "=", 1).split("=", 1)[0].upper() for s in servers] or [
                n for n, s in known.items() if _has_role(s, "async")] or list(known)
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise DeploymentError(
                    f"the lab has no server {', '.join(unknown)} (servers: {', '.join(known)})")
            account = "crmadmin"
            scheme: Literal["http", "https"] = "https" if winrm_scheme == "https" else "http"
            if winrm_user:
                account = winrm_user.split("\\")[-1]
            for name in wanted:
                overrides: dict[str, Any] = {}
                if winrm_password and not winrm_password.startswith("lab:accounts/"):
                    overrides["password"] = winrm_password
                profiles[name] = ConnectionProfile.from_lab(lab_data, server=name, scheme=scheme,
                                                            account=account, **overrides)
            dep_server = (deployment_server.upper() or next(
                (n for n, s in known.items() if _has_role(s, "deployment")), wanted[0]))
            if dep_server not in profiles:
                profiles[dep_server] = ConnectionProfile.from_lab(lab_data, server=dep_server, scheme=scheme,
                                                                  account=account)
            service = service_account or str(lab_data.get("service_account") or "")
            folder = str(lab_data.get("tools_folder") or tools_folder)
            settings = CloudSettings.from_lab(lab_data) if cloud == "lab" else CloudSettings.named(cloud)
            tenant = tenant or str((lab_data.get("entra") or {}).get("tenant_domain") or "")
        else:
            if not servers:
                raise DeploymentError("name the CRM servers: servers: [CRM01=https://crm01.contoso.local:5986/wsman]")
            for entry in servers:
                name, sep, url = entry.replace(" ", "=", 1).partition("=")
                url = url.strip()
                if not sep:
                    raise DeploymentError(f"server {entry!r}: write NAME=https://host:5986/wsman")
                u = urlsplit(url)
                if u.scheme not in ("http", "https") or not u.hostname:
                    raise DeploymentError(f"server {name}: {url!r} is not an http(s) WinRM URL")
                profiles[name.upper()] = ConnectionProfile(
                    name=name.upper(), host=u.hostname, port=u.port, scheme=u.scheme, path=u.path or "wsman",
                    auth="negotiate", user=winrm_user or None, password=winrm_password or None,
                    ca_bundle=Path(ca_bundle) if ca_bundle else None,
                )
            wanted = list(profiles)
            dep_server = deployment_server.upper() or wanted[0]
            if dep_server not in profiles:
                raise DeploymentError(f"deployment_server {dep_server} is not among servers")
            service = service_account
            folder = tools_folder
            if cloud == "lab":
                raise DeploymentError("cloud 'lab' needs the lab: set lab: auto, or choose cloud: global")
            settings = CloudSettings.named(cloud)
            if not tenant:
                raise DeploymentError("name the Entra ID tenant: tenant: contoso.onmicrosoft.com")
        if not service:
            raise DeploymentError("name the CRM Asynchronous Processing Service account: service_account")
        dep = cls(organization=organization, servers=wanted, deployment_server=dep_server,
                  tools_folder=PureWindowsPath(folder), service_account=service, profiles=profiles,
                  cloud=settings, tenant=tenant, lab=lab_data, lab_state=state)
        # A notebook that stops at a failing cell never reaches its closing cell: the runspace
        # pools (WinRM shells, counted per user on the server) are closed when the kernel ends.
        atexit.register(dep.close)
        return dep

    def script(self, name: str) -> PureWindowsPath:
        return self.tools_folder / name

    def session(self, server: str) -> Any:
        from psbridge.remote.session import Session

        key = server.upper()
        if key not in self.profiles:
            raise DeploymentError(f"no connection for server {server} (known: {', '.join(self.profiles)})")
        if key not in self._sessions:
            from psbridge.runbook.timing import instrument

            # The session's own open() and invoke() are what the benchmark calls "remote".
            session = Session(self.profiles[key])
            instrument(session, "invoke", "winrm")
            instrument(session, "open", "winrm_open")
            self._sessions[key] = session
        return self._sessions[key]

    def journal(self) -> Any:
        """Everything the sessions did, as one table (the change record shows it)."""
        import pandas as pd

        frames = [s.journal_frame() for s in self._sessions.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def work_dir(self, customer: str) -> Path:
        """Where local files of this org live (a generated PFX): under the lab, or the user's data dir."""
        if self.lab_state is not None:
            base = self.lab_state / "work"
        else:
            import platformdirs

            base = Path(platformdirs.user_data_dir("psbridge")) / "work"
        return base / customer / self.organization
