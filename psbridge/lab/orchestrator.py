"""The lab as one thing to start and stop: world, CA, Entra twin, one WinRM server per CRM server,
the organizations' Web API (an Active Directory or an Internet-facing deployment) and, for the
latter, AD FS.

``Lab(state_dir).start()`` serves on loopback in this process (daemon threads, free ports) and
writes ``lab.json``; ``stop()`` ends every listener and marks ``lab.json`` not ready. Everything
the lab knows lives under the state directory (world, CA, twin, passwords, faults), so a
restart — or another process pointed at the same directory — finds the same deployment::

    with Lab(tmp, servers=2, orgs=2) as lab:
        lab.config.endpoint("CRM01", "http").url
        lab.set_faults("CRM01", drop_after=3)
        lab.config.webapi["organizations"]["contoso"]       # the organization's Web API site
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets as pysecrets
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from psbridge import secrets
from psbridge.errors import LabError as LabError  # re-exported for its callers
from psbridge.lab import faults
from psbridge.lab.ca import LabCA
from psbridge.lab.config import (
    LAB_JSON,
    LabAccount,
    LabConfig,
    LabConfigError,
    LabEndpoint,
    LabOrganization,
    LabServer,
    lab_secret_store,
)
from psbridge.lab.runspace import CloudEndpoints
from psbridge.lab.secretstore import lab_state_dir
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint

if TYPE_CHECKING:
    from psbridge.lab.adfs import AdfsTwin
    from psbridge.lab.entra import EntraTwin
    from psbridge.lab.webapi import WebApiTwin

SCHEMES: tuple[Literal["http", "https"], ...] = ("http", "https")
# How the organizations' Web API signs users in: Active Directory (Windows authentication) or an
# Internet-facing deployment with AD FS (claims), which Exchange Online S2S requires; "off": none.
WEB_DEPLOYMENTS = ("ad", "ifd", "off")
DEFAULT_WEB_DEPLOYMENT = "ifd"


def _port(url: str) -> int:
    try:
        return urllib.parse.urlsplit(url).port or 0
    except ValueError:
        return 0


def _roles(rights: dict[str, bool]) -> list[str]:
    return [role for role, key in (("LocalAdministrator", "local_admin"),
                                   ("DeploymentAdministrator", "deployment_admin")) if rights.get(key)]


def lab_secret(state_dir: Path, ref: str) -> str:
    """A secret of this lab (a client secret it registered): made once per state directory, then read back."""
    with lab_secret_store(state_dir):
        try:
            value = secrets.resolve(ref).reveal()
        except secrets.SecretError:
            value = pysecrets.token_urlsafe(24)
            secrets.store(ref, value)
    secrets.remember([value])
    return value


def account_passwords(state_dir: Path, names: list[str]) -> dict[str, str]:
    """Each lab account's password: made once per state directory, then read back."""
    out: dict[str, str] = {}
    with lab_secret_store(state_dir):
        for name in names:
            ref = f"lab:accounts/{name}"
            try:
                out[name] = secrets.resolve(ref).reveal()
            except secrets.SecretError:
                out[name] = pysecrets.token_urlsafe(18)
                secrets.store(ref, out[name])
    secrets.remember(out.values())
    return out


