"""``lab.json``: what a running lab offers, so tools, tests and the demo connect without guessing.

The orchestrator writes it (atomically) into the state directory when the lab is serving and
marks it ``ready: false`` when the lab stops. The accounts' passwords are not in it: they are
lab secrets, random per state directory, kept in the lab secret store and named by their
reference (``password_ref``); :meth:`LabConfig.password` reads one as a masked
:class:`~psbridge.secrets.Secret`. A file anyone may display, copy into a record or paste into
an issue then holds nothing to hide.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from psbridge.errors import LabConfigError as LabConfigError  # re-exported for its callers
from psbridge.files import write_atomic
from psbridge.secrets import Secret

LAB_JSON = "lab.json"
VERSION = 1


_ENV_LOCK = threading.RLock()


@contextlib.contextmanager
def lab_secret_store(state_dir: Path) -> Iterator[None]:
    """Make ``lab:`` references resolve against ``state_dir`` for the duration of the block.

    The lab secret store follows ``PSBRIDGE_LAB_STATE``; a lab started for another directory
    than the current one must still keep its passwords in its own store.
    """
    with _ENV_LOCK:
        before = os.environ.get("PSBRIDGE_LAB_STATE")
        os.environ["PSBRIDGE_LAB_STATE"] = str(state_dir)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PSBRIDGE_LAB_STATE", None)
            else:
                os.environ["PSBRIDGE_LAB_STATE"] = before


class LabEndpoint(BaseModel):
    """One WinRM listener of a lab server."""

    model_config = ConfigDict(extra="allow")

    scheme: Literal["http", "https"]
    host: str = "127.0.0.1"
    port: int
    path: str = "/wsman"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


class LabAccount(BaseModel):
    """A lab Windows account: its name and the reference of its password, never the value."""

    model_config = ConfigDict(extra="ignore")  # a "password" of an older lab.json is dropped

    name: str
    user: str
    password_ref: str
    roles: list[str] = Field(default_factory=list)


class LabServer(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    roles: list[str] = Field(default_factory=list)
    script_generation: str = "current"  # "current" or "legacy" (no -ClientID/-ClientSecret)
    endpoints: list[LabEndpoint] = Field(default_factory=list)

    def endpoint(self, scheme: str = "http") -> LabEndpoint:
        for e in self.endpoints:
            if e.scheme == scheme.lower():
                return e
        raise LabConfigError(f"lab server {self.name} has no {scheme} endpoint")


class LabOrganization(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    friendly_name: str = ""
    id: str


class LabConfig(BaseModel):
    """The content of ``<state>/lab.json``."""

    model_config = ConfigDict(extra="allow")

    version: int = VERSION
    state_dir: str
    ready: bool = False
    pid: int | None = None
    ca_bundle: str
    domain: str = "LAB"
    accounts: list[LabAccount] = Field(default_factory=list)
    service_account: str
    tools_folder: str
    servers: list[LabServer] = Field(default_factory=list)
    organizations: list[LabOrganization] = Field(default_factory=list)
    entra: dict[str, Any] | None = None
    # The organizations' Web API: deployment (ad | ifd), each organization's URL, discovery, the
    # client-certificate site and, for an IFD, AD FS (authority, the registered client).
    webapi: dict[str, Any] | None = None

    # --- files -----------------------------------------------------------------------------

    @staticmethod
    def path_for(path_or_state_dir: Path | str) -> Path:
        p = Path(path_or_state_dir).expanduser()
        return p if p.suffix.lower() == ".json" else p / LAB_JSON

    @classmethod
    def load(cls, path_or_state_dir: Path | str) -> LabConfig:
        path = cls.path_for(path_or_state_dir)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabConfigError(
                f"no lab description at {path}: start the lab with 'psbridge lab up'"
            ) from None
        except json.JSONDecodeError as e:
            raise LabConfigError(f"{path} is not a lab description: {e.msg}") from None
        if not isinstance(data, dict):
            raise LabConfigError(f"{path} is not a lab description")
        if data.get("version", VERSION) != VERSION:
            raise LabConfigError(f"{path} has version {data.get('version')}, this psbridge reads {VERSION}")
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: dict[str, Any], where: str = "the lab description") -> LabConfig:
        """A lab description from its parsed JSON, or LabConfigError naming what is missing."""
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as e:
            fields = ", ".join(".".join(str(p) for p in err["loc"]) for err in e.errors())
            raise LabConfigError(f"{where} is not a lab description (check: {fields})") from None

    def save(self, path: Path | None = None) -> Path:
        """Write atomically: a reader in another process sees the old file or the new one."""
        target = path or self.path_for(self.state_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only, as every file of the lab's state.
        return write_atomic(target, json.dumps(self.model_dump(mode="json"), indent=2), private=True)

    # --- look-ups --------------------------------------------------------------------------

    def server(self, name: str) -> LabServer:
        for s in self.servers:
            if s.name.lower() == name.lower():
                return s
        known = ", ".join(s.name for s in self.servers) or "none"
        raise LabConfigError(f"the lab has no server {name!r} (servers: {known})")

    def endpoint(self, server: str, scheme: str = "http") -> LabEndpoint:
        return self.server(server).endpoint(scheme)

    def account(self, name: str) -> LabAccount:
        wanted = name.lower()
        for a in self.accounts:
            if wanted in (a.name.lower(), a.user.lower()):
                return a
        known = ", ".join(a.name for a in self.accounts) or "none"
        raise LabConfigError(f"the lab has no account {name!r} (accounts: {known})")

    def password(self, account: str) -> Secret:
        """The account's password, read from this lab's secret store, masked until revealed."""
        from psbridge.secrets import SecretError, resolve

        ref = self.account(account).password_ref
        try:
            with lab_secret_store(Path(self.state_dir)):
                return resolve(ref)
        except SecretError as e:
            raise LabConfigError(f"the password of lab account {account} is not in its store ({e})") from None

    def organization(self, name_or_id: str) -> LabOrganization:
        wanted = name_or_id.lower()
        for o in self.organizations:
            if wanted in (o.name.lower(), o.id.lower()):
                return o
        known = ", ".join(o.name for o in self.organizations) or "none"
        raise LabConfigError(f"the lab has no organization {name_or_id!r} (organizations: {known})")

    def web_url(self, organization: str) -> str:
        """The organization's URL on the lab's CRM web site (its Web API is ``<url>/api/data/v9.0``)."""
        web = self.webapi or {}
        urls = {k.lower(): v for k, v in (web.get("organizations") or {}).items()}
        if organization.lower() not in urls:
            if not web:
                raise LabConfigError("the lab serves no CRM Web API (it was started with --webapi off)")
            raise LabConfigError(f"the lab's CRM web site has no organization {organization!r} "
                                 f"(organizations: {', '.join(urls) or 'none'})")
        return str(urls[organization.lower()])

    def __repr__(self) -> str:
        servers = [s.name for s in self.servers]
        orgs = [o.name for o in self.organizations]
        return (f"LabConfig(state_dir={self.state_dir!r}, ready={self.ready}, pid={self.pid}, "
                f"servers={servers}, organizations={orgs})")
