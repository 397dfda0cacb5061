"""May the Asynchronous Processing Service's account read the S2S certificate's private key?

Read as an operator reads it, with three fixed commands and typed parameters (no script text):

- ``Get-CimInstance -ClassName Win32_Service -Filter <the two CRM async services>``: the
  account each runs as (``StartName``);
- ``certutil.exe -store My <thumbprint>``: the key's "Unique container name" and provider, which
  say the key file: a CNG key under ``...\\Crypto\\Keys``, a CAPI one under ``...\\RSA\\MachineKeys``
  (certutil names both kinds; ``X509Certificate2.PrivateKey`` fails on a CNG key);
- ``Get-Acl -LiteralPath <file> | Select-Object -ExpandProperty Access``: the file's rules, one
  typed object each (``IdentityReference``, ``FileSystemRights``, ``AccessControlType``).

CertificateReconfiguration.ps1 grants the account read on that file; without it Test & Enable
fails with "Keyset does not exist".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Any

from psbridge.errors import UnexpectedOutput
from psbridge.remote.command import Cmd
from psbridge.remote.session import Session

ASYNC_SERVICES = ("MSCRMAsyncService", "MSCRMAsyncService$maintenance")
# A constant, not built from input: the two service names above.
SERVICE_FILTER = " OR ".join(f"Name='{name}'" for name in ASYNC_SERVICES)
CNG_FOLDER = PureWindowsPath(r"C:\ProgramData\Microsoft\Crypto\Keys")
CAPI_FOLDER = PureWindowsPath(r"C:\ProgramData\Microsoft\Crypto\RSA\MachineKeys")
_CONTAINER = re.compile(r"^\s*Unique container name:\s*(\S.*?)\s*$", re.IGNORECASE)
_PROVIDER = re.compile(r"^\s*Provider\s*=\s*(\S.*?)\s*$", re.IGNORECASE)

# Rights that include ReadData, by FileSystemRights name; and the bits meaning it.
_READING_RIGHTS = frozenset({"readdata", "listdirectory", "read", "readandexecute", "modify", "fullcontrol"})
_READ_DATA, _GENERIC_ALL, _GENERIC_READ = 0x1, 0x10000000, 0x80000000
# Well-known principals every account belongs to.
_EVERYONE = frozenset({"everyone", "nt authority\\authenticated users", "builtin\\users"})
_WELL_KNOWN = {
    "localsystem": "nt authority\\system", "system": "nt authority\\system",
    "networkservice": "nt authority\\network service", "network service": "nt authority\\network service",
    "nt authority\\networkservice": "nt authority\\network service",
    "localservice": "nt authority\\local service", "local service": "nt authority\\local service",
    "nt authority\\localservice": "nt authority\\local service",
}


@dataclass(frozen=True)
class AccessRule:
    identity: str
    rights: str
    allow: bool

    @property
    def reads(self) -> bool:
        return _grants_read(self.rights)


@dataclass(frozen=True)
class KeyAccess:
    """What the rules say for one account: ``may_read`` None when they cannot be compared."""

    account: str
    may_read: bool | None
    why: str


def _text(value: Any) -> str:
    meta = getattr(value, "PSObject", None)
    if meta is not None and getattr(meta, "to_string", None):
        return str(meta.to_string)
    return "" if value is None else str(value)


def _grants_read(rights: str) -> bool:
    text = rights.strip()
    if re.fullmatch(r"-?\d+", text):
        bits = int(text) & 0xFFFFFFFF
        return bool(bits & (_READ_DATA | _GENERIC_ALL | _GENERIC_READ))
    return any(part.strip().lower() in _READING_RIGHTS for part in text.split(","))


def normal_identity(name: str, server: str) -> str:
    """One spelling per principal: Win32_Service's ``NT AUTHORITY\\NetworkService`` and ``.\\user``
    against the ACL's ``NT AUTHORITY\\NETWORK SERVICE`` and ``SERVER\\user``, without case."""
    text = name.strip().lower()
    if text.startswith(".\\"):
        text = f"{server.lower()}\\{text[2:]}"
    return _WELL_KNOWN.get(text, text)


def service_accounts(session: Session) -> dict[str, str]:
    """The account each CRM async service on the server runs as, by service name."""
    out = session.invoke("Get-CimInstance", ClassName="Win32_Service", Filter=SERVICE_FILTER).output
    return {str(o.get_ci("Name")): str(o.get_ci("StartName") or "") for o in out if hasattr(o, "get_ci")}


def key_file(session: Session, thumbprint: str) -> PureWindowsPath:
    """The file holding the certificate's private key, from certutil's listing of it."""
    # -store only lists (and test-signs with the key): safe to send again after a dropped connection.
    result = session.invoke(Cmd("certutil.exe", "-store", "My", thumbprint), retry=True)
    lines = [line for o in result.output for line in str(o).splitlines()]
    container = next((m.group(1) for m in map(_CONTAINER.match, lines) if m), None)
    provider = next((m.group(1) for m in map(_PROVIDER.match, lines) if m), "")
    if container is None:
        said = "; ".join(line.strip() for line in lines if line.strip().startswith("CertUtil:")) or "no key"
        raise UnexpectedOutput(
            f"certutil names no key container for {thumbprint} on {session.server}: {said}", result)
    if "key storage provider" in provider.lower():
        if provider.lower() != "microsoft software key storage provider":
            # A TPM or smart card key is no file on disk: its access is not an ACL to read here.
            raise UnexpectedOutput(f"the key of {thumbprint} on {session.server} is held by {provider}, "
                                   "not in a file", result)
        return CNG_FOLDER / container
    return CAPI_FOLDER / container


def key_rules(session: Session, path: PureWindowsPath) -> list[AccessRule]:
    """The access rules of a key file (its ACL's ``Access``), unrolled on the server."""
    out = session.invoke(Cmd("Get-Acl", LiteralPath=str(path))
                         | Cmd("Select-Object", ExpandProperty="Access")).output
    return [rule_of(o) for o in out if hasattr(o, "get_ci")]


def rule_of(record: Any) -> AccessRule:
    """One ``FileSystemAccessRule`` as it arrives: enums by name, or by value (``Allow`` is 0)."""
    kind = _text(record.get_ci("AccessControlType")).strip().lower()
    return AccessRule(identity=_text(record.get_ci("IdentityReference")),
                      rights=_text(record.get_ci("FileSystemRights")), allow=kind in ("allow", "0"))


def key_access(account: str, rules: list[AccessRule], server: str) -> KeyAccess:
    """Whether ``account`` may read, by the rules naming it (a deny wins) or every account.

    Group memberships other than the well-known ones are not expanded: CertificateReconfiguration.ps1
    grants the account itself, so a rule naming the account is what a working server has.
    """
    me = normal_identity(account, server)
    if "@" in me:
        return KeyAccess(account, None, f"{account} is a user@domain name; the ACL names DOMAIN\\user: "
                         "not compared")
    mine = [r for r in rules if r.reads and normal_identity(r.identity, server) in (me, *_EVERYONE)]
    denied = next((r for r in mine if not r.allow), None)
    if denied is not None:
        return KeyAccess(account, False, f"a deny rule for {denied.identity} ({denied.rights})")
    allowed = next((r for r in mine if r.allow), None)
    if allowed is not None:
        return KeyAccess(account, True, f"allowed by the rule for {allowed.identity} ({allowed.rights})")
    return KeyAccess(account, False, "no rule allows it to read")
