"""Get-Command over the wire, as a client of a Windows PowerShell 5.1 server receives it.

What the tests hold the lab to: ParameterMetadata travels with its type data's serialization
set only; expanding ParameterSets and their Parameters yields CommandParameterInfo objects (so
IsMandatory can be read the structured way); syntax strings and ``-Syntax`` read as 5.1 prints
them; the official scripts' parameters are mandatory as Microsoft documents them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands_kit import RECONFIGURE, SYNC
from pypsrp.powershell import PowerShell, RunspacePool

from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

PASSWORD = "Crm-admin1"
SMA = "System.Management.Automation"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunspacePool]:
    state: Path = tmp_path_factory.mktemp("getcommand")
    World.seed(state, servers=1, orgs=1)
    ep: Endpoint = start_endpoint(EndpointSpec("CRM01", "http", {"LAB\\crmadmin": PASSWORD}, state, pace=0))
    w = new_wsman("127.0.0.1", port=ep.port, username="LAB\\crmadmin", password=PASSWORD, ssl=False,
                  auth="ntlm", operation_timeout=10, read_timeout=20)
    with RunspacePool(w) as p:
        yield p
    ep.stop()


def chain(pool: RunspacePool, name: str, *expand: str, **params: Any) -> list[Any]:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Command").add_parameter("Name", name)
    for k, v in params.items():
        ps.add_parameter(k, v)
    for prop in expand:
        ps.add_cmdlet("Select-Object").add_parameter("ExpandProperty", prop)
    out = ps.invoke()
    assert not ps.had_errors, [str(e) for e in ps.streams.error]
    return list(out)


def props(obj: Any) -> dict[str, Any]:
    return {**obj.adapted_properties, **obj.extended_properties}


def items(value: Any) -> list[str]:
    """A typed collection pypsrp leaves as XML (a ReadOnlyCollection`1 of strings): its items."""
    import xml.etree.ElementTree as ET

    if isinstance(value, list):
        return value
    return [el.text or "" for el in ET.fromstring(value._xml).iter("S")]  # noqa: S314


def test_parameter_metadata_carries_its_serialization_set_only(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Command").add_parameter("Name", SYNC)
    ps.add_cmdlet("Select-Object").add_parameter("ExpandProperty", "Parameters")
    ps.add_cmdlet("Select-Object").add_parameter("ExpandProperty", "Values")
    ps.invoke()
    # pypsrp turns Deserialized.ParameterMetadata into its own object: read the raw XML instead.
    first = ps.output[0]
    assert first.name == "privateKeyPassword"
    assert first.parameter_type == "System.Security.SecureString"
    assert first.switch_parameter is False and first.dynamic is False and first.aliases == []
    raw = [o for o in _raw_objects(pool, SYNC, "Parameters", "Values")
           if o["types"][0] == f"{SMA}.ParameterMetadata"]
    assert len(raw) == 17  # six of the script's own, eleven common parameters
    serialized = ["Name", "ParameterType", "Aliases", "IsDynamic", "SwitchParameter"]
    assert all(o["props"] == serialized for o in raw)


def _raw_objects(pool: RunspacePool, name: str, *expand: str) -> list[dict[str, Any]]:
    """The output objects as the server serialized them: type names and property names."""
    import xml.etree.ElementTree as ET

    seen: list[dict[str, Any]] = []
    ps = PowerShell(pool)
    original = pool._serializer.deserialize

    def keep(element: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(element, str):
            element = ET.fromstring(element)  # noqa: S314
        if element.tag == "Obj" and element.find("TN") is not None:
            props_el = element.find("Props")
            seen.append({
                "types": [t.text for t in element.findall("TN/T")],
                "props": [p.attrib.get("N") for p in (props_el if props_el is not None else [])],
            })
        return original(element, *args, **kwargs)

    pool._serializer.deserialize = keep  # type: ignore[method-assign]
    try:
        ps.add_cmdlet("Get-Command").add_parameter("Name", name)
        for prop in expand:
            ps.add_cmdlet("Select-Object").add_parameter("ExpandProperty", prop)
        ps.invoke()
    finally:
        pool._serializer.deserialize = original  # type: ignore[method-assign]
    return [s for s in seen if s["types"]]


def test_expanded_parameter_sets_are_command_parameter_info_objects(pool: RunspacePool) -> None:
    infos = chain(pool, RECONFIGURE, "ParameterSets", "Parameters")
    assert infos[0].types[0] == f"{SMA}.CommandParameterInfo"
    by_name = {props(i)["Name"]: props(i) for i in infos}
    mandatory = {n for n, p in by_name.items() if p["IsMandatory"]}
    # Microsoft's pages: only -updateCrm and -storeFindType are optional.
    assert mandatory == {"certificateFile", "password", "certificateType", "serviceAccount"}
    assert by_name["certificateFile"]["Position"] == 0 and by_name["updateCrm"]["Position"] == -2147483648
    assert by_name["password"]["ParameterType"] == "System.String"
    assert items(by_name["ErrorAction"]["Aliases"]) == ["ea"]
    assert f"{SMA}.ParameterAttribute" in items(by_name["password"]["Attributes"])
    sync = {props(i)["Name"]: props(i) for i in chain(pool, SYNC, "ParameterSets", "Parameters")}
    own = ["privateKeyPassword", "pfxFilePath", "organizationName", "microsoftEntraIdTenantIdOrDomainName",
           "ClientID", "ClientSecret"]
    assert all(sync[n]["IsMandatory"] for n in own)
    assert [sync[n]["Position"] for n in own] == [0, 1, 2, 3, 4, 5]
    assert sync["pfxFilePath"]["HelpMessage"] == "Enter path of Personal Information Exchange file."


def test_parameter_set_info_and_its_syntax(pool: RunspacePool) -> None:
    [info] = chain(pool, RECONFIGURE, "ParameterSets")
    p = props(info)
    assert (p["Name"], p["IsDefault"]) == ("__AllParameterSets", True)
    assert str(info) == (
        "[-certificateFile] <string> [-password] <string> [-certificateType] <string> "
        "[-serviceAccount] <string> [[-storeFindType] <string>] [-updateCrm] [<CommonParameters>]"
    )
    # Past the depth, the set's parameters are the ToString of each CommandParameterInfo.
    assert items(p["Parameters"])[0] == f"{SMA}.CommandParameterInfo"


def test_get_command_syntax_as_51_prints_it(pool: RunspacePool) -> None:
    [sync] = chain(pool, SYNC, Syntax=True)
    assert sync == (
        "ConfigureCrmServerSideSync.ps1 [-privateKeyPassword] <securestring> [-pfxFilePath] <string> "
        "[-organizationName] <string> [-microsoftEntraIdTenantIdOrDomainName] <string> [-ClientID] <string> "
        "[-ClientSecret] <string> [<CommonParameters>]\r\n"
    )
    [item] = chain(pool, "Get-Item", Syntax=True)
    assert item.startswith("\r\nGet-Item [-Path] <string[]> [-Filter <string>] ")
    assert "\r\n\r\nGet-Item -LiteralPath <string[]> [-Filter <string>]" in item
    assert "[-Credential <pscredential>]" in item and item.endswith("[<CommonParameters>]\r\n")
    [remove] = chain(pool, "Remove-Item", Syntax=True)
    assert "[-WhatIf] [-Confirm] [<CommonParameters>]" in remove
    [sleep] = chain(pool, "Start-Sleep", Syntax=True)
    assert sleep == ("\r\nStart-Sleep [-Seconds] <int> [<CommonParameters>]\r\n\r\n"
                     "Start-Sleep -Milliseconds <int> [<CommonParameters>]\r\n")


def test_command_info_past_the_depth(pool: RunspacePool) -> None:
    [script] = chain(pool, SYNC)
    p = props(script)
    assert script.types[:2] == [f"{SMA}.ExternalScriptInfo", f"{SMA}.CommandInfo"]
    assert p["CommandType"] == "ExternalScript" and p["Visibility"] == "Public"  # enums as their names
    assert p["Definition"] == SYNC and p["Name"] == "ConfigureCrmServerSideSync.ps1"
    assert isinstance(p["ScriptBlock"], str)  # a script block, as <SBK>
    assert p["Parameters"]["pfxFilePath"] == f"{SMA}.ParameterMetadata"
    assert items(p["ParameterSets"])[0].startswith("[-privateKeyPassword] <securestring>")
    assert p["Namespace"] == "" and p["HelpUri"] == ""
    [cmdlet] = chain(pool, "Get-Item")
    c = props(cmdlet)
    assert c["CommandType"] == "Cmdlet"
    assert c["ImplementingType"] == "Microsoft.PowerShell.Commands.GetItemCommand"
    assert c["Definition"].startswith("\r\nGet-Item [-Path] <string[]>")
    assert c["Namespace"] == "Microsoft.PowerShell.Management" and c["DLL"].endswith(".dll")
