"""Step 4 — server-to-server authentication in CRM, then the setup's access taken back.

In the commercial cloud the official ``ConfigureCrmServerSideSync.ps1`` does the work: it trusts
the certificate on the Dynamics CRM service principal and sets the deployment's ServerSettings
and the organization's S2STenantId. It is run only when that state is not already right, and not
again once the service principal trusts the certificate (it would write the key credential once
more): the settings still missing are then set with Set-CrmAdvancedSetting, to the same values.

The script hard-codes the commercial cloud's hosts. In a national cloud (GCC High, DoD, 21Vianet)
psbridge does what it does through Microsoft Graph of that cloud, and sets
``S2SDefaultAuthorizationServerMetadataUrl`` to that cloud's document; preflight says so first.

Then, with ``teardown`` (the default), the setup client secret, its stored value and the admin
consent go: nothing needs them any more, and a live secret of an app allowed
Application.ReadWrite.All is a standing risk. The app registration stays, named in the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from psbridge.crm.organizations import get_organization
from psbridge.crm.settings import S2S_TENANT_ID
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    Action,
    StepError,
    Wanted,
    WantedState,
    certificate_for,
    graph_client,
    norm_thumbprint,
    setting_row,
    sign_in,
    sweep_leftovers,
)

if TYPE_CHECKING:
    from psbridge.cloud import GraphClient

__all__ = ["S2SState", "certificate_for", "configure_s2s", "entra_facts", "graph_client",
           "remove_setup_access", "s2s_state", "setup_access_left", "sign_in"]

# The ACS / S2S authorization server principal (a first-party id, the same in every cloud).
S2S_PRINCIPAL_ID = "00000001-0000-0000-c000-000000000000"
PRINCIPAL_SETTING = "S2SDefaultAuthorizationServerPrincipalId"
METADATA_SETTING = "S2SDefaultAuthorizationServerMetadataUrl"
SETUP_ACCESS_LEFT = (
    "The setup client secret and admin consent of the app are still in place; the next run of this step "
    "removes them once S2S is configured (teardown), or remove them in the Entra admin center.")
KEPT = ("teardown is off: the setup client secret and admin consent stay in the tenant. Remove them when "
        "they are no longer needed (run this step with teardown on, or in the Entra admin center).")


@dataclass
class S2SState(WantedState):
    """Step 4's state: the service principal's trust in the certificate, and the three settings."""

    @property
    def trusts_certificate(self) -> bool:
        return self.rows[0].ok


def s2s_state(dep: Deployment, graph: GraphClient, thumbprint: str, tenant_id: str) -> S2SState:
    from psbridge.cloud import read_crm_service_principal

    session = dep.session(dep.deployment_server)
    crm = read_crm_service_principal(graph)
    org = get_organization(session, dep.organization)
    trust = Wanted("Dynamics CRM service principal trusts the certificate", norm_thumbprint(thumbprint),
                   ", ".join(k.thumbprint or "?" for k in crm.key_credentials) or "no key credentials",
                   crm.has_certificate(thumbprint))
    return S2SState([
        trust,
        setting_row(session, f"ServerSettings {PRINCIPAL_SETTING}", S2S_PRINCIPAL_ID, "ServerSettings",
                    PRINCIPAL_SETTING),
        setting_row(session, f"ServerSettings {METADATA_SETTING}", dep.cloud.acs_metadata_url,
                    "ServerSettings", METADATA_SETTING, case=True),
        setting_row(session, f"{org.unique_name} {S2S_TENANT_ID}", tenant_id, "Organization", S2S_TENANT_ID,
                    str(org.id)),
    ])


def entra_facts(graph: GraphClient, app_name: str, app_id: str, tenant_id: str,
                client_secret_ref: str) -> tuple[str, str, str]:
    """app id, tenant id and secret reference: handed on by step 3, or looked up (run on its own)."""
    from psbridge.cloud import find_app, tenant_id_from_graph

    if not app_id:
        found = find_app(graph, app_name)
        app_id = found["appId"] if found else ""
    return app_id, tenant_id or tenant_id_from_graph(graph), client_secret_ref


def configure_s2s(dep: Deployment, state: S2SState, pfx_file: str, pfx_password: str, app_id: str,
                  tenant_id: str, client_secret_ref: str, *, graph: GraphClient | None = None,
                  cert_der: bytes = b"", plan: bool = False) -> Action:
    """Make ``state`` all ok: the official script, or (see the module) settings and Graph directly."""
    if state.ok:
        return Action([], plan)
    missing = state.missing
    settings_missing = [r for r in missing if r.entity is not None]
    if state.trusts_certificate or not dep.cloud.script_reaches:
        if state.trusts_certificate:
            how = "the service principal already trusts the certificate, so the script is not run again"
        else:
            how = f"the official script cannot reach the {dep.cloud.name} cloud: psbridge does its work"
        todo = "; ".join(r.what for r in missing)
        if plan:
            return Action([f"set on {dep.deployment_server} ({how}): {todo}"], True)
        done: list[str] = []
        if not state.trusts_certificate:
            from psbridge.cloud import trust_certificate

            if graph is None or not cert_der:
                raise StepError("the certificate and a Graph client are needed to trust it in "
                                f"{dep.cloud.name}")
            done += trust_certificate(graph, cert_der)
        _set(dep, settings_missing)
        done += [f"set {r.what} to {r.wanted} on {dep.deployment_server} ({how})" for r in settings_missing]
        return Action(done, False)
    todo = "; ".join(r.what for r in missing)
    if plan:
        return Action([f"run ConfigureCrmServerSideSync.ps1 on {dep.deployment_server} to set: {todo}"], True)
    from psbridge.crm import configure_server_side_sync
    from psbridge.remote.errors import BridgeError

    swept = sweep_leftovers(dep)
    try:
        ran = configure_server_side_sync(dep.session(dep.deployment_server), Path(pfx_file), pfx_password,
                                         dep.organization, tenant_id, app_id, client_secret_ref,
                                         tools_folder=dep.tools_folder)
    except BridgeError as e:
        raise StepError(f"{e}. {SETUP_ACCESS_LEFT}") from None
    return swept + Action([f"ran ConfigureCrmServerSideSync.ps1 on {dep.deployment_server} to set: {todo}"],
                          False, [ran.result])


def _set(dep: Deployment, rows: list[Wanted]) -> None:
    from psbridge.crm.settings import set_advanced_setting

    session = dep.session(dep.deployment_server)
    for r in rows:
        assert r.entity is not None and r.setting is not None
        set_advanced_setting(session, r.entity, r.setting, r.wanted, r.org_id)


def remove_setup_access(graph: GraphClient, app_name: str, client_secret_ref: str, *, teardown: bool,
                        configured: bool, plan: bool = False) -> Action:
    """After step 4: take back the client secret (and its stored value) and the admin consent."""
    from psbridge.cloud import get_app, setup_access
    from psbridge.cloud import teardown as take_back

    if not teardown:
        return Action([], plan, [KEPT])
    app = get_app(graph, app_name)
    if plan:
        left = setup_access(graph, app) if app is not None else []
        if not configured and not left:
            left = ["the client secret and consent step 3 adds"]
        return Action([f"remove from {app_name!r}: " + "; ".join(left)] if left else [], True)
    if not configured or app is None:
        return Action([])
    report = take_back(graph, app, client_secret_ref)
    changes = []
    if report.secrets_removed:
        changes.append("removed client secret " + ", ".join(report.secrets_removed))
    if report.secret_ref_deleted:
        changes.append(f"deleted the stored client secret at {report.secret_ref_deleted}")
    if report.role_assignments_removed:
        changes.append("revoked admin consent: " + ", ".join(sorted(report.role_assignments_removed)))
    if report.delegated_grants_removed:
        changes.append(f"revoked the delegated permission grant ({report.delegated_grants_removed})")
    return Action(changes, False, [report] if changes else [])


def setup_access_left(graph: GraphClient, app_name: str) -> list[str]:
    """What of the setup's client secret and consent is in the tenant now ([] after a teardown)."""
    from psbridge.cloud import get_app, setup_access

    app = get_app(graph, app_name)
    return setup_access(graph, app) if app is not None else []
