"""How to reach one server's PowerShell endpoint: a :class:`ConnectionProfile`.

A profile is data a runbook can write down (YAML, a notebook parameter, a manifest): the
password is a secret *reference*, resolved only when a session opens. The profile refuses
combinations a careful administrator would refuse — credentials or payloads in clear text on
the wire, certificate validation quietly off — at construction, before any connection.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from psbridge.remote.errors import ProfileError
from psbridge.secrets import Secret, SecretError, SecretRef

log = logging.getLogger(__name__)

Auth = Literal["negotiate", "kerberos", "ntlm", "credssp", "basic"]
Scheme = Literal["http", "https"]

DEFAULT_PORTS = {"http": 5985, "https": 5986}
# Auth methods that can seal the message body themselves (SPNEGO/CredSSP wrapping), so HTTP
# is acceptable with them as long as message encryption stays on.
_SEALING_AUTHS = {"negotiate", "kerberos", "ntlm"}


class ConnectionProfile(BaseModel):
    """Where and how to open a PowerShell runspace pool on a Windows server.

    ``password`` is a secret reference (``env:``, ``file:``, ``keyring:``, ``lab:``), never a
    value. Timeouts are in seconds: ``connection_timeout`` to connect, ``read_timeout`` for one
    HTTP answer, ``operation_timeout`` for one WS-Management operation (a Receive waits at most
    this long on the server), ``command_timeout`` the default for one whole command.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    scheme: Scheme = "https"
    path: str = "wsman"
    auth: Auth = "negotiate"
    user: str | None = None
    password: str | None = Field(default=None, description="secret reference, e.g. env:CRM_PASSWORD")
    message_encryption: bool = True
    cert_validation: bool = True
    ca_bundle: Path | None = None
    connection_timeout: float = Field(default=30.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    operation_timeout: int = Field(default=20, ge=1)
    command_timeout: float | None = Field(default=900.0, gt=0)
    configuration_name: str = "Microsoft.PowerShell"
    proxy: str | None = None
    name: str | None = Field(default=None, description="the server's name in the deployment (CRM01)")

    @field_validator("password")
    @classmethod
    def _password_is_a_reference(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(SecretRef.parse(v))
        except SecretError:
            # The text may be the password itself: say nothing about it.
            raise ValueError(
                "password must be a secret reference such as env:NAME, file:PATH, "
                "keyring:SERVICE/NAME or lab:NAME, not the password itself"
            ) from None

    @field_validator("path")
    @classmethod
    def _strip_slashes(cls, v: str) -> str:
        return v.strip("/") or "wsman"

    @model_validator(mode="after")
    def _refuse_clear_text(self) -> ConnectionProfile:
        if self.scheme == "http":
            if self.auth == "basic":
                raise ValueError(
                    "Basic authentication over HTTP would send the password in clear text; "
                    "use scheme https, or negotiate/ntlm/kerberos with message encryption"
                )
            if self.auth == "credssp":
                raise ValueError(
                    "CredSSP delegates the user's credentials to the server; over HTTP that is refused, "
                    "use scheme https"
                )
            if not self.message_encryption:
                raise ValueError(
                    "HTTP without message encryption would send every command and result in clear text; "
                    "keep message_encryption on or use https"
                )
            if self.auth not in _SEALING_AUTHS:  # pragma: no cover - Literal covers it
                raise ValueError(f"auth {self.auth} cannot encrypt messages over HTTP")
        if self.ca_bundle is not None and not self.cert_validation:
            raise ValueError("ca_bundle is given but cert_validation is off: choose one")
        if (self.user is None) != (self.password is None) and self.auth != "kerberos":
            raise ValueError("give both user and password (as a secret reference), or neither for kerberos")
        return self

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            raise ProfileError(_plain_validation_message(e)) from None
        if not self.cert_validation and self.scheme == "https":
            # Explicit and recorded: the session journal repeats it, so it lands in the evidence.
            log.warning(
                "certificate validation is OFF for %s: the server's identity is not checked", self.endpoint
            )

    # --- derived -----------------------------------------------------------------------------

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{self.host}:{self.effective_port}/{self.path}"

    @property
    def server(self) -> str:
        """The name to show for this server (its deployment name if known, else the host)."""
        return self.name or self.host

    @property
    def security_notes(self) -> list[str]:
        """Deliberate weakenings of the defaults, in words an auditor reads."""
        notes = []
        if self.scheme == "https" and not self.cert_validation:
            notes.append("certificate validation OFF: the server's TLS identity is not verified")
        return notes

    def describe(self) -> dict[str, Any]:
        """What to write into a record: no secret values, the password as its reference."""
        return {
            "server": self.server,
            "endpoint": self.endpoint,
            "auth": self.auth,
            "user": self.user,
            "password": self.password,
            "message_encryption": self.scheme == "http" or None,
            "cert_validation": self.cert_validation if self.scheme == "https" else None,
            "ca_bundle": str(self.ca_bundle) if self.ca_bundle else None,
            "security_notes": self.security_notes,
        }

    def resolve_password(self) -> Secret | None:
        return SecretRef.parse(self.password).resolve() if self.password else None

    def wsman_kwargs(self, password: Secret | None) -> dict[str, Any]:
        """Keyword arguments for :class:`pypsrp.wsman.WSMan` (the password revealed here only)."""
        if self.scheme == "https":
            verify: bool | str = str(self.ca_bundle) if self.ca_bundle else self.cert_validation
        else:
            verify = True
        kwargs: dict[str, Any] = {
            "server": self.host,
            "port": self.effective_port,
            "path": self.path,
            "ssl": self.scheme == "https",
            "auth": self.auth,
            "username": self.user,
            "password": password.reveal() if password is not None else None,
            "cert_validation": verify,
            "encryption": "always" if self.scheme == "http" else "auto",
            "connection_timeout": self.connection_timeout,
            "read_timeout": self.read_timeout,
            "operation_timeout": self.operation_timeout,
        }
        if self.proxy:
            kwargs["proxy"] = self.proxy
        else:
            # A consultant's laptop often has a corporate proxy in its environment; WinRM to a
            # server inside the customer network must not be sent there unless asked.
            kwargs["no_proxy"] = True
        return kwargs

    # --- constructors ------------------------------------------------------------------------

    @classmethod
    def from_lab(
        cls,
        lab: str | Path | Any,
        server: str = "CRM01",
        scheme: Scheme = "http",
        account: str = "crmadmin",
        **overrides: Any,
    ) -> ConnectionProfile:
        """A profile for one of the embedded lab's servers, from ``lab.json`` or its config."""
        data = _lab_data(lab)
        if data.get("ready") is False:
            where = data.get("state_dir", lab)
            raise ProfileError(f"the lab in {where} is not running: start it with psbridge lab up")
        servers = {s["name"].lower(): s for s in data.get("servers", [])}
        entry = servers.get(server.lower())
        if entry is None:
            known = ", ".join(s["name"] for s in data.get("servers", [])) or "none"
            raise ProfileError(f"the lab has no server {server!r} (servers: {known})")
        endpoint = next((e for e in entry.get("endpoints", []) if e.get("scheme") == scheme), None)
        if endpoint is None:
            raise ProfileError(f"lab server {entry['name']} has no {scheme} endpoint")
        accounts = {a["name"]: a for a in data.get("accounts", [])}
        if account not in accounts:
            raise ProfileError(f"the lab has no account {account!r} (accounts: {', '.join(accounts)})")
        acct = accounts[account]
        fields: dict[str, Any] = {
            "name": entry["name"],
            "host": endpoint.get("host", "127.0.0.1"),
            "port": endpoint["port"],
            "path": endpoint.get("path", "/wsman"),
            "scheme": scheme,
            "auth": "ntlm",
            "user": acct["user"],
            "password": acct.get("password_ref") or f"lab:accounts/{account}",
        }
        if scheme == "https" and data.get("ca_bundle"):
            fields["ca_bundle"] = Path(data["ca_bundle"])
        fields.update(overrides)
        return cls(**fields)


def _lab_data(lab: str | Path | Any) -> dict[str, Any]:
    if isinstance(lab, dict):
        return lab
    if isinstance(lab, str | Path):
        p = Path(lab)
        if p.is_dir():
            p = p / "lab.json"
        try:
            loaded = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProfileError(f"no lab description at {p} (is the lab up?)") from None
        if not isinstance(loaded, dict):
            raise ProfileError(f"{p} is not a lab description")
        return loaded
    if hasattr(lab, "model_dump"):
        dumped = lab.model_dump(mode="json")
        return dumped if isinstance(dumped, dict) else {}
    config = getattr(lab, "config", None)
    if config is not None:
        return _lab_data(config)
    raise ProfileError(f"cannot read a lab description from {type(lab).__name__}")


def _plain_validation_message(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "invalid connection profile: " + "; ".join(parts)
    return f"invalid connection profile: {e}"
