"""``ConfigureCrmServerSideSync.ps1``: register the S2S certificate with Entra ID, configure CRM.

The script Microsoft publishes (PowerApps-Samples, ``powershell/ServerSideSync/``), step by step
and request by request as Windows PowerShell 5.1 runs it on a server: load the snap-in; check
the PFX path (``Test-Path -Path``, so wildcards apply); get a Graph token with the app's client
credentials (a form POST); read the tenant id from ``GET /v1.0/organization``; open the PFX
(``Get-PfxData``) and refuse an expired certificate; read the Dynamics CRM service principal
(``$filter`` on its appId, ``$select`` of id, appId, servicePrincipalNames, keyCredentials);
send its key credentials back without ``key`` and ``displayName`` plus the new one with null
dates (``PATCH``); make sure the CRM appId is a service principal name (``PATCH``); set the
deployment's ServerSettings; set the organization's ``S2STenantId``. Any failure: the reason,
"Process Failed.", ``exit 1``, with the pipeline itself completing.

Two consequences of 5.1's semantics the published page does not mention, and the lab keeps:
Graph lists key credentials without their ``key``, so the "already associated" check never
matches and every run adds the certificate again; and the expiry check compares Graph's date
string with a DateTime as strings, so it never finds an expired credential (see
``_ps_less_than_now``). Each step takes the time it takes on a server, times the lab's pace.

The legacy script (CRM 9.1 builds of the MSOnline era) has no ``-ClientID``/``-ClientSecret``:
it signs in with the MSOnline module, which is retired and not on a current server.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import quote

from psbridge.lab.commands.objects import get_property, new_object
from psbridge.lab.commands.registry import SECURE, STRING, Param
from psbridge.lab.commands.runtime import Call
from psbridge.lab.commands.scripts import web
from psbridge.lab.commands.scripts.common import (
    Thrown,
    catch,
    ensure_snapin,
    exit_with_error,
    run_cmdlet,
    step,
)

CRM_APP_ID = "00000007-0000-0000-c000-000000000000"
ACS_PRINCIPAL_ID = "00000001-0000-0000-c000-000000000000"
ACS_METADATA_URL = "https://accounts.accesscontrol.windows.net/metadata/json/1"

# All mandatory. The param block declares no positions, so PowerShell numbers them in order.
PARAMS = (
    Param("privateKeyPassword", SECURE, mandatory=True, position=0,
          help="Enter password for Certificate private key."),
    Param("pfxFilePath", STRING, mandatory=True, position=1,
          help="Enter path of Personal Information Exchange file."),
    Param("organizationName", STRING, mandatory=True, position=2, help="Enter organization name."),
    Param("microsoftEntraIdTenantIdOrDomainName", STRING, mandatory=True, position=3,
          help="Enter Microsoft Entra ID TenantId Or Domain Name."),
    Param("ClientID", STRING, mandatory=True, position=4, help="Enter Reverse Hybrid setup App Id."),
    Param("ClientSecret", STRING, mandatory=True, position=5,
          help="Enter Reverse Hybrid setup App client secret"),
)
LEGACY_PARAMS = PARAMS[:3]


def _check_pfx_path(call: Call) -> str:
    path = call["pfxFilePath"]
    leaf = run_cmdlet(call, "Test-Path", ("Path", path), ("PathType", "Leaf"))
    if not (leaf and leaf[-1] is True):
        exit_with_error(
            call,
            "The specified value of the pfxFilePath parameter isn't valid. Please enter the "
            "correct path of the Personal Information Exchange file.",
        )
    item = run_cmdlet(call, "Get-Item", ("Path", path))
    if str(get_property(item[0], "Extension", "")).lower() != ".pfx":  # -ne ignores case
        exit_with_error(
            call,
            "The specified value of the pfxFilePath parameter isn't valid. Please enter the "
            "path of the .pfx file.",
        )
    return str(path)


# Seconds an HTTPS round trip from a CRM server to Entra ID or Graph takes (scaled by the pace).
ROUND_TRIP = 0.35


def _web(call: Call, which: str, method: str, path: str, **kwargs: Any) -> web.WebResponse:
    step(call, ROUND_TRIP)
    cloud = call.ctx.cloud
    base, host = (cloud.login, web.LOGIN_HOST) if which == "login" else (cloud.graph, web.GRAPH_HOST)
    try:
        return web.call(base, host, method, path, ca_bundle=cloud.ca_bundle, timeout=cloud.timeout, **kwargs)
    except web.WebFailure as e:
        raise Thrown(e.message, e.details) from None


def _update_service_principal(
    call: Call, payload: dict[str, Any], operation: str, sp_id: str, headers: dict[str, str]
) -> None:
    """The script's ``Update-ServicePrincipal``: a failed PATCH exits from inside the function."""
    step(call, ROUND_TRIP)
    cloud = call.ctx.cloud
    try:
        web.call(
            cloud.graph,
            web.GRAPH_HOST,
            "PATCH",
            f"/v1.0/servicePrincipals/{sp_id}",
            headers=headers,
            body=json.dumps(payload),
            ca_bundle=cloud.ca_bundle,
            timeout=cloud.timeout,
        )
    except web.WebFailure as e:
        if e.status is not None:
            exit_with_error(call, f"HTTP error response content: {e.details} for operation: {operation}")
        exit_with_error(call, f"An error occurred:{e.message} for operation: {operation}")


