"""How to reach one server's PowerShell endpoint: a :class:`ConnectionProfile`.

A profile is data a runbook can write down (YAML, a notebook parameter, a manifest): the
password is a secret *reference*, resolved only when a session opens. The profile refuses
combinations a careful administrator would refuse — credentials or payloads in clear text on
the wire, certificate validation quietly off — at construction, before any connection.

"At construction" means by every route pydantic offers, not only the constructor: pydantic's
``model_copy``, ``model_construct`` (and their deprecated ``copy``/``construct``) skip validation
by design, which would let ``profile.model_copy(update={"scheme": "http", "auth": "basic"})``
make exactly the profile this class exists to refuse. Here they validate like the
constructor, and every route (``model_validate``, ``model_validate_json``,
``model_validate_strings``, the deprecated ``parse_*``, unpickling, assignment) raises
:class:`~psbridge.remote.errors.ProfileError` whose message never repeats an input value,
since the input may hold a password. Validated as a field of another model or through a
``TypeAdapter``, the same checks run and the error is that validation's ``ValidationError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from psbridge.remote.errors import ProfileError
from psbridge.secrets import Secret, SecretError, SecretRef

log = logging.getLogger(__name__)

T = TypeVar("T")

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

    # revalidate_instances: a profile passed where one is validated (a field, a TypeAdapter) is
    # checked again, so one altered behind pydantic's back is refused there too.
    # hide_input_in_errors: the input may hold a password.
    model_config = ConfigDict(frozen=True, extra="forbid", revalidate_instances="always",
                              hide_input_in_errors=True)

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
        # pydantic validates through this __init__ on every validating route (a custom __init__
        # makes it so), so the warning below is given whichever way a profile is made.
        _checked(lambda: super(ConnectionProfile, self).__init__(**data))
        if not self.cert_validation and self.scheme == "https":
            # Explicit and recorded: the session journal repeats it, so it lands in the evidence.
            log.warning(
                "certificate validation is OFF for %s: the server's identity is not checked", self.endpoint
            )

    # --- every other way pydantic makes or changes one ----------------------------------------

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        return _checked(lambda: super(ConnectionProfile, cls).model_validate(obj, *args, **kwargs))

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        return _checked(lambda: super(ConnectionProfile, cls).model_validate_json(json_data, *args, **kwargs))

    @classmethod
    def model_validate_strings(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        return _checked(lambda: super(ConnectionProfile, cls).model_validate_strings(obj, *args, **kwargs))

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """Validated like the constructor (pydantic's skips validation: trusted data only)."""
        return cls._made(values, set(values) if _fields_set is None else set(_fields_set))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, validated like a new profile: ``update`` cannot make it unsafe."""
        return self._revalidated(super().model_copy(update=update, deep=deep))

    def copy(self, *args: Any, **kwargs: Any) -> Self:  # pydantic's deprecated v1 API, still public
        return self._revalidated(super().copy(*args, **kwargs))

    def __setstate__(self, state: dict[Any, Any]) -> None:
        # Unpickling sets the fields without validation: check what arrived.
        super().__setstate__(state)
        self._revalidated(self)

    def __setattr__(self, name: str, value: Any) -> None:
        # pydantic's own refusal (frozen) would repeat the value, which may be a password.
        raise ProfileError(
            f"a connection profile cannot be changed (field {name}): make another with "
            "model_copy(update=...), which checks it"
        )

    def __delattr__(self, name: str) -> None:
        raise ProfileError(f"a connection profile cannot be changed (field {name})")

    def _revalidated(self, candidate: ConnectionProfile) -> Self:
        return type(self)._made(dict(candidate.__dict__), set(candidate.model_fields_set))

    @classmethod
    def _made(cls, values: dict[str, Any], fields_set: set[str]) -> Self:
        profile = cls(**values)
        object.__setattr__(profile, "__pydantic_fields_set__", fields_set)
        return profile

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
        """A profile for one of the embedded lab's servers: its ``lab.json`` (a state directory or the
        file), its :class:`~psbridge.lab.config.LabConfig`, or a started lab."""
        from psbridge.lab.config import LabConfig, LabConfigError

        try:
            config = lab if isinstance(lab, LabConfig) else getattr(lab, "config", None)
            if not isinstance(config, LabConfig):
                config = LabConfig.parse(lab) if isinstance(lab, dict) else LabConfig.load(lab)
            if not config.ready:
                raise ProfileError(f"the lab in {config.state_dir} is not running: start it with "
                                   "psbridge lab up")
            endpoint = config.endpoint(server, scheme)
            acct = config.account(account)
        except LabConfigError as e:
            raise ProfileError(str(e)) from None
        fields: dict[str, Any] = {
            "name": config.server(server).name, "host": endpoint.host, "port": endpoint.port,
            "path": endpoint.path, "scheme": scheme, "auth": "ntlm", "user": acct.user,
            "password": acct.password_ref,
        }
        if scheme == "https" and config.ca_bundle:
            fields["ca_bundle"] = Path(config.ca_bundle)
        fields.update(overrides)
        return cls(**fields)


def _checked(make: Callable[[], T]) -> T:
    """Run a pydantic entry point; a ValidationError becomes a ProfileError.

    Raised outside the ``except`` block so that the ProfileError carries no context: the
    ValidationError holds the input, and the input may hold a password.
    """
    try:
        return make()
    except ValidationError as e:
        error = _profile_error(e)
    raise error


def _profile_error(e: ValidationError) -> ProfileError:
    """The checks' own words (never the input): a ProfileError raised inside, or pydantic's messages."""
    errors = e.errors(include_url=False, include_input=False)
    inner = [err.get("ctx", {}).get("error") for err in errors]
    if len(inner) == 1 and isinstance(inner[0], ProfileError):
        return ProfileError(str(inner[0]))
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return ProfileError("invalid connection profile: " + "; ".join(parts))
