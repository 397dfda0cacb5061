"""Step 3's app registration, idempotently: find it by display name, then create or update.

::

    app = ensure_app(graph, "psbridge S2S setup", "https://localhost/psbridge")
    secret = ensure_client_secret(graph, app, "keyring:psbridge/contoso-setup")   # 180 days
    app.changes        # [] on a second run: nothing was changed

The app is single tenant (``AzureADMyOrg``) with one web redirect URI, and gets its service
principal in the tenant. A client secret's value is written only to the secret store named
by the reference; what comes back (:class:`SecretInfo`) is its key id, hint and expiry.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlsplit

from psbridge import secrets
from psbridge.cloud.graph import GraphClient, odata_quote
from psbridge.cloud.models import AppRegistration, SecretInfo
from psbridge.errors import AmbiguousInTenant, ParameterError
from psbridge.secrets import Secret, SecretError, SecretRef

log = logging.getLogger("psbridge.cloud.apps")

SINGLE_TENANT = "AzureADMyOrg"
DEFAULT_SECRET_NAME = "psbridge setup"  # noqa: S105 - a display name, not a secret
DEFAULT_SECRET_DAYS = 180
MAX_SECRET_DAYS = 730  # 24 months: the longest Entra ID lets a portal user choose
RECOMMENDED_SECRET_DAYS = 365


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    local = parts.hostname in ("localhost", "127.0.0.1")
    if not parts.netloc or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
        raise ParameterError(
            f"redirect URI {uri!r} must be an absolute https:// URL (http:// only for localhost)"
        )


def find_app(graph: GraphClient, display_name: str) -> dict[str, Any] | None:
    found = graph.get_all("/applications", {"$filter": f"displayName eq {odata_quote(display_name)}"})
    if len(found) > 1:
        ids = ", ".join(a["appId"] for a in found)
        raise AmbiguousInTenant(f"{len(found)} app registrations are named {display_name!r} ({ids}); "
                                "rename or delete the extra ones, or choose another display name")
    return found[0] if found else None


def _service_principal(graph: GraphClient, app_id: str) -> dict[str, Any] | None:
    sps = graph.get_all("/servicePrincipals", {"$filter": f"appId eq {odata_quote(app_id)}"})
    return sps[0] if sps else None


def _registration(app: dict[str, Any], sp: dict[str, Any], changes: list[str] | None = None,
                  sign_in_audience: str = SINGLE_TENANT) -> AppRegistration:
    return AppRegistration(
        display_name=app["displayName"],
        app_id=app["appId"],
        object_id=app["id"],
        service_principal_id=sp["id"],
        sign_in_audience=app.get("signInAudience", sign_in_audience),
        redirect_uris=list((app.get("web") or {}).get("redirectUris") or []),
        changes=changes or [],
    )


def get_app(graph: GraphClient, display_name: str) -> AppRegistration | None:
    """The app registration named ``display_name`` with its service principal; None when either is missing.

    Read-only: for the steps that only need the app if it is there (a teardown, a re-run).
    """
    app = find_app(graph, display_name)
    sp = _service_principal(graph, app["appId"]) if app is not None else None
    return _registration(app, sp) if app is not None and sp is not None else None


def ensure_app(graph: GraphClient, display_name: str, redirect_uri: str, *,
               sign_in_audience: str = SINGLE_TENANT) -> AppRegistration:
    """The app registration named ``display_name`` and its service principal, as wanted."""
    if not display_name.strip():
        raise ParameterError("the app registration needs a display name")
    _check_redirect_uri(redirect_uri)
    changes: list[str] = []
    app = find_app(graph, display_name)
    if app is None:
        app = graph.post("/applications", {
            "displayName": display_name,
            "signInAudience": sign_in_audience,
            "web": {"redirectUris": [redirect_uri]},
        })
        changes.append("created app registration")
    else:
        patch: dict[str, Any] = {}
        if app.get("signInAudience") != sign_in_audience:
            patch["signInAudience"] = sign_in_audience
        uris = list((app.get("web") or {}).get("redirectUris") or [])
        if redirect_uri not in uris:
            patch["web"] = {"redirectUris": [*uris, redirect_uri]}
        if patch:
            graph.patch(f"/applications/{app['id']}", patch)
            changes.extend(f"set {k}" for k in patch)
            app = graph.get(f"/applications/{app['id']}")
    sp = _service_principal(graph, app["appId"])
    if sp is None:
        sp = graph.post("/servicePrincipals", {"appId": app["appId"]})
        changes.append("created service principal")
    for c in changes:
        log.info("%s: %s", display_name, c)
    return _registration(app, sp, changes, sign_in_audience)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stored_hint(ref: SecretRef) -> str | None:
    try:
        return secrets.resolve(ref).reveal()[:3]
    except SecretError:
        return None


def ensure_client_secret(graph: GraphClient, app: AppRegistration, secret_ref: str | SecretRef,
                         lifetime_days: int = DEFAULT_SECRET_DAYS, *,
                         display_name: str = DEFAULT_SECRET_NAME) -> SecretInfo:
    """A working client secret for ``app``, its value kept only at ``secret_ref``.

    Reuses the secret named ``display_name`` when the store still holds its value (checked
    against Graph's hint) and it has more than a day left; otherwise adds a new one and
    removes the unusable ones of that name. Refuses a lifetime over 24 months.
    """
    ref = SecretRef.parse(secret_ref)
    if not isinstance(lifetime_days, int) or lifetime_days < 1:
        raise ParameterError("a client secret lifetime is a whole number of days, at least 1")
    if lifetime_days > MAX_SECRET_DAYS:
        raise ParameterError(f"a client secret may live at most 24 months ({MAX_SECRET_DAYS} days), "
                             f"not {lifetime_days} days; Microsoft recommends under 12 months")
    if not secrets._BACKENDS[ref.scheme].writable:
        raise ParameterError(f"the secret reference {ref} cannot be written to; "
                             "use e.g. keyring:, file: or lab:")
    if lifetime_days > RECOMMENDED_SECRET_DAYS:
        log.warning("a client secret of %d days: Microsoft recommends less than 12 months", lifetime_days)
    now = dt.datetime.now(dt.UTC)
    ours = client_secrets_named(graph, app, display_name)
    hint = _stored_hint(ref)
    for cred in ours:
        if cred.get("hint") == hint and _parse_time(cred["endDateTime"]) > now + dt.timedelta(days=1):
            return SecretInfo(key_id=cred["keyId"], display_name=display_name, hint=cred["hint"],
                              start=_parse_time(cred["startDateTime"]), end=_parse_time(cred["endDateTime"]),
                              secret_ref=str(ref), created=False)
    end = now + dt.timedelta(days=lifetime_days)
    made = graph.post(f"/applications/{app.object_id}/addPassword", {
        "passwordCredential": {"displayName": display_name, "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    })
    value = Secret(made.pop("secretText"))
    try:
        secrets.store(ref, value)
    except Exception:
        # A secret nobody holds is only a liability: take it back before reporting the failure.
        # Any failure (SecretError, OSError, a keyring's or a registered backend's own errors)
        # leaves the value unheld, so every one is caught; it is re-raised unchanged below.
        graph.post(f"/applications/{app.object_id}/removePassword", {"keyId": made["keyId"]})
        raise
    for stale in ours:
        graph.post(f"/applications/{app.object_id}/removePassword", {"keyId": stale["keyId"]})
        log.info("%s: removed client secret %s whose value is not in %s",
                 app.display_name, stale["keyId"], ref)
    log.info("%s: added client secret %s, stored at %s", app.display_name, made["keyId"], ref)
    return SecretInfo(key_id=made["keyId"], display_name=display_name, hint=made.get("hint", ""),
                      start=_parse_time(made["startDateTime"]), end=_parse_time(made["endDateTime"]),
                      secret_ref=str(ref), created=True)


def client_secrets_named(graph: GraphClient, app: AppRegistration,
                         display_name: str = DEFAULT_SECRET_NAME) -> list[dict[str, Any]]:
    """The app's password credentials named ``display_name`` (metadata only: Graph never returns values)."""
    current = graph.get(f"/applications/{app.object_id}", {"$select": "id,passwordCredentials"})
    return [c for c in current.get("passwordCredentials", []) if c.get("displayName") == display_name]


def remove_client_secrets(graph: GraphClient, app: AppRegistration, *,
                          display_name: str = DEFAULT_SECRET_NAME) -> list[str]:
    """Remove the app's client secrets named ``display_name``; the removed key ids."""
    removed = []
    for cred in client_secrets_named(graph, app, display_name):
        graph.post(f"/applications/{app.object_id}/removePassword", {"keyId": cred["keyId"]})
        removed.append(cred["keyId"])
    return removed


def delete_app(graph: GraphClient, app: AppRegistration) -> None:
    """Delete the app registration (its service principal, secrets and consent go with it)."""
    graph.delete(f"/applications/{app.object_id}")
    log.info("%s: deleted app registration %s", app.display_name, app.app_id)
