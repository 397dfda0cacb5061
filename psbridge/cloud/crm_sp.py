"""The Dynamics CRM first-party service principal, read as evidence of S2S trust.

After ConfigureCrmServerSideSync the S2S certificate is among its key credentials (by SHA-1
thumbprint, with its validity) and its servicePrincipalNames include the CRM app id::

    crm = read_crm_service_principal(graph)
    crm.has_certificate(thumbprint), crm.table()
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any

from psbridge.cloud.graph import GraphClient, odata_quote
from psbridge.cloud.models import CrmServicePrincipal, KeyCredentialInfo
from psbridge.errors import NotFoundInTenant

CRM_APP_ID = "00000007-0000-0000-c000-000000000000"


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _thumbprint(identifier: str | None) -> str | None:
    """A SHA-1 thumbprint in hex, whether Graph gives it as hex or as base64 of the hash."""
    if not identifier:
        return None
    if re.fullmatch(r"[0-9A-Fa-f]{40}", identifier):
        return identifier.upper()
    try:
        raw = base64.b64decode(identifier, validate=True)
    except (binascii.Error, ValueError):
        return identifier
    return raw.hex().upper() if len(raw) == 20 else identifier


def _key(k: dict[str, Any]) -> KeyCredentialInfo:
    return KeyCredentialInfo(
        key_id=k["keyId"], thumbprint=_thumbprint(k.get("customKeyIdentifier")),
        display_name=k.get("displayName"),
        type=k.get("type", ""), usage=k.get("usage", ""), start=_time(k.get("startDateTime")),
        end=_time(k.get("endDateTime")),
    )


def read_crm_service_principal(graph: GraphClient) -> CrmServicePrincipal:
    found = graph.get_all("/servicePrincipals", {
        "$filter": f"appId eq {odata_quote(CRM_APP_ID)}",
        "$select": "id,appId,displayName,servicePrincipalNames,keyCredentials",
    })
    if not found:
        raise NotFoundInTenant(f"the tenant has no Dynamics CRM service principal (appId {CRM_APP_ID})")
    sp = found[0]
    return CrmServicePrincipal(
        object_id=sp["id"], app_id=sp["appId"], display_name=sp.get("displayName", ""),
        service_principal_names=list(sp.get("servicePrincipalNames", [])),
        key_credentials=[_key(k) for k in sp.get("keyCredentials", [])],
    )


def _expired(cred: dict[str, Any], moment: dt.datetime) -> bool:
    end = _time(cred.get("endDateTime"))
    return end is not None and end <= moment


def trust_certificate(graph: GraphClient, der: bytes, *, now: dt.datetime | None = None) -> list[str]:
    """What ConfigureCrmServerSideSync.ps1 does in Entra ID, for a cloud the script cannot reach.

    The certificate becomes a key credential of the Dynamics CRM service principal (type
    ``AsymmetricX509Cert``, usage ``Verify``) unless the same certificate is there already, and
    the CRM app id is among its servicePrincipalNames. Expired credentials are dropped on the way,
    which the published script means to do but never does under Windows PowerShell 5.1 (its date
    comparison compares text). Graph takes the whole collection back: existing credentials are sent
    by ``keyId`` without their ``key``. Returns what changed, as sentences.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a thumbprint is SHA-1
    moment = now or dt.datetime.now(dt.UTC)
    found = graph.get_all("/servicePrincipals", {
        "$filter": f"appId eq {odata_quote(CRM_APP_ID)}",
        "$select": "id,appId,servicePrincipalNames,keyCredentials",
    })
    if not found:
        raise NotFoundInTenant(f"the tenant has no Dynamics CRM service principal (appId {CRM_APP_ID})")
    sp = found[0]
    existing = sp.get("keyCredentials", [])
    changes = []
    if not any(_key(k).thumbprint == thumb for k in existing):
        kept = [{k: v for k, v in cred.items() if k not in ("key", "displayName")} for cred in existing
                if not _expired(cred, moment)]
        dropped = len(existing) - len(kept)
        new = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode("ascii"),
               "startDateTime": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
               "endDateTime": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
        graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": [*kept, new]})
        changes.append(f"added key credential {thumb} to the Dynamics CRM service principal"
                       + (f" (dropped {dropped} expired)" if dropped else ""))
    names = list(sp.get("servicePrincipalNames", []))
    if CRM_APP_ID not in names:
        graph.patch(f"/servicePrincipals/{sp['id']}", {"servicePrincipalNames": [*names, CRM_APP_ID]})
        changes.append(f"added {CRM_APP_ID} to the Dynamics CRM service principal's servicePrincipalNames")
    return changes


def untrust_certificate(graph: GraphClient, thumbprint: str) -> list[str]:
    """The key credentials of this thumbprint taken off the Dynamics CRM service principal.

    The rest of the collection is sent back by ``keyId`` without its ``key`` (Graph keeps what it
    has). Returns what changed, as sentences; nothing when no credential has that thumbprint.
    """
    want = thumbprint.replace(" ", "").upper()
    found = graph.get_all("/servicePrincipals", {
        "$filter": f"appId eq {odata_quote(CRM_APP_ID)}", "$select": "id,appId,keyCredentials",
    })
    if not found:
        raise NotFoundInTenant(f"the tenant has no Dynamics CRM service principal (appId {CRM_APP_ID})")
    sp = found[0]
    existing = sp.get("keyCredentials", [])
    kept = [{k: v for k, v in cred.items() if k not in ("key", "displayName")} for cred in existing
            if _key(cred).thumbprint != want]
    if len(kept) == len(existing):
        return []
    graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": kept})
    return [f"removed key credential {want} from the Dynamics CRM service principal"]