class Lab:
    """A simulated CRM deployment and its cloud, serving on loopback from this process."""

    def __init__(self, state_dir: Path | str | None = None, servers: int = 2, orgs: int = 2,
                 legacy_servers: int = 0, cloud: bool = True, host: str = "127.0.0.1",
                 webapi: str | None = None) -> None:
        self.state_dir = Path(state_dir if state_dir is not None else lab_state_dir()).expanduser()
        self.servers = servers
        self.orgs = orgs
        self.legacy_servers = legacy_servers
        self.cloud = cloud
        self.host = host
        if webapi is not None and webapi not in WEB_DEPLOYMENTS:
            raise LabError(f"webapi must be one of {', '.join(WEB_DEPLOYMENTS)}, not {webapi!r}")
        # None: what this state directory's lab served last time (else the default).
        self.webapi = webapi
        self.twin: EntraTwin | None = None
        self.web: WebApiTwin | None = None
        self.adfs: AdfsTwin | None = None
        self._endpoints: dict[tuple[str, str], Endpoint] = {}
        # Ports of the previous run (this object's, else lab.json's), tried first so that
        # clients' URLs, and the twin's token issuer, stay true across a restart.
        self._ports: dict[tuple[str, str], int] = {}
        self._config: LabConfig | None = None
        self._lock = threading.RLock()

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._endpoints)

    @property
    def config(self) -> LabConfig:
        if self._config is None:
            raise LabError("the lab has not been started")
        return self._config

    @property
    def lab_json(self) -> Path:
        return self.state_dir / LAB_JSON

    def start(self) -> Lab:
        """Serve; returns once every listener accepts connections and lab.json says ready."""
        with self._lock:
            if self.running:
                return self
            from psbridge.lab.world import SERVICE_ACCOUNTS, TOOLS_FOLDER, World

            self.state_dir.mkdir(parents=True, exist_ok=True)
            if not self._ports:
                self._ports = self._previous_ports()
            world = World.seed(self.state_dir, self.servers, self.orgs, self.legacy_servers)
            ca = LabCA.load_or_create(self.state_dir)
            # The world's Windows accounts (DOMAIN\name -> their rights) sign in with these passwords.
            users: dict[str, dict[str, bool]] = world.data["accounts"]
            names = {user.partition("\\")[2]: user for user in users}
            passwords = account_passwords(self.state_dir, list(names))
            try:
                cloud = self._start_twin(ca)
                accounts = {names[name]: pw for name, pw in passwords.items()}
                servers = []
                for name in world.server_names():
                    endpoints = []
                    for scheme in SCHEMES:
                        tls = ca.server_certificate(name.lower()) if scheme == "https" else None
                        ep = self._listen(EndpointSpec(server=name, scheme=scheme, accounts=accounts,
                                                       state_dir=self.state_dir, cloud=cloud, host=self.host,
                                                       tls=tls))
                        endpoints.append(LabEndpoint(scheme=scheme, host=self.host, port=ep.port))
                    servers.append(LabServer(name=name, roles=world.server_roles(name),
                                             script_generation=world.server_generation(name),
                                             endpoints=endpoints))
                web = self._start_web(world, ca, accounts)
            except BaseException:
                self._stop_parts()
                raise
            self._config = LabConfig(
                state_dir=str(self.state_dir),
                ready=True,
                pid=os.getpid(),
                ca_bundle=str(ca.bundle_path),
                domain=world.data["domain"],
                accounts=[
                    LabAccount(name=name, user=user, password_ref=f"lab:accounts/{name}",
                               roles=_roles(users[user]))
                    for name, user in names.items()
                ],
                service_account=SERVICE_ACCOUNTS[0],  # the CRM Asynchronous Processing Service's
                tools_folder=TOOLS_FOLDER,
                servers=servers,
                organizations=[
                    LabOrganization(name=o["name"], friendly_name=o.get("friendly_name", ""), id=o["id"])
                    for o in world.organizations()
                ],
                entra=self.twin.describe() if self.twin is not None else None,
                webapi=web,
            )
            self._config.save(self.lab_json)
            return self

    def _start_twin(self, ca: LabCA) -> CloudEndpoints:
        if not self.cloud:
            # The servers' scripts then fail as a server without internet access does.
            return CloudEndpoints(login=None, graph=None)
        from psbridge.lab.entra import start_twin

        twin_dir = self.state_dir / "entra"
        previous = (self._ports.get(("entra", "login"), 0), self._ports.get(("entra", "graph"), 0))
        try:
            self.twin = start_twin(twin_dir, ca, host=self.host, ports=previous)
        except OSError:  # a previous port is taken meanwhile
            self.twin = start_twin(twin_dir, ca, host=self.host)
        d = self.twin.describe()
        self._ports[("entra", "login")] = _port(d["login_url"])
        self._ports[("entra", "graph")] = _port(d["graph_url"])
        return CloudEndpoints(login=d["login_url"], graph=d["graph_url"], ca_bundle=d["ca_bundle"])

    def _web_deployment(self, world: Any) -> str:
        """This start's Web API deployment: as asked, else as the state directory's lab last served."""
        kept = str(world.data["deployment"].get("web_deployment") or "")
        wanted = self.webapi or kept or DEFAULT_WEB_DEPLOYMENT
        if wanted != kept:
            with world.change() as data:
                data["deployment"]["web_deployment"] = wanted
        return wanted

    def _start_web(self, world: Any, ca: LabCA, accounts: dict[str, str]) -> dict[str, Any] | None:
        """The organizations' Web API (and AD FS for an IFD); what lab.json records of them."""
        kind = self._web_deployment(world)
        if kind == "off":
            return None
        from psbridge.lab.adfs import (
            LAB_CLIENT_ID,
            LAB_CLIENT_NAME,
            LAB_CONFIDENTIAL_CLIENT_ID,
            LAB_CONFIDENTIAL_SECRET_REF,
            LAB_REDIRECT_URI,
            TokenInvalid,
            farm,
            start_adfs,
        )
        from psbridge.lab.entra.directory import DEFAULT_DOMAIN
        from psbridge.lab.runspace import default_pace
        from psbridge.lab.webapi import WebApiSpec, directory_snapshot, start_webapi
        from psbridge.lab.webapi.service import TokenRefused
        from psbridge.lab.world import SERVICE_ACCOUNTS

        verifier = None
        authorization_uri = ""
        if kind == "ifd":
            adfs_dir = self.state_dir / "adfs"
            previous = self._ports.get(("adfs", "https"), 0)
            try:
                self.adfs = start_adfs(adfs_dir, ca, accounts, host=self.host, port=previous)
            except OSError:  # the previous port is taken meanwhile
                self.adfs = start_adfs(adfs_dir, ca, accounts, host=self.host)
            self._ports[("adfs", "https")] = self.adfs.port
            adfs = self.adfs

            def verify(token: str, audience: str) -> dict[str, Any]:
                try:
                    return adfs.verify(token, audience)
                except TokenInvalid as e:
                    raise TokenRefused(str(e)) from None

            verifier = verify
            authorization_uri = f"{adfs.authority}/oauth2/authorize"
        ports = {name.partition(":")[2]: port for (group, name), port in self._ports.items()
                 if group == "webapi"}
        directory = self.twin.directory if self.twin is not None else None
        self.web = start_webapi(WebApiSpec(
            state_dir=self.state_dir, ca=ca, accounts=accounts, deployment="ad" if kind == "ad" else "ifd",
            host=self.host, ports=ports, verifier=verifier, authorization_uri=authorization_uri,
            directory=directory_snapshot(directory),
            tenant_domain=self.twin.tenant_domain if self.twin is not None else DEFAULT_DOMAIN,
            service_account=SERVICE_ACCOUNTS[0], pace=default_pace(),
        ))
        for name, port in self.web.ports.items():
            self._ports[("webapi", f"webapi:{name}")] = port
        described = self.web.describe()
        if self.adfs is not None:
            # What the IFD configuration and Add-AdfsClient leave on AD FS: the organizations' relying
            # party, and the client psbridge signs in as.
            farm.add_relying_party(self.adfs.state_dir, "Microsoft Dynamics CRM",
                                   [self.web.service.resource(o) for o in self.web.service.org_urls])
            farm.add_client(self.adfs.state_dir, LAB_CLIENT_ID, LAB_CLIENT_NAME, LAB_REDIRECT_URI)
            # And a confidential one (Add-AdfsClient -GenerateClientSecret) for username and password
            # sign-in, its secret in the lab secret store.
            secret = lab_secret(self.state_dir, LAB_CONFIDENTIAL_SECRET_REF)
            farm.add_client(self.adfs.state_dir, LAB_CONFIDENTIAL_CLIENT_ID,
                            f"{LAB_CLIENT_NAME} (unattended)", LAB_REDIRECT_URI, secret=secret)
            described["adfs"] = self.adfs.describe()
        return described

    def _previous_ports(self) -> dict[tuple[str, str], int]:
        try:
            previous = LabConfig.load(self.lab_json)
        except (LabConfigError, ValueError):
            return {}
        ports: dict[tuple[str, str], int] = {
            (s.name, e.scheme): e.port for s in previous.servers for e in s.endpoints if e.host == self.host
        }
        if previous.entra:
            ports[("entra", "login")] = _port(previous.entra.get("login_url", ""))
            ports[("entra", "graph")] = _port(previous.entra.get("graph_url", ""))
        web = getattr(previous, "webapi", None) or {}
        for name, port in (web.get("ports") or {}).items():
            ports[("webapi", f"webapi:{name}")] = int(port)
        if web.get("adfs"):
            ports[("adfs", "https")] = _port(web["adfs"].get("authority", ""))
        return {k: v for k, v in ports.items() if v}

    def _listen(self, spec: EndpointSpec) -> Endpoint:
        key = (spec.server, spec.scheme)
        ep = None
        if key in self._ports:
            with contextlib.suppress(OSError):  # taken meanwhile: any free port will do
                ep = start_endpoint(dataclasses.replace(spec, port=self._ports[key]))
        if ep is None:
            ep = start_endpoint(spec)
        self._endpoints[key] = ep
        self._ports[key] = ep.port
        return ep

    def _stop_parts(self) -> None:
        parts: list[Any] = [*self._endpoints.values()]
        for part in (self.twin, self.web, self.adfs):
            if part is not None:
                parts.append(part)
        # Each listener takes up to one poll interval to notice: stop them all at once.
        stoppers = [threading.Thread(target=part.stop, name=f"lab-stop-{i}") for i, part in enumerate(parts)]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        self._endpoints.clear()
        self.twin = None
        self.web = None
        self.adfs = None

    def stop(self) -> None:
        """Stop every listener and mark lab.json not ready; the state stays on disk."""
        with self._lock:
            was_running = self.running
            self._stop_parts()
            if was_running and self._config is not None:
                self._config = self._config.model_copy(update={"ready": False})
                with contextlib.suppress(OSError):
                    self._config.save(self.lab_json)

    def restart(self) -> Lab:
        """Stop and start on the same state; the same ports when they are still free."""
        with self._lock:
            self.stop()
            return self.start()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ----------------------------------------------------------------------------

    def _server_name(self, server: str) -> str:
        try:
            return self.config.server(server).name
        except LabConfigError as e:
            raise LabError(str(e)) from None

    def set_faults(self, server: str, **knobs: Any) -> faults.Faults:
        """Faults for one server (``drop_after``, ``delay``, ``fail_commands``, ``deny_auth``)."""
        return faults.set_faults(self.state_dir, self._server_name(server), **knobs)

    def clear_faults(self, server: str | None = None) -> None:
        faults.clear_faults(self.state_dir, self._server_name(server) if server else None)

    # --- conveniences ----------------------------------------------------------------------

    def url(self, server: str = "CRM01", scheme: str = "http") -> str:
        return self.config.endpoint(server, scheme).url

    def password(self, account: str = "crmadmin") -> secrets.Secret:
        return self.config.password(account)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Lab {self.state_dir} {state}>"
