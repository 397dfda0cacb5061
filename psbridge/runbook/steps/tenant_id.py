"""Step 5 — the organization's ``S2STenantId``: read back, and set only if it differs.

The current ConfigureCrmServerSideSync.ps1 of step 4 already sets it; this step verifies it, as
the procedure asks, and repairs a value that drifted since. The tenant id comes from Graph (step 3)
or the tenant's OpenID metadata (``Get-MsolCompanyInformation`` is retired).
"""

from __future__ import annotations

from psbridge.crm.organizations import get_organization
from psbridge.crm.settings import S2S_TENANT_ID
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import Action, WantedState, discover_tenant_id, setting_row

__all__ = ["discover_tenant_id", "set_tenant_id", "tenant_id_state"]


def tenant_id_state(dep: Deployment, tenant_id: str) -> WantedState:
    session = dep.session(dep.deployment_server)
    org = get_organization(session, dep.organization)
    return WantedState([setting_row(session, f"{org.unique_name} ({org.id}) {S2S_TENANT_ID}", tenant_id,
                                 "Organization", S2S_TENANT_ID, str(org.id))])


def set_tenant_id(dep: Deployment, tenant_id: str, *, plan: bool = False) -> Action:
    from psbridge.crm.settings import set_tenant_id as crm_set_tenant_id

    if tenant_id_state(dep, tenant_id).ok:
        return Action([], plan)
    what = f"{dep.organization} {S2S_TENANT_ID} to {tenant_id}"
    if plan:
        return Action([f"set {what}"], True)
    crm_set_tenant_id(dep.session(dep.deployment_server), dep.organization, tenant_id)
    return Action([f"set {what}"])
