"""``CertificateReconfiguration.ps1``: install the S2S certificate on this server (and in CRM).

It imports the PFX into ``LocalMachine\\My`` with its private key, finds it again the way
``-storeFindType`` says (by subject by default: two certificates with one subject make the
key lookup fail with "Private key not found"), grants the service account read access to the
private key and, with ``-updateCrm``, records the certificate in the configuration database.
It needs a local administrator (the machine store) and, for ``-updateCrm``, a deployment
administrator. Failures end with "Process Failed." and ``exit 1``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psrpcore.types as pst

from psbridge.lab.commands.certstore import PfxError, open_pfx
from psbridge.lab.commands.crm import NOT_ADMIN, record_crm_certificate
from psbridge.lab.commands.filesystem import PathFormatError, ServerFiles, windows_path
from psbridge.lab.commands.registry import STRING, SWITCH, Param
from psbridge.lab.commands.runtime import Call
from psbridge.lab.commands.scripts.common import PROCESS_SUCCEEDED, Thrown, catch, ensure_snapin, step

CERTIFICATE_TYPES = ("S2STokenIssuer", "AlternativeS2STokenIssuer")
STORE_FIND_TYPES = ("FindBySubjectDistinguishedName", "FindByThumbprint")

# Microsoft's pages call only -updateCrm and -storeFindType optional. No positions are declared,
# so PowerShell numbers the parameters that are not switches in order.
PARAMS = (
    Param("certificateFile", STRING, mandatory=True, position=0),
    Param("password", STRING, mandatory=True, position=1),
    Param("certificateType", STRING, mandatory=True, position=2),
    Param("serviceAccount", STRING, mandatory=True, position=3),
    Param("updateCrm", SWITCH),
    Param("storeFindType", STRING, position=4),
)


def run(call: Call) -> None:
    try:
        _run(call)
    except Thrown as e:
        catch(call, e)


def _run(call: Call) -> None:
    ensure_snapin(call)
    certificate_type = next(
        (t for t in CERTIFICATE_TYPES if t.lower() == call["certificateType"].lower()), None
    )
    if certificate_type is None:
        raise Thrown(
            f"The certificate type '{call['certificateType']}' is not valid. Valid certificate types: "
            f"{', '.join(CERTIFICATE_TYPES)}."
        )
    find_type = next(
        (
            t
            for t in STORE_FIND_TYPES
            if t.lower() == (call.get("storeFindType") or STORE_FIND_TYPES[0]).lower()
        ),
        None,
    )
    if find_type is None:
        raise Thrown(
            f"The store find type '{call['storeFindType']}' is not valid. Valid store find types: "
            f"{', '.join(STORE_FIND_TYPES)}."
        )
    files = ServerFiles(call.ctx.state_dir, call.ctx.server)
    text = call["certificateFile"]
    try:
        path = windows_path(text)
    except PathFormatError:
        raise Thrown("The given path's format is not supported.") from None
    if not files.is_file(path):
        raise Thrown(f"The certificate file {text} does not exist.")
    if path.suffix.lower() != ".pfx":
        raise Thrown(f"The certificate file {text} is not a Personal Information Exchange (.pfx) file.")
    password = call["password"]
    plain = str(password.decrypt()) if isinstance(password, pst.PSSecureString) else str(password)
    step(call, 0.4)  # X509Certificate2.Import of the PFX
    try:
        content = open_pfx(files.read_bytes(path), plain)
    except PfxError as e:
        raise Thrown(f'Exception calling "Import" with "3" argument(s): "{e}"') from None
    entry = content.entry()
    call.host(f"Certificate {entry['subject']} (thumbprint {entry['thumbprint']}) read from {path}.")
    not_after = dt.datetime.fromisoformat(entry["not_after"])
    if not_after < dt.datetime.now(dt.UTC):
        raise Thrown(
            f"The certificate {entry['subject']} expired on {not_after.strftime('%m/%d/%Y %H:%M:%S')}."
        )
    if not content.has_private_key:
        raise Thrown("Private key not found")
    if not call.world.is_local_admin(call.ctx.server, call.ctx.user):
        raise Thrown('Exception calling "Add" with "1" argument(s): "Access is denied."')
    step(call, 0.8)  # X509Store.Add into LocalMachine\My

    account = call.get("serviceAccount")
    if account and not call.world.knows_account(account):
        raise Thrown(
            'Exception calling "Translate" with "1" argument(s): "Some or all identity references could '
            'not be translated."'
        )

    with call.world.change() as data:
        server = next(s for s in data["servers"] if s["name"].lower() == call.ctx.server.lower())
        store: list[dict[str, Any]] = server["store"]
        existing = next((e for e in store if e["thumbprint"] == entry["thumbprint"]), None)
        if existing is not None:
            entry["key_readers"] = list(existing.get("key_readers", []))
            store[store.index(existing)] = entry
        else:
            store.append(entry)
        call.host(f"Certificate imported into the LocalMachine\\My store of {server['name']}.")
        if find_type == "FindBySubjectDistinguishedName":
            matches = [e for e in store if e["subject"] == entry["subject"]]
        else:
            matches = [e for e in store if e["thumbprint"] == entry["thumbprint"]]
        if len(matches) != 1:
            # The key lookup by subject lands on the wrong certificate's container. The import
            # stays: the real script has already added the certificate when this fails.
            key_lookup_failed = True
        else:
            key_lookup_failed = False
            if account:
                readers = matches[0].setdefault("key_readers", [])
                if account.lower() not in (r.lower() for r in readers):
                    readers.append(account)
    if key_lookup_failed:
        raise Thrown("Private key not found")
    if account:
        step(call, 0.5)  # the private key file's ACL
        call.host(f"Granted read access on the private key to {account}.")

    if call.get("updateCrm"):
        if not call.world.is_deployment_admin(call.ctx.user):
            raise Thrown(NOT_ADMIN)
        step(call, 1.2)  # the configuration database, through the deployment web service
        record_crm_certificate(call, certificate_type, entry, find_type)
        call.host(f"The {certificate_type} certificate is updated in the CRM configuration database.")
    call.host(PROCESS_SUCCEEDED, "Green")
