"""The tenant id (a GUID), from Graph or from the tenant's public OpenID metadata.

::

    tenant_id_from_graph(graph)                                   # GET /organization -> id
    tenant_id_from_discovery(settings, "contoso.onmicrosoft.com") # no sign-in needed

The discovery document's ``issuer`` is ``{authority}/{tenant GUID}/v2.0``; it answers for any
verified domain of the tenant, which is how a domain name becomes the id CRM's S2STenantId needs.
"""

from __future__ import annotations

import re

import requests

from psbridge.cloud.graph import GraphClient
from psbridge.cloud.http import session_for
from psbridge.cloud.settings import CloudSettings
from psbridge.errors import ParameterError
from psbridge.errors import TenantLookupError as TenantLookupError  # re-exported for its callers

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def tenant_id_from_graph(graph: GraphClient) -> str:
    orgs = graph.get("/organization", {"$select": "id,displayName,verifiedDomains"}).get("value", [])
    if len(orgs) != 1:
        raise TenantLookupError(f"/organization returned {len(orgs)} organizations, expected one")
    return str(orgs[0]["id"])


def tenant_id_from_discovery(settings: CloudSettings, domain: str) -> str:
    if not (_DOMAIN.match(domain) or _GUID.fullmatch(domain)):
        raise ParameterError(f"{domain!r} is not a domain name such as contoso.onmicrosoft.com")
    url = f"{settings.authority(domain)}/v2.0/.well-known/openid-configuration"
    try:
        resp = session_for(settings).get(url, timeout=settings.timeout)
    except requests.RequestException as e:
        raise TenantLookupError(f"cannot reach {settings.authority_host}: {type(e).__name__}") from None
    if resp.status_code != 200:
        try:
            reason = resp.json().get("error_description", resp.reason)
        except ValueError:
            reason = resp.reason
        raise TenantLookupError(f"no tenant found for {domain}: {resp.status_code} {reason}")
    issuer = str(resp.json().get("issuer", ""))
    m = _GUID.search(issuer)
    if not m:
        raise TenantLookupError(f"the OpenID metadata of {domain} names no tenant id (issuer {issuer!r})")
    return m.group(0).lower()
