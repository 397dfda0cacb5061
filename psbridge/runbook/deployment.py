"""The deployment a runbook works on: its CRM servers, their sessions, and the cloud.

Built from the runbook's parameters, the same way in every step notebook::

    dep = Deployment.from_params(organization="contoso", lab="auto")
    dep.servers              # ['CRM01', 'CRM02']: where the Asynchronous Processing Service runs
    dep.session("CRM01")     # one psbridge.remote.Session per server, opened once, reused
    dep.cloud                # psbridge.cloud.CloudSettings (the lab's twin, or a named cloud)

Two named constructors build the same object: :meth:`Deployment.for_servers` for a customer's
deployment (each server given as ``NAME=https://host:5986/wsman``) and
:meth:`Deployment.for_lab` for the embedded lab (servers, accounts, the service account and the
cloud read from its ``lab.json``). :meth:`from_params` checks every input first and lists every
problem at once, then picks one of them.

A Deployment is displayed in every step notebook, so it holds nothing secret: passwords are
references inside the connection profiles, and nothing of the lab's description is kept but the
path of its state directory.
"""

from __future__ import annotations

import atexit
import html
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from psbridge.errors import RunbookError
from psbridge.runbook import formats
from psbridge.tables import Table
from psbridge.text import shown

if TYPE_CHECKING:
    from psbridge.cloud import CloudSettings
    from psbridge.remote.profile import ConnectionProfile
    from psbridge.remote.session import Session

SCRIPT_CERTIFICATE = "CertificateReconfiguration.ps1"
SCRIPT_S2S = "ConfigureCrmServerSideSync.ps1"
TOOLS_FOLDER = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
SCHEMES = ("http", "https")
CLOUDS = ("lab", "global", "usgov", "usgov-dod", "china")


class DeploymentError(RunbookError):
    """The parameters do not describe a deployment psbridge can work on; ``problems`` lists why."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} problems:\n  - " + "\n  - ".join(self.problems))


def lab_state(lab: str) -> Path:
    """``lab`` ('auto', a state dir or a lab.json) -> the lab's state directory."""
    from psbridge.lab.secretstore import lab_state_dir

    path = lab_state_dir() if lab.strip().lower() == "auto" else Path(lab).expanduser()
    return path.parent if path.suffix.lower() == ".json" else path


def running_lab(lab: str) -> Any:
    """The :class:`~psbridge.lab.config.LabConfig` of a lab that is up, or DeploymentError."""
    from psbridge.lab.config import LabConfig, LabConfigError

    state = lab_state(lab)
    try:
        config = LabConfig.load(state)
    except LabConfigError:
        raise DeploymentError(
            f"no lab at {state}: start it with 'psbridge lab up' (or run 'psbridge demo')") from None
    if not config.ready:
        raise DeploymentError(f"the lab at {state} is not running: start it with 'psbridge lab up'")
    return config


def _has_role(roles: list[str], word: str) -> bool:
    return any(word in str(r).lower().replace(" ", "") for r in roles)


def check_inputs(organization: str, *, lab: str, servers: Any, deployment_server: str, winrm_scheme: str,
                 winrm_user: str, ca_bundle: str, tools_folder: str, service_account: str, cloud: str,
                 tenant: str) -> list[str]:
    """Every problem with these inputs, with the checks the runbook's schema applies to them.

    A step notebook run on its own (papermill ``-p``, JupyterLab) has had no parameter file
    checked: the deployment is the first thing it builds, so the same checks run here.
    """
    problems = formats.problems("organization", str(organization), "organization")
    if not organization:
        problems.append("organization: required (the CRM organization's unique name)")
    if isinstance(servers, str) or not isinstance(servers, list | tuple):
        problems.append(f"servers: expected a list such as [CRM01], got {shown(servers)}")
        servers = []
    for i, entry in enumerate(servers):
        problems += formats.problems(f"servers[{i}]", str(entry), "server")
    checks = [("deployment_server", deployment_server, "server"),
              ("winrm_user", winrm_user, "windows-account"), ("ca_bundle", ca_bundle, "pem-file"),
              ("tools_folder", tools_folder, "windows-path"),
              ("service_account", service_account, "service-account"), ("tenant", tenant, "tenant"),
              ("lab", lab, "lab")]
    for name, value, fmt in checks:
        if not isinstance(value, str):
            problems.append(f"{name}: expected text, got {shown(value)}")
        else:
            problems += formats.problems(name, value, fmt)
    if winrm_scheme not in SCHEMES:
        problems.append(f"winrm_scheme: {shown(winrm_scheme)} is not one of {', '.join(SCHEMES)}")
    if cloud not in CLOUDS:
        problems.append(f"cloud: {shown(cloud)} is not one of {', '.join(CLOUDS)}")
    return problems


