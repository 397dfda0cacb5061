"""The ``Microsoft.Crm.PowerShell`` snap-in cmdlets a lab server runs.

They talk to the deployment (configuration database) as a deployment administrator; the
lab's ``LAB\\crmadmin`` is one, ``LAB\\operator`` is not and is refused. Like the real
snap-in, they exist only once ``Add-PSSnapin Microsoft.Crm.PowerShell`` ran in the runspace.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from psbridge.lab.commands.objects import get_property, new_object
from psbridge.lab.commands.registry import (
    GUID,
    INT,
    OBJECT,
    PSCREDENTIAL,
    STRING,
    SWITCH,
    Param,
    cmdlet,
)
from psbridge.lab.commands.runtime import CRM_SNAPIN, Call
from psbridge.lab.runspace import ErrorRecord

_CRM = "Microsoft.Crm.PowerShell"
SDK = "Microsoft.Xrm.Sdk.Deployment"
ORGANIZATION = f"{SDK}.Organization"
CERTIFICATE = f"{SDK}.Certificate"
CONFIGURATION_ENTITY = f"{SDK}.ConfigurationEntity"
FAULT = "System.ServiceModel.FaultException`1[[Microsoft.Xrm.Sdk.DeploymentServiceFault]]"
NOT_ADMIN = (
    "The current user does not have required permissions (Deployment Administrator role) to "
    "perform this operation."
)
CONFIGURATION_ENTITIES = ("ServerSettings", "Organization", "Deployment")

_DEPLOYMENT_PARAMS = (
    Param("Credential", PSCREDENTIAL, by_property_name=True),
    Param("Diag", SWITCH),
    Param("DwsServerUrl", STRING, by_property_name=True),
    Param("Timeout", INT),
)


def _fault(call: Call, message: str, target: Any = None) -> ErrorRecord:
    """A Deployment Web Service fault as the snap-in reports it."""
    short = call.spec.name.replace("-", "")
    return ErrorRecord(
        message=message,
        category="NotSpecified",
        fqid=f"{short},{call.spec.type_name}",
        target=target,
        target_name="" if target is None else str(target),
        exception_type=FAULT,
        command_name=call.spec.name,
        reason="FaultException`1",
    )


def _require_deployment_admin(call: Call) -> None:
    if not call.world.is_deployment_admin(call.ctx.user):
        call.fail(_fault(call, NOT_ADMIN))


def crm_cmdlet(
    name: str, *params: Param, default_set: str | None = None, should_process: bool = False
) -> Any:
    return cmdlet(
        name,
        f"{_CRM}.{name.replace('-', '')}Cmdlet",
        *params,
        *_DEPLOYMENT_PARAMS,
        source=CRM_SNAPIN,
        default_set=default_set,
        should_process=should_process,
        needs_snapin=CRM_SNAPIN,
    )


# --- objects -------------------------------------------------------------------------------------------


def organization_object(org: dict[str, Any]) -> Any:
    return new_object(
        [ORGANIZATION, f"{SDK}.DeploymentEntity", f"{SDK}.DeploymentObject"],
        {
            "BaseCurrencyCode": org.get("base_currency_code", "USD"),
            "BaseCurrencyName": "US Dollar",
            "BaseCurrencyPrecision": 2,
            "BaseCurrencySymbol": "$",
            "BaseLanguageCode": org.get("base_language_code", 1033),
            "DatabaseName": org["database_name"],
            "FriendlyName": org["friendly_name"],
            "Id": uuid.UUID(org["id"]),
            "SqlCollation": "Latin1_General_CI_AI",
            "SqlServerName": org["sql_server"],
            "SrsUrl": org["srs_url"],
            "SqmIsEnabled": False,
            "State": org["state"],
            "UniqueName": org["name"],
            "Version": org["version"],
            "ExtensionData": "System.Runtime.Serialization.ExtensionDataObject",
        },
        ORGANIZATION,
    )


def certificate_record_object(cert: dict[str, Any]) -> Any:
    return new_object(
        [CERTIFICATE, f"{SDK}.DeploymentEntity", f"{SDK}.DeploymentObject"],
        {
            "CertificateType": cert["certificate_type"],
            "Data": cert["data"],
            "ExtensionData": "System.Runtime.Serialization.ExtensionDataObject",
            "Id": uuid.UUID(cert["id"]),
            "Name": cert["name"],
            "StoreFindType": cert["store_find_type"],
            "StoreLocation": cert["store_location"],
            "StoreName": cert["store_name"],
        },
        CERTIFICATE,
    )


# --- organizations ------------------------------------------------------------------------------------


@crm_cmdlet(
    "Get-CrmOrganization",
    Param("Name", STRING, position=0, sets=("P1",)),
    Param("Id", GUID, position=0, sets=("P2",)),
    default_set="P1",
)
def get_crm_organization(call: Call) -> None:
    _require_deployment_admin(call)
    if call.has("Id") or call.has("Name"):
        key = str(call.get("Id") or call.get("Name"))
        org = call.world.organization(key)
        if org is None or (call.has("Name") and org["name"].lower() != key.lower()):
            what = f"Id = {key}" if call.has("Id") else f"UniqueName = {key}"
            call.fail(_fault(call, f"Organization with {what} does not exist.", key))
        call.write(organization_object(org))
        return
    for o in call.world.data["organizations"]:
        call.write(organization_object(o))


# --- advanced settings ----------------------------------------------------------------------------------


def _entity_name(call: Call, given: str) -> str:
    for name in CONFIGURATION_ENTITIES:
        if name.lower() == given.lower():
            return name
    call.fail(_fault(call, f"The configuration entity {given} does not exist.", given))


def _org_for(call: Call, entity: str) -> dict[str, Any]:
    if not call.has("Id"):
        call.fail(_fault(call, f"An Id is required to read or update the {entity} configuration entity."))
    org = call.world.organization(str(call["Id"]))
    if org is None:
        call.fail(_fault(call, f"Organization with Id = {call['Id']} does not exist.", str(call["Id"])))
    return org


@crm_cmdlet(
    "Get-CrmAdvancedSetting",
    Param("ConfigurationEntityName", STRING, mandatory=True, pipeline=True),
    Param("Setting", STRING, mandatory=True),
    Param("Id", GUID),
)
def get_crm_advanced_setting(call: Call) -> None:
    _require_deployment_admin(call)
    entity = _entity_name(call, call["ConfigurationEntityName"])
    setting = call["Setting"]
    if entity == "Organization":
        values = _org_for(call, entity)["settings"]
    else:
        values = call.world.data["deployment"]["server_settings"]
    for k, v in values.items():
        if k.lower() == setting.lower():
            call.write(v)
            return
    call.fail(
        _fault(call, f"The setting {setting} does not exist on configuration entity {entity}.", setting)
    )


def set_settings(call: Call, entity: str, org_id: str | None, attributes: dict[str, Any]) -> None:
    """Write configuration-database columns (what Set-CrmAdvancedSetting changes)."""
    with call.world.change() as data:
        if entity == "Organization":
            org = next(o for o in data["organizations"] if o["id"].lower() == str(org_id).lower())
            target = org["settings"]
        else:
            target = data["deployment"]["server_settings"]
        for key, value in attributes.items():
            existing = next((k for k in target if k.lower() == key.lower()), key)
            target[existing] = (
                None if value is None else (value if isinstance(value, bool | int) else str(value))
            )


@crm_cmdlet(
    "Set-CrmAdvancedSetting",
    Param("ConfigurationEntityName", STRING, mandatory=True, sets=("Default",)),
    Param("Setting", STRING, mandatory=True, sets=("Default",)),
    Param("Value", OBJECT, mandatory=True, sets=("Default",)),
    Param("Id", GUID, sets=("Default",)),
    Param("Entity", CONFIGURATION_ENTITY, mandatory=True, pipeline=True, sets=("Entity",)),
    default_set="Default",
    should_process=True,
)
def set_crm_advanced_setting(call: Call) -> None:
    _require_deployment_admin(call)
    if call.bound.set_name == "Entity":
        entity_obj = call.get("Entity") or (call.input or [None])[0]
        entity = _entity_name(call, str(get_property(entity_obj, "LogicalName", "")))
        org_id = get_property(entity_obj, "Id", None)
        attributes = _attributes(get_property(entity_obj, "Attributes", []))
    else:
        entity = _entity_name(call, call["ConfigurationEntityName"])
        org_id = call.get("Id")
        attributes = {call["Setting"]: call["Value"]}
    if entity == "Organization":
        if org_id is None:
            call.fail(
                _fault(call, "An Id is required to read or update the Organization configuration entity.")
            )
        if call.world.organization(str(org_id)) is None:
            call.fail(_fault(call, f"Organization with Id = {org_id} does not exist.", str(org_id)))
    if call.get("WhatIf"):
        return
    set_settings(call, entity, None if org_id is None else str(org_id), attributes)


def _attributes(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    out: dict[str, Any] = {}
    for pair in value or []:
        out[str(get_property(pair, "Key"))] = get_property(pair, "Value", None)
    return out


# --- CRM certificates -------------------------------------------------------------------------------


@crm_cmdlet(
    "Get-CrmCertificate",
    Param("Id", GUID, position=0, sets=("P1",)),
    Param("Certificate", CERTIFICATE, position=0, pipeline=True, sets=("P2",)),
    default_set="P1",
)
def get_crm_certificate(call: Call) -> None:
    _require_deployment_admin(call)
    wanted: str | None = None
    if call.has("Id"):
        wanted = str(call["Id"])
    elif call.has("Certificate") or call.input:
        wanted = str(get_property(call.get("Certificate") or call.input[0], "Id"))  # type: ignore[index]
    for c in call.world.crm_certificates():
        if wanted is None or c["id"].lower() == wanted.lower():
            call.write(certificate_record_object(c))


@crm_cmdlet(
    "Remove-CrmCertificate",
    Param("Id", GUID, mandatory=True, position=0, sets=("P1",)),
    Param("Certificate", CERTIFICATE, mandatory=True, position=0, pipeline=True, sets=("P2",)),
    default_set="P1",
    should_process=True,
)
def remove_crm_certificate(call: Call) -> None:
    _require_deployment_admin(call)
    ids = (
        [str(call["Id"])]
        if call.has("Id")
        else [
            str(get_property(c, "Id"))
            for c in ([call["Certificate"]] if call.has("Certificate") else call.input or [])
        ]
    )
    for cert_id in ids:
        known = [c for c in call.world.crm_certificates() if c["id"].lower() == cert_id.lower()]
        if not known:
            call.error(_fault(call, f"Certificate with Id = {cert_id} does not exist.", cert_id))
            continue
        if call.get("WhatIf"):
            continue
        with call.world.change() as data:
            data["deployment"]["certificates"] = [
                c for c in data["deployment"]["certificates"] if c["id"].lower() != cert_id.lower()
            ]


def record_crm_certificate(
    call: Call, certificate_type: str, entry: dict[str, Any], store_find_type: str
) -> str:
    """Store a certificate in the configuration database (one a type: a new one replaces the old)."""
    name = entry["subject"] if store_find_type == "FindBySubjectDistinguishedName" else entry["thumbprint"]
    with call.world.change() as data:
        certs = data["deployment"]["certificates"]
        existing = next((c for c in certs if c["certificate_type"].lower() == certificate_type.lower()), None)
        record = {
            "id": existing["id"] if existing else str(uuid.uuid4()),
            "certificate_type": certificate_type,
            "name": name,
            "data": base64.b64encode(base64.b64decode(entry["der"])).decode("ascii"),
            "thumbprint": entry["thumbprint"],
            "expiration_date": entry["not_after"],
            "store_find_type": store_find_type,
            "store_location": "LocalMachine",
            "store_name": "My",
        }
        if existing:
            certs[certs.index(existing)] = record
        else:
            certs.append(record)
        return str(record["id"])
