"""``Get-CimInstance Win32_Service``: the CRM services of a lab server and the account each runs as.

A server with the Asynchronous Processing Service role runs ``MSCRMAsyncService`` and
``MSCRMAsyncService$maintenance`` as the lab's service account (``service_account`` in lab.json),
the account CertificateReconfiguration.ps1 is told to grant read on the S2S key. Only the WQL
filters a reader needs are understood: ``Name='...'`` terms joined by ``OR``.
"""

from __future__ import annotations

import re
from typing import Any

from psbridge.errors import LabConfigError
from psbridge.lab.commands.objects import get_property, new_object
from psbridge.lab.commands.registry import STRING, STRINGS, Param, cmdlet
from psbridge.lab.commands.runtime import Call
from psbridge.lab.webapi.serversidesync import ASYNC_ROLE

ASYNC_SERVICES = (("MSCRMAsyncService", "Microsoft Dynamics CRM Asynchronous Processing Service"),
                  ("MSCRMAsyncService$maintenance",
                   "Microsoft Dynamics CRM Asynchronous Processing Service (maintenance)"))
_TERM = re.compile(r"^\s*Name\s*=\s*'([^']*)'\s*$", re.IGNORECASE)
_TYPE = "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"


def service_account(call: Call) -> str:
    from psbridge.lab.config import LabConfig
    from psbridge.lab.world import SERVICE_ACCOUNTS

    try:
        return LabConfig.load(call.ctx.state_dir).service_account
    except LabConfigError:
        # A world without lab.json (the commands' own tests): the world's first service account.
        return SERVICE_ACCOUNTS[0]


def _services(call: Call) -> list[Any]:
    roles = [r.lower().replace(" ", "") for r in call.world.server_roles(call.ctx.server)]
    if not any(ASYNC_ROLE in r for r in roles):
        return []
    account = service_account(call)
    return [new_object(
        ["Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Service",
         "Microsoft.Management.Infrastructure.CimInstance"],
        {"Name": name, "DisplayName": display, "State": "Running", "StartMode": "Auto", "StartName": account,
         "PSComputerName": None}, f"Win32_Service (Name = \"{name}\")") for name, display in ASYNC_SERVICES]


def _names(text: str) -> list[str] | None:
    terms = re.split(r"\s+OR\s+", text.strip(), flags=re.IGNORECASE)
    matched = [_TERM.match(t) for t in terms]
    return [m.group(1) for m in matched if m] if all(matched) else None


@cmdlet(
    "Get-CimInstance",
    _TYPE,
    Param("ClassName", STRING, mandatory=True, position=0, sets=("ClassNameComputerSet",)),
    Param("Filter", STRING, sets=("ClassNameComputerSet",)),
    Param("Namespace", STRING, sets=("ClassNameComputerSet",)),
    Param("Property", STRINGS, aliases=("SelectProperties",), sets=("ClassNameComputerSet",)),
    source="CimCmdlets",
    default_set="ClassNameComputerSet",
)
def get_cim_instance(call: Call) -> None:
    if str(call["ClassName"]).lower() != "win32_service" or \
            str(call.get("Namespace") or "root/cimv2").lower().replace("\\", "/") != "root/cimv2":
        call.error(call.record("Invalid class ", "MetadataError", f"HRESULT 0x80041010,{_TYPE}",
                               target=call["ClassName"],
                               exception="Microsoft.Management.Infrastructure.CimException"))
        return
    wanted = _names(call["Filter"]) if call.get("Filter") else None
    if call.get("Filter") and wanted is None:
        call.error(call.record("Invalid query ", "InvalidArgument", f"HRESULT 0x80041017,{_TYPE}",
                               target=call["Filter"],
                               exception="Microsoft.Management.Infrastructure.CimException"))
        return
    for service in _services(call):
        name = str(get_property(service, "Name"))
        if wanted is None or name.lower() in (w.lower() for w in wanted):
            call.write(service)
