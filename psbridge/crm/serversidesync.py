"""Step 4: configure server-to-server auth with the official ConfigureCrmServerSideSync.ps1.

The script talks to Entra ID and Graph itself; psbridge hands it parameters as parameters
(the PFX password as a SecureString, never through Invoke-Expression), then reads back what the
script should have set. The script reports failure only by "Process Failed." and ``exit 1``;
:meth:`Session.run_script` turns that into :class:`ScriptFailed` carrying its own messages.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath

from psbridge.crm import validation
from psbridge.crm.inputs import secret
from psbridge.crm.leftovers import UPLOAD_FOLDER
from psbridge.crm.organizations import get_organization
from psbridge.crm.scripts import (
    CONFIGURE_SERVER_SIDE_SYNC,
    SERVER_SIDE_SYNC_PARAMETERS,
    TOOLS_FOLDER,
    require_parameters,
    script_path,
)
from psbridge.crm.settings import S2S_TENANT_ID, get_advanced_setting
from psbridge.errors import ChangeNotApplied
from psbridge.intents import intent
from psbridge.remote.command import SecureString
from psbridge.remote.errors import ValidationError
from psbridge.remote.paths import server_path
from psbridge.remote.result import Result
from psbridge.remote.session import Session
from psbridge.remote.transfer import uploaded
from psbridge.secrets import Secret, SecretRef


@dataclass(frozen=True)
class ServerSideSyncConfiguration:
    organization: str
    organization_id: uuid.UUID
    tenant_id: str
    thumbprint: str
    result: Result

    def facts(self) -> dict[str, str]:
        return {
            "organization_id": str(self.organization_id),
            "tenant_id": self.tenant_id,
            "thumbprint": self.thumbprint,
        }

    def _repr_html_(self) -> str:
        return self.result._repr_html_()


def configure_server_side_sync(
    session: Session,
    pfx: str | Path,
    pfx_password: Secret | SecretRef | str,
    organization: str,
    tenant: str | uuid.UUID,
    client_id: str | uuid.UUID,
    client_secret: Secret | SecretRef | str,
    *,
    tools_folder: str | PurePath = TOOLS_FOLDER,
    upload_folder: str | PurePath = UPLOAD_FOLDER,
) -> ServerSideSyncConfiguration:
    """Run ConfigureCrmServerSideSync.ps1 for one organization and verify ``S2STenantId``."""
    # --- everything checked before anything changes -----------------------------------------
    org_name = validation.organization_name(organization)
    tenant_text = validation.tenant(tenant)
    app_id = validation.guid(client_id, "client_id")
    key_password = secret(pfx_password, "pfx_password")
    app_secret = secret(client_secret, "client_secret")
    info = validation.inspect_pfx(pfx, key_password)
    script = script_path(CONFIGURE_SERVER_SIDE_SYNC, tools_folder)
    folder = server_path(upload_folder, "upload_folder")
    if any(c in str(folder) for c in "[]"):
        # The script checks -pfxFilePath with Test-Path -Path: brackets are wildcards there.
        raise ValidationError(
            "upload_folder",
            f"{str(folder)!r} contains '[' or ']'; {CONFIGURE_SERVER_SIDE_SYNC} checks -pfxFilePath with "
            "Test-Path -Path, which reads them as wildcards and would not find the PFX: choose another "
            "folder",
        )
    require_parameters(session, script, SERVER_SIDE_SYNC_PARAMETERS)
    org = get_organization(session, org_name)

    what = (f"{CONFIGURE_SERVER_SIDE_SYNC} for {org.unique_name}: key credential {info.thumbprint} on the "
            "Dynamics CRM service principal, ServerSettings, S2STenantId")
    with uploaded(session, Path(pfx), folder / f"{info.thumbprint}.pfx") as receipt, \
            intent("configure-server-side-sync", session.server, what):
        result = session.run_script(
            script,
            privateKeyPassword=SecureString(key_password),
            pfxFilePath=str(receipt.path),
            organizationName=org.unique_name,
            microsoftEntraIdTenantIdOrDomainName=tenant_text,
            ClientID=str(app_id),
            ClientSecret=app_secret,
        )
    tenant_id = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
    if tenant_id in (None, ""):
        raise ChangeNotApplied(
            f"{CONFIGURE_SERVER_SIDE_SYNC} reported success but {org.unique_name} has no {S2S_TENANT_ID} "
            f"on {session.server}"
        )
    tenant_id = str(tenant_id)
    if validation.is_guid(tenant_text) and tenant_id.lower() != tenant_text:
        raise ChangeNotApplied(
            f"{org.unique_name} {S2S_TENANT_ID} is {tenant_id} on {session.server}, "
            f"not the tenant {tenant_text}"
        )
    session.record(
        "configured", f"{org.unique_name}: {S2S_TENANT_ID} = {tenant_id}, certificate {info.thumbprint}"
    )
    return ServerSideSyncConfiguration(org.unique_name, org.id, tenant_id, info.thumbprint, result)
