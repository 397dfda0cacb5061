"""Advanced settings of the configuration database (``Get-/Set-CrmAdvancedSetting``).

An organization's settings are addressed by the organization's id under the configuration
entity ``Organization``; deployment-wide ones (``ServerSettings``) have no id.
"""

from __future__ import annotations

import uuid
from typing import Any

from psbridge.crm import validation
from psbridge.crm.organizations import get_organization
from psbridge.crm.snapin import use_crm_snapin
from psbridge.errors import ChangeNotApplied
from psbridge.intents import intent
from psbridge.remote.command import Cmd
from psbridge.remote.session import Session

S2S_TENANT_ID = "S2STenantId"


def get_advanced_setting(
    session: Session, entity: str, setting: str, org_id: uuid.UUID | str | None = None
) -> Any:
    """The setting's value (None when it is not set)."""
    use_crm_snapin(session)
    ident = validation.guid(org_id, "org_id") if org_id is not None else None
    cmd = Cmd("Get-CrmAdvancedSetting", ID=ident, configurationEntityName=entity, setting=setting)
    out = session.invoke(cmd).output
    if not out:
        return None
    value = out[-1]
    # Depending on the build the cmdlet writes the value itself or a setting object holding it.
    if hasattr(value, "get_ci"):
        for name in ("Value", setting):
            inner = value.get_ci(name, None)
            if inner is not None:
                return inner
    return value


def set_advanced_setting(
    session: Session, entity: str, setting: str, value: Any, org_id: uuid.UUID | str | None = None
) -> None:
    use_crm_snapin(session)
    ident = validation.guid(org_id, "org_id") if org_id is not None else None
    what = f"{entity}{f' {ident}' if ident else ''} {setting} = {value}"
    with intent("set-advanced-setting", session.server, what):
        cmd = Cmd("Set-CrmAdvancedSetting", ID=ident, configurationEntityName=entity, setting=setting,
                  value=value)
        session.invoke(cmd, retry=False)
    session.record("set", what)


def set_tenant_id(session: Session, organization: str, tenant_id: str | uuid.UUID) -> bool:
    """Step 5: the organization's ``S2STenantId``. Returns False when it already had that value.

    Read back after writing: the step is done only when the server says so.
    """
    tid = str(validation.guid(tenant_id, "tenant_id"))
    org = get_organization(session, organization)
    current = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
    if current is not None and str(current).lower() == tid:
        session.record("unchanged", f"{org.unique_name} {S2S_TENANT_ID} is already {tid}")
        return False
    set_advanced_setting(session, "Organization", S2S_TENANT_ID, tid, org.id)
    after = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
    if str(after).lower() != tid:
        raise ChangeNotApplied(
            f"{S2S_TENANT_ID} of {org.unique_name} reads {after!r} after it was set to {tid} "
            f"on {session.server}"
        )
    return True