@dataclass(repr=False)
class Deployment:
    organization: str
    servers: list[str]
    deployment_server: str
    tools_folder: PureWindowsPath
    service_account: str
    profiles: dict[str, ConnectionProfile]
    cloud: CloudSettings
    tenant: str
    lab_state: Path | None = None
    _sessions: dict[str, Session] = field(default_factory=dict)

    # --- constructors --------------------------------------------------------------------------

    @classmethod
    def from_params(cls, organization: str, *, lab: str = "", servers: list[str] | tuple[str, ...] = (),
                    deployment_server: str = "", winrm_scheme: str = "http", winrm_user: str = "",
                    winrm_password: str = "", ca_bundle: str = "", tools_folder: str = TOOLS_FOLDER,
                    service_account: str = "", cloud: str = "lab", tenant: str = "", **_: Any) -> Deployment:
        """Check every input, then build the deployment with :meth:`for_lab` or :meth:`for_servers`."""
        problems = check_inputs(organization, lab=lab, servers=servers, deployment_server=deployment_server,
                                winrm_scheme=winrm_scheme, winrm_user=winrm_user, ca_bundle=ca_bundle,
                                tools_folder=tools_folder, service_account=service_account, cloud=cloud,
                                tenant=tenant)
        if problems:
            raise DeploymentError(problems)
        common: dict[str, Any] = {"servers": list(servers), "deployment_server": deployment_server,
                  "winrm_scheme": winrm_scheme, "winrm_user": winrm_user, "winrm_password": winrm_password,
                  "tools_folder": tools_folder, "service_account": service_account, "cloud": cloud,
                  "tenant": tenant}
        if lab:
            return cls.for_lab(organization, lab, ca_bundle=ca_bundle, **common)
        return cls.for_servers(organization, ca_bundle=ca_bundle, **common)

    @classmethod
    def for_servers(cls, organization: str, servers: list[str], *, deployment_server: str = "",
                    winrm_scheme: str = "https", winrm_user: str = "", winrm_password: str = "",
                    ca_bundle: str = "", tools_folder: str = TOOLS_FOLDER, service_account: str,
                    cloud: str = "global", tenant: str) -> Deployment:
        """A customer's deployment: each server ``NAME=https://host:5986/wsman``."""
        from psbridge.cloud import CloudSettings
        from psbridge.remote.profile import ConnectionProfile

        problems = []
        if not servers:
            problems.append("servers: name the CRM servers: servers: [CRM01=https://crm01.contoso.local:5986/wsman]")
        parsed: dict[str, str] = {}
        for entry in servers:
            name, sep, url = entry.replace(" ", "=", 1).partition("=")
            if not sep:
                problems.append(f"servers: {shown(entry)}: write NAME=https://host:5986/wsman")
            else:
                parsed[name.upper()] = url.strip()
        dep_server = deployment_server.upper() or next(iter(parsed), "")
        if parsed and dep_server not in parsed:
            problems.append(f"deployment_server: {dep_server} is not among servers ({', '.join(parsed)})")
        if cloud == "lab":
            problems.append("cloud: 'lab' needs the lab: set lab: auto, or choose cloud: global")
        if not tenant:
            problems.append("tenant: name the Entra ID tenant: tenant: contoso.onmicrosoft.com")
        if not service_account:
            problems.append("service_account: name the CRM Asynchronous Processing Service account")
        if problems:
            raise DeploymentError(problems)
        profiles = {}
        for name, url in parsed.items():
            u = urlsplit(url)
            profiles[name] = ConnectionProfile(
                name=name, host=u.hostname, port=u.port, scheme=u.scheme, path=u.path or "wsman",
                auth="negotiate", user=winrm_user or None, password=winrm_password or None,
                ca_bundle=Path(ca_bundle) if ca_bundle else None,
            )
        return cls._made(organization=organization, servers=list(parsed), deployment_server=dep_server,
                         tools_folder=PureWindowsPath(tools_folder), service_account=service_account,
                         profiles=profiles, cloud=CloudSettings.named(cloud), tenant=tenant)

    @classmethod
    def for_lab(cls, organization: str, lab: str = "auto", *, servers: list[str] | None = None,
                deployment_server: str = "", winrm_scheme: str = "http", winrm_user: str = "",
                winrm_password: str = "", ca_bundle: str = "", tools_folder: str = TOOLS_FOLDER,
                service_account: str = "", cloud: str = "lab", tenant: str = "") -> Deployment:
        """The embedded lab's deployment, as its ``lab.json`` describes it.

        What the lab decides itself (its servers' URLs, its accounts, its CA, its Tools folder)
        cannot be given differently: a parameter that would be silently replaced is refused.
        """
        import os

        from psbridge.cloud import CloudSettings
        from psbridge.remote.profile import ConnectionProfile

        config = running_lab(lab)
        state = Path(config.state_dir)
        os.environ.setdefault("PSBRIDGE_LAB_STATE", str(state))
        known = {s.name.upper(): s for s in config.servers}
        problems = []
        wanted = []
        for entry in servers or []:
            name, sep, _url = entry.replace(" ", "=", 1).partition("=")
            if sep:
                problems.append(f"servers: {shown(entry)}: in the lab, name servers only (their URLs are the "
                                "lab's)")
            wanted.append(name.upper())
        wanted = wanted or [n for n, s in known.items() if _has_role(s.roles, "async")] or list(known)
        unknown = [w for w in wanted if w not in known]
        if unknown:
            problems.append(f"servers: the lab has no server {', '.join(unknown)} "
                            f"(servers: {', '.join(known)})")
        wanted_user = (winrm_user or "crmadmin").lower()
        account = next((a for a in config.accounts if wanted_user in (a.user.lower(), a.name.lower())), None)
        if account is None:
            problems.append(f"winrm_user: {shown(winrm_user)} is not a lab account (accounts: "
                            f"{', '.join(a.user for a in config.accounts)})")
        if ca_bundle:
            problems.append("ca_bundle: the lab's servers use the lab's own CA; leave ca_bundle empty")
        if PureWindowsPath(tools_folder) != PureWindowsPath(config.tools_folder):
            problems.append(f"tools_folder: the lab's Tools folder is {config.tools_folder}; leave "
                            "tools_folder unset in the lab")
        dep_server = deployment_server.upper() or next(
            (n for n, s in known.items() if _has_role(s.roles, "deployment")), wanted[0] if wanted else "")
        if dep_server and dep_server not in known:
            problems.append(f"deployment_server: the lab has no server {dep_server}")
        if problems:
            raise DeploymentError(problems)
        assert account is not None
        scheme: Literal["http", "https"] = "https" if winrm_scheme == "https" else "http"
        overrides = {"password": winrm_password} if winrm_password else {}
        profiles = {n: ConnectionProfile.from_lab(config, server=n, scheme=scheme, account=account.name,
                                                  **overrides)
                    for n in dict.fromkeys([*wanted, dep_server])}
        entra = config.entra or {}
        settings = CloudSettings.from_lab(config.model_dump(mode="json")) if cloud == "lab" \
            else CloudSettings.named(cloud)
        return cls._made(organization=organization, servers=wanted, deployment_server=dep_server,
                         tools_folder=PureWindowsPath(tools_folder),
                         service_account=service_account or config.service_account, profiles=profiles,
                         cloud=settings, tenant=tenant or str(entra.get("tenant_domain") or ""),
                         lab_state=state)

    @classmethod
    def _made(cls, **fields: Any) -> Deployment:
        dep = cls(**fields)
        # A notebook that stops at a failing cell never reaches its closing cell: the runspace
        # pools (WinRM shells, counted per user on the server) are closed when the kernel ends.
        atexit.register(dep.close)
        return dep

    # --- use -----------------------------------------------------------------------------------

    def script(self, name: str) -> PureWindowsPath:
        return self.tools_folder / name

    def session(self, server: str) -> Session:
        from psbridge.remote.session import Session

        key = server.upper()
        if key not in self.profiles:
            raise DeploymentError(f"no connection for server {server} (known: {', '.join(self.profiles)})")
        if key not in self._sessions:
            from psbridge.runbook.timing import instrument

            # The session's own open(), invoke() and close() (the server deletes its shell) are
            # what the benchmark calls "remote"; so is on_open(), which on an open pool runs its
            # command (Add-PSSnapin) there and then.
            session = Session(self.profiles[key])
            instrument(session, "invoke", "winrm")
            instrument(session, "on_open", "winrm")
            instrument(session, "open", "winrm_open")
            instrument(session, "close", "winrm_close")
            self._sessions[key] = session
        return self._sessions[key]

    def journal(self) -> Table:
        """Everything the sessions did, as one table (the change record shows it)."""
        rows = [e.as_dict() for s in self._sessions.values() for e in s.journal]
        # In time order across servers: a reader follows one story, not one server after another.
        return Table(sorted(rows, key=lambda r: str(r["time"])), ["time", "server", "event", "detail"])

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

    # --- how it shows ----------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """One row a server: what a record should say about where and as whom the runbook acts."""
        rows = []
        for name, p in self.profiles.items():
            roles = [r for r, on in (("async", name in self.servers),
                                     ("deployment tools", name == self.deployment_server)) if on]
            rows.append({"server": name, "roles": ", ".join(roles), "endpoint": p.endpoint, "auth": p.auth,
                         "user": p.user or "", "password": p.password or "",
                         "notes": "; ".join(p.security_notes)})
        return rows

    def __repr__(self) -> str:
        shown = []
        for r in self.describe():
            password = f" (password {r['password']})" if r["password"] else ""
            shown.append(f"{r['server']} {r['endpoint']} as {r['user'] or 'the current user'}{password}")
        servers = ", ".join(shown)
        where = f", lab {self.lab_state}" if self.lab_state else ""
        return (f"Deployment(organization={self.organization!r}, servers=[{servers}], "
                f"deployment_server={self.deployment_server!r}, tools_folder={str(self.tools_folder)!r}, "
                f"service_account={self.service_account!r}, cloud={self.cloud.name!r}, "
                f"tenant={self.tenant!r}{where})")

    def _repr_html_(self) -> str:
        head = ("<p><b>Organization</b> <code>{}</code> · <b>Tools folder</b> <code>{}</code> · "
                "<b>Async service account</b> <code>{}</code> · <b>Cloud</b> {} · "
                "<b>Tenant</b> <code>{}</code>{}</p>").format(*(html.escape(str(v)) for v in (
                    self.organization, self.tools_folder, self.service_account, self.cloud.name,
                    self.tenant or "-", f" · lab {self.lab_state}" if self.lab_state else "")))
        cols = ["server", "roles", "endpoint", "auth", "user", "password", "notes"]
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in cols) + "</tr>"
                       for r in self.describe())
        header = "".join(f"<th>{c}</th>" for c in cols)
        return f"{head}<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
