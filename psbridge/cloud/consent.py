"""API permissions of the step-3 app, resolved by name, and the administrator's consent.

::

    access = ensure_required_access(graph, app)     # Application.ReadWrite.All, Organization.Read.All
                                                    # (application) and User.Read (delegated)
    consent = grant_admin_consent(graph, app)       # app role assignments + an OAuth2 permission grant
    consent.table()

Names are looked up in the Microsoft Graph service principal's ``appRoles`` (application
permissions) and ``oauth2PermissionScopes`` (delegated) of *this* tenant, never hard-coded
ids, so a sovereign cloud or a renamed permission fails clearly instead of granting the wrong
thing. Granting is idempotent: what is already there is left alone and reported as such.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psbridge.cloud.graph import GraphClient, odata_quote
from psbridge.cloud.models import AppRegistration, ConsentResult, Permission, RequiredAccess
from psbridge.errors import NotFoundInTenant, ParameterError

log = logging.getLogger("psbridge.cloud.consent")

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# (name, "Role" = application permission | "Scope" = delegated permission)
STEP3_PERMISSIONS: tuple[tuple[str, str], ...] = (
    ("Application.ReadWrite.All", "Role"),
    ("Organization.Read.All", "Role"),
    ("User.Read", "Scope"),
)


def resource_service_principal(graph: GraphClient, app_id: str = GRAPH_APP_ID) -> dict[str, Any]:
    found = graph.get_all("/servicePrincipals", {
        "$filter": f"appId eq {odata_quote(app_id)}",
        "$select": "id,appId,displayName,appRoles,oauth2PermissionScopes",
    })
    if not found:
        raise NotFoundInTenant(f"no service principal for the resource app {app_id} in this tenant")
    return found[0]


def resolve_permissions(graph: GraphClient, wanted: Sequence[tuple[str, str]] = STEP3_PERMISSIONS,
                        resource_app_id: str = GRAPH_APP_ID) -> list[Permission]:
    sp = resource_service_principal(graph, resource_app_id)
    pools = {"Role": sp.get("appRoles", []), "Scope": sp.get("oauth2PermissionScopes", [])}
    out = []
    for name, kind in wanted:
        if kind not in pools:
            raise ParameterError(
                f"permission kind must be 'Role' (application) or 'Scope' (delegated), not {kind!r}"
            )
        match = [p for p in pools[kind] if p.get("value") == name and p.get("isEnabled", True)]
        if not match:
            close = difflib.get_close_matches(name, [str(p.get("value")) for p in pools[kind]], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            what = "application permission" if kind == "Role" else "delegated permission"
            raise NotFoundInTenant(
                f"{sp.get('displayName', resource_app_id)} has no {what} named {name!r}{hint}")
        out.append(Permission(resource_app_id=resource_app_id, name=name, kind=kind, id=match[0]["id"]))
    return out


def ensure_required_access(graph: GraphClient, app: AppRegistration,
                           wanted: Sequence[tuple[str, str]] = STEP3_PERMISSIONS) -> RequiredAccess:
    """The app's ``requiredResourceAccess`` lists the wanted permissions (others are kept)."""
    perms = resolve_permissions(graph, wanted)
    current = graph.get(f"/applications/{app.object_id}", {"$select": "id,requiredResourceAccess"})
    rra: list[dict[str, Any]] = [dict(r) for r in current.get("requiredResourceAccess") or []]
    entry = next((r for r in rra if r.get("resourceAppId") == GRAPH_APP_ID), None)
    if entry is None:
        entry = {"resourceAppId": GRAPH_APP_ID, "resourceAccess": []}
        rra.append(entry)
    have = {(a["id"], a["type"]) for a in entry.get("resourceAccess", [])}
    missing = [p for p in perms if (p.id, p.kind) not in have]
    if missing:
        entry["resourceAccess"] = [*entry.get("resourceAccess", []),
                                   *({"id": p.id, "type": p.kind} for p in missing)]
        graph.patch(f"/applications/{app.object_id}", {"requiredResourceAccess": rra})
        log.info("%s: added API permissions %s", app.display_name, ", ".join(p.name for p in missing))
    return RequiredAccess(app_id=app.app_id, permissions=perms, changed=bool(missing))


