"""Step 3 — the app registration ConfigureCrmServerSideSync.ps1 signs in as, idempotently.

Single tenant, a redirect URI, a client secret (its value goes to the secret store and nowhere
else), the Graph permissions the script needs and admin consent for them. The secret and the
consent are needed once, by step 4, which takes them back afterwards: so when step 4's state for
this certificate is already complete, this step adds nothing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    CertificateRef,
    certificate_for,
    graph_client,
    sign_in,
)
from psbridge.runbook.steps.s2s import S2SState, s2s_state
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.cloud import AppRegistration, ConsentResult, GraphClient, RequiredAccess, SecretInfo

__all__ = ["AppState", "EntraApp", "app_state", "certificate_for", "ensure_entra_app",
           "graph_client", "s2s_configured_already", "sign_in"]

SETUP_NOT_NEEDED = ("S2S is already configured with this certificate (step 4's state below is all ok): the "
                    "setup client secret and admin consent are not needed, so none are added.")
COLUMNS = ["app registration", "exists", "appId", "client secrets"]


@dataclass(frozen=True)
class AppState:
    name: str
    exists: bool
    app_id: str | None = None
    client_secrets: int = 0

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"app registration": self.name, "exists": self.exists, "appId": self.app_id,
                 "client secrets": self.client_secrets}]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), COLUMNS)

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), COLUMNS)


def app_state(graph: GraphClient, app_name: str) -> AppState:
    from psbridge.cloud import find_app

    app = find_app(graph, app_name)
    if app is None:
        return AppState(app_name, False)
    creds = graph.get(f"/applications/{app['id']}", {"$select": "id,passwordCredentials"})
    return AppState(app_name, True, app["appId"], len(creds.get("passwordCredentials", [])))


@dataclass
class EntraApp:
    app: AppRegistration | None
    secret: SecretInfo | None
    access: RequiredAccess | None
    consent: ConsentResult | None
    tenant_id: str
    changes: list[str]
    note: str = ""

    def _repr_html_(self) -> str:
        parts = [x._repr_html_() for x in (self.app, self.secret, self.access, self.consent) if x is not None]
        done = "<br>".join(html.escape(c) for c in self.changes) or "already done: nothing changed"
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return f"<p><b>{'Changes' if self.changes else 'Result'}:</b> {done}</p>" + note + "".join(parts)


def s2s_configured_already(dep: Deployment, graph: GraphClient, cert: CertificateRef) -> S2SState | None:
    """Step 4's state for this certificate, if there is one yet: all ok means step 3 has nothing to do.

    Without it a re-run would add back the secret and consent that step 4's teardown removed.
    """
    if not cert.thumbprint:
        return None
    from psbridge.cloud import tenant_id_from_graph

    return s2s_state(dep, graph, cert.thumbprint, tenant_id_from_graph(graph))


def ensure_entra_app(graph: GraphClient, app_name: str, redirect_uri: str, client_secret: str, days: int,
                     *, plan: bool = False, configured: S2SState | None = None) -> EntraApp:
    """App + service principal, client secret, required access, consent (nothing when ``configured``)."""
    from psbridge.cloud import (
        ensure_app,
        ensure_client_secret,
        ensure_required_access,
        find_app,
        get_app,
        grant_admin_consent,
        tenant_id_from_graph,
    )

    tenant_id = tenant_id_from_graph(graph)
    if configured is not None and configured.ok:
        return EntraApp(get_app(graph, app_name), None, None, None, tenant_id, [], SETUP_NOT_NEEDED)
    if plan:
        found = find_app(graph, app_name)
        changes = [] if found else [f"create app registration {app_name!r} with its service principal, a "
                                    f"client secret stored at {client_secret}, Graph permissions and consent"]
        return EntraApp(None, None, None, None, tenant_id, changes)
    app = ensure_app(graph, app_name, redirect_uri)
    secret = ensure_client_secret(graph, app, client_secret, days)
    access = ensure_required_access(graph, app)
    consent = grant_admin_consent(graph, app)
    changes = list(app.changes)
    if secret.created:
        changes.append(f"added client secret {secret.key_id} (value stored at {secret.secret_ref})")
    if access.changed:
        changes.append("set required access: " + ", ".join(p.name for p in access.permissions))
    if consent.created:
        changes.append("granted admin consent: " + ", ".join(consent.created))
    return EntraApp(app, secret, access, consent, tenant_id, changes)
