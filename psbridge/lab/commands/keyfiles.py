"""Private key files on a lab server: where a certificate's key lives, and who may read it.

A machine key is a file: a CAPI (CSP) key under ``C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys``,
a CNG key under ``C:\\ProgramData\\Microsoft\\Crypto\\Keys``, named ``<hash>_<machine GUID>``.
``certutil -store My <thumbprint>`` prints that name ("Unique container name: ..."), and
``Get-Acl`` on the file lists its rules: SYSTEM and Administrators with full control, as Windows
creates the file, and read for each account in the store entry's ``key_readers`` (what
CertificateReconfiguration.ps1 granted). The lab's RSA keys come from PFX files as CSP keys;
any other key is a CNG one.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import PureWindowsPath
from typing import Any

from psbridge.lab.commands import errors
from psbridge.lab.commands.objects import new_object
from psbridge.lab.commands.registry import CMDLETS, STRING, STRINGS, CommandSpec, Param, cmdlet
from psbridge.lab.commands.runtime import Call

CAPI_FOLDER = PureWindowsPath(r"C:\ProgramData\Microsoft\Crypto\RSA\MachineKeys")
CNG_FOLDER = PureWindowsPath(r"C:\ProgramData\Microsoft\Crypto\Keys")
CAPI_PROVIDER = "Microsoft Enhanced Cryptographic Provider v1.0"
CNG_PROVIDER = "Microsoft Software Key Storage Provider"
# Windows' own rules on every machine key file, before anyone is granted read.
OWN_RULES = (("NT AUTHORITY\\SYSTEM", "FullControl"), ("BUILTIN\\Administrators", "FullControl"))
NOT_FOUND = 0x80092004  # CRYPT_E_NOT_FOUND


def machine_guid(server: str) -> str:
    """``HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid``: fixed per lab server."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{server.lower()}.lab"))


def key_file(server: str, entry: dict[str, Any]) -> PureWindowsPath:
    """The file holding a store entry's private key on ``server``."""
    digest = hashlib.md5(str(entry["thumbprint"]).encode("ascii")).hexdigest()  # noqa: S324 - a name, as Windows'
    folder = CAPI_FOLDER if entry.get("key_spec", 1) == 1 else CNG_FOLDER
    return folder / f"{digest}_{machine_guid(server)}"


def _entries(call: Call) -> list[dict[str, Any]]:
    store: list[dict[str, Any]] = call.world.server(call.ctx.server)["store"]
    return store


# --- certutil -store My <thumbprint> -------------------------------------------------------------


def _certutil(call: Call) -> None:
    args = [str(a) for a in (call.get("Verb"), call.get("Store"), call.get("CertId")) if a is not None]
    if len(args) < 2 or args[0].lower() not in ("-store", "/store") or args[1].lower() != "my":
        # Only the machine's Personal store is emulated: it is where the S2S certificate lives.
        call.write(f"CertUtil: {' '.join(args)} is not emulated by the psbridge lab (certutil -store My ...)")
        call.ctx.variables["LASTEXITCODE"] = 1
        return
    wanted = re.sub(r"\s", "", args[2]).upper() if len(args) > 2 else ""
    found = [e for e in _entries(call) if not wanted or str(e["thumbprint"]).upper() == wanted]
    lines = ['My "Personal"']
    for i, entry in enumerate(found):
        lines += [f"================ Certificate {i} ================", f"Serial Number: {entry['serial']}",
                  f"Issuer: {entry['issuer']}", f"Subject: {entry['subject']}",
                  f"Cert Hash(sha1): {str(entry['thumbprint']).lower()}"]
        if entry.get("has_private_key"):
            path = key_file(call.ctx.server, entry)
            provider = CAPI_PROVIDER if path.parent == CAPI_FOLDER else CNG_PROVIDER
            lines += [f"  Key Container = {{{uuid.uuid5(uuid.NAMESPACE_OID, str(entry['thumbprint']))}}}",
                      f"  Unique container name: {path.name}", f"  Provider = {provider}",
                      "Encryption test passed"]
        else:
            lines += ["No key provider information",
                      "Cannot find the certificate and private key for decryption."]
    if wanted and not found:
        code = NOT_FOUND - 2**32
        lines += [f"CertUtil: -store command FAILED: 0x{NOT_FOUND:08x} ({code} CRYPT_E_NOT_FOUND)",
                  "CertUtil: Cannot find object or property."]
    else:
        lines.append("CertUtil: -store command completed successfully.")
        code = 0
    call.write(lines)
    call.ctx.variables["LASTEXITCODE"] = code


# An application, not a cmdlet: PowerShell hands it its arguments as they are, by position.
_CERTUTIL = CommandSpec(
    name="certutil.exe", params=(Param("Verb", STRING, position=0), Param("Store", STRING, position=1),
                                 Param("CertId", STRING, position=2)),
    run=_certutil, type_name="certutil.exe", kind="Application", source=r"C:\Windows\system32\certutil.exe")
# Registered by hand (not a cmdlet), by the file name a caller uses to say it wants the application.
CMDLETS["certutil.exe"] = _CERTUTIL


# --- Get-Acl ----------------------------------------------------------------------------------------


def _identity(name: str) -> Any:
    return new_object(["System.Security.Principal.NTAccount", "System.Security.Principal.IdentityReference"],
                      {"Value": name}, name)


def _rule(identity: str, rights: str) -> Any:
    return new_object(
        ["System.Security.AccessControl.FileSystemAccessRule", "System.Security.AccessControl.AccessRule",
         "System.Security.AccessControl.AuthorizationRule"],
        {"FileSystemRights": rights, "AccessControlType": "Allow", "IdentityReference": _identity(identity),
         "IsInherited": False, "InheritanceFlags": "None", "PropagationFlags": "None"})


def acl_rules(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The (identity, rights) a key file's ACL allows: Windows' own, then each granted reader."""
    return [*OWN_RULES, *((r, "Read, Synchronize") for r in entry.get("key_readers", []))]


@cmdlet(
    "Get-Acl",
    "Microsoft.PowerShell.Commands.GetAclCommand",
    Param("Path", STRINGS, position=0, sets=("ByPath",)),
    Param("LiteralPath", STRINGS, aliases=("PSPath",), sets=("ByLiteralPath",)),
    source="Microsoft.PowerShell.Security",
    default_set="ByPath",
)
def get_acl(call: Call) -> None:
    texts = call.get("LiteralPath") or call.get("Path") or []
    files = {str(key_file(call.ctx.server, e)).lower(): e for e in _entries(call) if e.get("has_private_key")}
    for text in texts:
        entry = files.get(str(PureWindowsPath(str(text))).lower())
        if entry is None:
            # Only machine key files are emulated; any other path is as absent as a deleted key.
            call.error(errors.path_not_found(str(text), call.spec.name, call.spec.type_name))
            continue
        rules = [_rule(identity, rights) for identity, rights in acl_rules(entry)]
        shown = "\n".join(f"{identity} Allow  {rights}" for identity, rights in acl_rules(entry))
        call.write(new_object(
            ["System.Security.AccessControl.FileSecurity",
             "System.Security.AccessControl.FileSystemSecurity"],
            {"Owner": "BUILTIN\\Administrators", "Group": "NT AUTHORITY\\SYSTEM"},
            "System.Security.AccessControl.FileSecurity",
            {"PSPath": f"Microsoft.PowerShell.Core\\FileSystem::{text}", "Path":
             f"Microsoft.PowerShell.Core\\FileSystem::{text}", "Access": rules, "AccessToString": shown}))