def _delegated_grant(graph: GraphClient, client_sp: str, resource_sp: str) -> dict[str, Any] | None:
    grants = graph.get_all("/oauth2PermissionGrants", {
        "$filter": f"clientId eq {odata_quote(client_sp)} and consentType eq 'AllPrincipals' "
                   f"and resourceId eq {odata_quote(resource_sp)}",
    })
    return grants[0] if grants else None


def grant_admin_consent(graph: GraphClient, app: AppRegistration,
                        wanted: Sequence[tuple[str, str]] = STEP3_PERMISSIONS) -> ConsentResult:
    """Tenant-wide admin consent for the wanted permissions, as the portal's "Grant admin consent"."""
    perms = resolve_permissions(graph, wanted)
    resource = resource_service_principal(graph)
    created: list[str] = []
    already: list[str] = []
    assigned = {a["appRoleId"] for a in graph.get_all(f"/servicePrincipals/{app.service_principal_id}"
                                                      "/appRoleAssignments")
                if a["resourceId"] == resource["id"]}
    for p in (p for p in perms if p.kind == "Role"):
        if p.id in assigned:
            already.append(p.name)
            continue
        graph.post(f"/servicePrincipals/{app.service_principal_id}/appRoleAssignments", {
            "principalId": app.service_principal_id, "resourceId": resource["id"], "appRoleId": p.id,
        })
        created.append(p.name)
    scopes = [p.name for p in perms if p.kind == "Scope"]
    if scopes:
        grant = _delegated_grant(graph, app.service_principal_id, resource["id"])
        if grant is None:
            graph.post("/oauth2PermissionGrants", {
                "clientId": app.service_principal_id, "consentType": "AllPrincipals",
                "resourceId": resource["id"], "scope": " ".join(scopes),
            })
            created.extend(scopes)
        else:
            have = grant.get("scope", "").split()
            new = [s for s in scopes if s not in have]
            if new:
                graph.patch(f"/oauth2PermissionGrants/{grant['id']}", {"scope": " ".join([*have, *new])})
            created.extend(new)
            already.extend(s for s in scopes if s in have)
    if created:
        log.info("%s: admin consent granted for %s", app.display_name, ", ".join(created))
    return ConsentResult(app_id=app.app_id, granted=perms, created=created, already=already)


@dataclass(frozen=True)
class AdminConsent:
    """The app's consent to Microsoft Graph as it stands: app role assignments and delegated grants."""

    assignments: list[dict[str, Any]]
    role_names: list[str]  # the assignments' permission names, in the same order
    grants: list[dict[str, Any]]


def admin_consent(graph: GraphClient, app: AppRegistration) -> AdminConsent:
    """Read (only) every Graph app role assignment and delegated grant of the app."""
    resource = resource_service_principal(graph)
    names = {r["id"]: r["value"] for r in resource.get("appRoles", [])}
    path = f"/servicePrincipals/{app.service_principal_id}/appRoleAssignments"
    assignments = [a for a in graph.get_all(path) if a["resourceId"] == resource["id"]]
    grants = graph.get_all("/oauth2PermissionGrants", {
        "$filter": f"clientId eq {odata_quote(app.service_principal_id)} and resourceId eq "
                   f"{odata_quote(resource['id'])}",
    })
    return AdminConsent(assignments, [names.get(a["appRoleId"], a["appRoleId"]) for a in assignments], grants)


def revoke_admin_consent(graph: GraphClient, app: AppRegistration) -> tuple[list[str], int]:
    """Remove every Graph app role assignment and delegated grant of the app.

    Returns the names of the application permissions removed and the number of grants deleted.
    """
    consent = admin_consent(graph, app)
    for a in consent.assignments:
        graph.delete(f"/servicePrincipals/{app.service_principal_id}/appRoleAssignments/{a['id']}")
    for g in consent.grants:
        graph.delete(f"/oauth2PermissionGrants/{g['id']}")
    return consent.role_names, len(consent.grants)
