"""Test helpers for the lab's commands: a recording CommandContext, PFX files, a runner."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psrpcore.types as pst
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from psbridge.lab.commands import run_pipeline
from psbridge.lab.commands.objects import get_property
from psbridge.lab.runspace import CloudEndpoints, ErrorRecord, Invocation, TerminatingError

TOOLS = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
SYNC = f"{TOOLS}\\ConfigureCrmServerSideSync.ps1"
RECONFIGURE = f"{TOOLS}\\CertificateReconfiguration.ps1"


@dataclass
class Recorder:
    """A CommandContext that keeps everything a command writes."""

    state_dir: Path
    server: str = "CRM01"
    user: str = "LAB\\crmadmin"
    cloud: CloudEndpoints = field(default_factory=lambda: CloudEndpoints(None, None))
    variables: dict[str, Any] = field(default_factory=dict)
    fail_commands: dict[str, str] = field(default_factory=dict)
    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    host: list[tuple[str, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopping: bool = False
    stop_when: str | None = None  # the client stops the pipeline once this host line is written
    pace: float = 0.0
    waited: float = 0.0  # what the commands asked to wait, in seconds (never really waited)

    def write_output(self, value: Any) -> None:
        self.output.append(value)

    def write_error(self, record: ErrorRecord) -> None:
        self.errors.append(record)

    def write_warning(self, message: str) -> None:
        self.warnings.append(message)

    def write_verbose(self, message: str) -> None:
        pass

    def write_debug(self, message: str) -> None:
        pass

    def write_information(self, message_data: Any, source: str = "", tags: list[str] | None = None) -> None:
        self.host.append((str(message_data), None))

    def write_host(
        self,
        text: str,
        foreground: str | None = None,
        background: str | None = None,
        no_newline: bool = False,
    ) -> None:
        self.host.append((text, foreground))
        if self.stop_when is not None and text == self.stop_when:
            self.stopping = True

    def write_progress(
        self, activity: str, status: str, percent_complete: int = -1, activity_id: int = 0
    ) -> None:
        pass

    def is_stopping(self) -> bool:
        return self.stopping

    def wait(self, seconds: float) -> bool:
        self.waited += seconds
        return self.stopping

    # --- conveniences for tests ---------------------------------------------------------------

    def clear(self) -> None:
        self.output.clear()
        self.errors.clear()
        self.host.clear()

    @property
    def messages(self) -> list[str]:
        return [t for t, _ in self.host]


def cmd(name: str, *positional: Any, **named: Any) -> Invocation:
    params: list[tuple[str | None, Any]] = [(None, v) for v in positional]
    params += [(k, v) for k, v in named.items()]
    return Invocation(name, params)


def run(
    ctx: Recorder, *statements: Invocation | list[Invocation], input: list[Any] | None = None
) -> Recorder:
    """Run statements (an Invocation, or a list of them for a pipeline); raise on a terminating error."""
    ctx.clear()
    run_pipeline(ctx, [s if isinstance(s, list) else [s] for s in statements], input)
    return ctx


def fails(ctx: Recorder, *statements: Invocation | list[Invocation]) -> ErrorRecord:
    """Run statements that must end with a terminating error; return its record."""
    ctx.clear()
    try:
        run_pipeline(ctx, [s if isinstance(s, list) else [s] for s in statements], None)
    except TerminatingError as e:
        return e.record
    raise AssertionError(f"no terminating error; output {ctx.output}, errors {ctx.errors}")


def prop(obj: Any, name: str) -> Any:
    return get_property(obj, name)


def secure(text: str) -> pst.PSSecureString:
    """A SecureString as the transport hands it over (psrpcore decrypts with the session key)."""
    return pst.PSSecureString(text)


def make_pfx(
    password: str,
    subject: str = "CN=psbridge lab test",
    *,
    days: int = 365,
    not_before: dt.datetime | None = None,
    with_key: bool = True,
) -> bytes:
    """A self-signed RSA 2048 certificate with its key, as a password-protected PFX."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject.removeprefix("CN="))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)
        .sign(key, hashes.SHA256())
    )
    enc = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    return pkcs12.serialize_key_and_certificates(b"s2s", key if with_key else None, cert, None, enc)


def register_app(twin: Any, roles: tuple[str, ...] = ("Application.ReadWrite.All", "Organization.Read.All"),
                 name: str = "psbridge S2S setup") -> tuple[str, str]:
    """Arrange, in the twin's tenant, an app with a client secret and these Graph roles consented."""
    import secrets as pysecrets
    import uuid

    from psbridge.lab.entra.directory import graph_time, now_utc

    secret = pysecrets.token_urlsafe(24)
    app_id, key_id = str(uuid.uuid4()), str(uuid.uuid4())
    d = twin.directory
    with d.change() as data:
        start = now_utc()
        data["applications"].append({
            "id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "signInAudience": "AzureADMyOrg",
            "keyCredentials": [], "requiredResourceAccess": [], "identifierUris": [],
            "passwordCredentials": [{"keyId": key_id, "displayName": "test", "hint": secret[:3],
                                     "customKeyIdentifier": None, "startDateTime": graph_time(start),
                                     "endDateTime": graph_time(start + dt.timedelta(days=30))}],
        })
        sp = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": name, "accountEnabled": True,
              "servicePrincipalType": "Application", "servicePrincipalNames": [app_id], "appRoles": [],
              "keyCredentials": [], "passwordCredentials": [], "tags": []}
        data["servicePrincipals"].append(sp)
        d.add_password_hash(key_id, secret)
        graph_app = "00000003-0000-0000-c000-000000000000"
        graph = next(s for s in data["servicePrincipals"] if s["appId"] == graph_app)
        for role in graph["appRoles"]:
            if role["value"] in roles:
                data["appRoleAssignments"].append({
                    "id": pysecrets.token_urlsafe(32)[:43], "appRoleId": role["id"], "principalId": sp["id"],
                    "resourceId": graph["id"], "principalType": "ServicePrincipal",
                    "principalDisplayName": name, "resourceDisplayName": "Microsoft Graph",
                    "createdDateTime": graph_time(start), "deletedDateTime": None})
    return app_id, secret


def crm_key_credentials(twin: Any) -> list[dict[str, Any]]:
    sp = twin.directory.sp_by_app_id("00000007-0000-0000-c000-000000000000")
    return list(sp["keyCredentials"])