def _ps_less_than_now(end: Any, now: dt.datetime) -> bool:
    """``$credential.endDateTime -lt $currentDateTime`` as Windows PowerShell 5.1 evaluates it.

    5.1's ConvertFrom-Json leaves Graph's ISO 8601 dates as strings, and ``-lt`` converts the
    right operand to the left one's type: the DateTime becomes its invariant-culture text
    (``MM/dd/yyyy HH:mm:ss``) and two strings are compared. "2025-01-01T00:00:00Z" starts with the
    year's "2", the other with the month's "0" or "1", so no date Graph returns is ever less:
    the published script never removes an expired key credential. Only a missing date is
    (``$null`` is less than anything).
    """
    if end is None:
        return True
    if isinstance(end, dt.datetime):
        return end < now
    # The first characters already differ, so culture rules do not change the outcome.
    return str(end).casefold() < _invariant(now).casefold()


def _invariant(t: dt.datetime) -> str:
    """A DateTime in a PowerShell string: invariant culture, ``MM/dd/yyyy HH:mm:ss``."""
    return t.strftime("%m/%d/%Y %H:%M:%S")


def run(call: Call) -> None:
    try:
        _run(call)
    except Thrown as e:
        catch(call, e)


def _run(call: Call) -> None:
    ensure_snapin(call)
    pfx_path = _check_pfx_path(call)

    tenant = call["microsoftEntraIdTenantIdOrDomainName"]
    token = (
        _web(
            call,
            "login",
            "POST",
            f"/{quote(tenant, safe='.-')}/oauth2/v2.0/token",
            form={  # the field names as the real script writes them
                "Grant_Type": "client_credentials",
                "Scope": "https://graph.microsoft.com/.default",
                "Client_Id": call["ClientID"],
                "Client_Secret": call["ClientSecret"],
            },
        ).json()
        or {}
    )
    access = get_property(token, "access_token", "") if isinstance(token, dict) else ""
    headers = {"Authorization": f"Bearer {access}", "Content-Type": "application/json"}
    organization = _web(call, "graph", "GET", "/v1.0/organization", headers=headers).json() or {}
    orgs = get_property(organization, "Value", []) or []
    tenant_ids = [str(get_property(o, "id", "")) for o in orgs]
    tenant_id = tenant_ids[0] if len(tenant_ids) == 1 else " ".join(tenant_ids)

    step(call, 0.3)  # Get-PfxData opens the PFX with its password
    pfx = run_cmdlet(call, "Get-PfxData", ("FilePath", pfx_path), ("Password", call["privateKeyPassword"]))
    certificate = get_property(pfx[0], "EndEntityCertificates")[0]
    thumbprint = str(get_property(certificate, "Thumbprint"))
    not_after = get_property(certificate, "NotAfter")
    credential_value = base64.b64encode(get_property(certificate, "RawData")).decode("ascii")
    now = dt.datetime.now(dt.UTC)
    if not_after < now:
        raise Thrown(
            f"Certificate with thumbprint {thumbprint} has already expired on {_invariant(not_after)}."
        )
    new_key = {
        "endDateTime": None,
        "startDateTime": None,
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": credential_value,
        "displayName": str(get_property(certificate, "Subject")),
    }
    call.host("Done with setting up certificate information.")

    query = quote(f"appId eq '{CRM_APP_ID}'", safe="='")
    found = (
        _web(
            call,
            "graph",
            "GET",
            f"/v1.0/servicePrincipals?$filter={query}&$select=id,appId,servicePrincipalNames,keyCredentials",
            headers=headers,
        ).json()
        or {}
    )
    principals = get_property(found, "Value", []) or []
    principal = principals[0] if len(principals) == 1 else {}
    credentials = list(principal.get("keyCredentials") or [])
    names = list(principal.get("servicePrincipalNames") or [])
    sp_id = str(principal.get("id") or "")

    working = list(credentials)
    create, patch = True, False
    for cred in credentials:
        end = cred.get("endDateTime")
        if _ps_less_than_now(end, now):
            call.write(
                f"Certificate '{cred.get('displayName')}', with thumbprint "
                f"'{cred.get('customKeyIdentifier')}' has expired on {end}. "
                "Removing the certificate principal from "
                f"CRM app with id '{CRM_APP_ID}'."
            )
            working = [c for c in working if c.get("keyId") != cred.get("keyId")]
            patch = True
        elif cred.get("key") == credential_value:
            # Graph lists keyCredentials without their key, so this holds only for a single-object read.
            create = False
            call.write(
                f"Given the certificate is already associated with the principal linked to the appId "
                f"{CRM_APP_ID}. Cert thumbprint {thumbprint}. Not adding the cert principal."
            )
    for_patch = [{k: v for k, v in c.items() if k not in ("key", "displayName")} for c in working]
    if create:
        for_patch.append(new_key)
        call.write(
            f"Adding new certificate principal credential for appId {CRM_APP_ID}. "
            f"Cert thumbprint {thumbprint}"
        )
    if create or patch:
        _update_service_principal(
            call, {"keyCredentials": for_patch}, "createOrUpdateServicePrincipalCredential", sp_id, headers
        )
        call.write(f"Successfully updated key Credentials for app {CRM_APP_ID}. Cert thumbprint {thumbprint}")
    if CRM_APP_ID not in names:
        _update_service_principal(
            call,
            {"servicePrincipalNames": [*names, CRM_APP_ID]},
            "updateServicePrincipalNames",
            sp_id,
            headers,
        )
        call.write(f"Added new service principal name: {CRM_APP_ID}")

    server_settings = new_object(
        ["Microsoft.Xrm.Sdk.Deployment.ConfigurationEntity"],
        {
            "LogicalName": "ServerSettings",
            "Id": None,
            "Attributes": [
                new_object(
                    ["System.Collections.Generic.KeyValuePair`2[[System.String],[System.Object]]"],
                    {"Key": "S2SDefaultAuthorizationServerPrincipalId", "Value": ACS_PRINCIPAL_ID},
                ),
                new_object(
                    ["System.Collections.Generic.KeyValuePair`2[[System.String],[System.Object]]"],
                    {"Key": "S2SDefaultAuthorizationServerMetadataUrl", "Value": ACS_METADATA_URL},
                ),
            ],
        },
    )
    step(call, 0.8)  # the deployment web service writes the configuration database
    run_cmdlet(call, "Set-CrmAdvancedSetting", ("Entity", server_settings))
    call.host("Done with configuration of CRM server for server-based authentication with Online Exchange.")

    organization_name = call["organizationName"]
    step(call, 0.4)
    try:
        org_info = call.run("Get-CrmOrganization", ("Name", organization_name))
    except Exception:  # the script's inner catch: any error of Get-CrmOrganization
        exit_with_error(
            call, f"The specified organization {organization_name} is not a valid CRM organization."
        )
    org_id = get_property(org_info[0], "Id", None) if org_info else None
    if org_id:
        step(call, 0.6)
        run_cmdlet(
            call,
            "Set-CrmAdvancedSetting",
            ("ID", org_id),
            ("configurationEntityName", "Organization"),
            ("setting", "S2STenantId"),
            ("value", tenant_id),
        )
    # Write-Host with two arguments joins them with a space (hence two spaces after the colon).
    call.host(f"S2S Exchange Online Tenant ID is populated in configDB:  {tenant_id}")
    call.host("Process succeeded.", "Green")


def run_legacy(call: Call) -> None:
    """The MSOnline-era script: it cannot sign in where the MSOnline module is gone."""
    try:
        ensure_snapin(call)
        _check_pfx_path(call)
        raise Thrown(
            "The specified module 'MSOnline' was not loaded because no valid module file was found in "
            "any module directory."
        )
    except Thrown as e:
        catch(call, e)
