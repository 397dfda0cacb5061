"""The Windows PowerShell 5.1 core commands a lab server runs: snap-ins, variables, Select-Object."""

from __future__ import annotations

from typing import Any

import psrpcore.types as pst

from psbridge.lab.commands.objects import (
    custom_object,
    get_property,
    new_object,
    property_names,
    to_string,
    type_names_of,
)
from psbridge.lab.commands.registry import (
    INT,
    OBJECT,
    OBJECTS,
    PSOBJECT,
    STRING,
    STRINGS,
    SWITCH,
    Param,
    cmdlet,
)
from psbridge.lab.commands.runtime import CRM_SNAPIN, SNAPINS, Call, PipelineStopped
from psbridge.lab.runspace import psversion_table

CORE = "Microsoft.PowerShell.Core"
UTILITY = "Microsoft.PowerShell.Utility"
_PS = "Microsoft.PowerShell.Commands"

# What `Get-PSSnapin -Registered` lists on a CRM server: the snap-in the CRM setup registers.
REGISTERED = {CRM_SNAPIN.lower(): CRM_SNAPIN}


def _snapin_info(name: str) -> Any:
    core = name == CORE
    return new_object(
        ["System.Management.Automation.PSSnapInInfo"],
        {
            "Name": name,
            "IsDefault": core,
            "ApplicationBase": (
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0"
                if core
                else "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
            ),
            "AssemblyName": (
                f"{name}, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
                if core
                else f"{name}, Version=9.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
            ),
            "ModuleName": "",
            "PSVersion": pst.PSVersion("5.1.17763.1" if core else "2.0"),
            "Version": pst.PSVersion("3.0.0.0" if core else "9.0.0.0"),
            "Types": "System.Collections.ObjectModel.Collection`1[System.String]",
            "Formats": "System.Collections.ObjectModel.Collection`1[System.String]",
            "Description": (
                "This Windows PowerShell snap-in contains cmdlets used to manage components of "
                "Windows PowerShell."
                if core
                else "Microsoft Dynamics CRM PowerShell snap-in for deployment administration."
            ),
            "Vendor": "Microsoft Corporation",
            "LogPipelineExecutionDetails": False,
        },
        name,
    )


@cmdlet(
    "Add-PSSnapin",
    f"{_PS}.AddPSSnapinCommand",
    Param("Name", STRINGS, mandatory=True, position=0, by_property_name=True),
    Param("PassThru", SWITCH),
)
def add_pssnapin(call: Call) -> None:
    loaded = call.snapins()
    for name in call["Name"]:
        known = REGISTERED.get(name.lower())
        if known is None:
            call.error(
                call.record(
                    f"The Windows PowerShell snap-in '{name}' is not installed on this computer.",
                    "InvalidArgument",
                    "AddPSSnapInRead",
                    target=name,
                    exception="System.Management.Automation.PSArgumentException",
                )
            )
            continue
        if known in loaded:
            call.error(
                call.record(
                    f"Cannot add Windows PowerShell snap-in {known} because it is already added. "
                    "Verify the name of the snap-in, and then try again.",
                    "InvalidArgument",
                    "AddPSSnapInRead",
                    target=known,
                    exception="System.Management.Automation.PSArgumentException",
                )
            )
            continue
        loaded.append(known)
        if call.get("PassThru"):
            call.write(_snapin_info(known))


@cmdlet(
    "Get-PSSnapin",
    f"{_PS}.GetPSSnapinCommand",
    Param("Name", STRINGS, position=0),
    Param("Registered", SWITCH),
)
def get_pssnapin(call: Call) -> None:
    names = list(REGISTERED.values()) if call.get("Registered") else [CORE, *call.snapins()]
    wanted = call.get("Name")
    if not wanted:
        call.write([_snapin_info(n) for n in names])
        return
    import fnmatch

    for pattern in wanted:
        hits = [n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower())]
        if not hits and not any(c in pattern for c in "*?["):
            call.error(
                call.record(
                    f"No Windows PowerShell snap-ins matching the pattern '{pattern}' were found. "
                    "Check the pattern and then try the command again.",
                    "InvalidArgument",
                    "NoPSSnapInsFound",
                    target=pattern,
                    exception="System.Management.Automation.PSArgumentException",
                )
            )
        call.write([_snapin_info(n) for n in hits])


# --- variables ----------------------------------------------------------------------------------


def _variable(name: str, value: Any) -> Any:
    return new_object(
        ["System.Management.Automation.PSVariable"],
        {
            "Name": name,
            "Description": "",
            "Value": value,
            "Visibility": "Public",
            "Module": None,
            "ModuleName": "",
            "Options": "None",
            "Attributes": "System.Collections.ObjectModel.Collection`1[System.Attribute]",
        },
        "System.Management.Automation.PSVariable",
    )


def _automatic() -> dict[str, Any]:
    """Automatic variables every Windows PowerShell 5.1 session on the server has."""
    table = pst.PSDict(psversion_table())
    return {
        "ErrorActionPreference": "Continue",
        "PSHOME": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
        "PSCulture": "en-US",
        "PSUICulture": "en-US",
        "PSVersionTable": table,
    }


def _visible(variables: dict[str, Any]) -> dict[str, Any]:
    """The session's variables: automatic ones, then what was set (which wins)."""
    own = {k: v for k, v in variables.items() if not k.startswith("\x00")}
    merged = {k: v for k, v in _automatic().items() if k.lower() not in {o.lower() for o in own}}
    merged.update(own)
    return merged


def _lookup(variables: dict[str, Any], name: str) -> tuple[str, Any] | None:
    for k, v in _visible(variables).items():
        if k.lower() == name.lower():
            return k, v
    return None


@cmdlet(
    "Get-Variable",
    f"{_PS}.GetVariableCommand",
    Param("Name", STRINGS, position=0, pipeline=True, by_property_name=True),
    Param("ValueOnly", SWITCH),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("Scope", STRING),
)
def get_variable(call: Call) -> None:
    import fnmatch

    variables = call.ctx.variables
    names = call.get("Name") or (call.input and [to_string(i) for i in call.input]) or ["*"]
    for pattern in names:
        if any(c in pattern for c in "*?["):
            hits = sorted(
                (k, v)
                for k, v in _visible(variables).items()
                if fnmatch.fnmatchcase(k.lower(), pattern.lower())
            )
        else:
            found = _lookup(variables, pattern)
            if found is None:
                call.error(
                    call.record(
                        f"Cannot find a variable with the name '{pattern}'.",
                        "ObjectNotFound",
                        "VariableNotFound",
                        target=pattern,
                        exception="System.Management.Automation.ItemNotFoundException",
                    )
                )
                continue
            hits = [found]
        for k, v in hits:
            call.write(v if call.get("ValueOnly") else _variable(k, v), enumerate_collection=False)


@cmdlet(
    "Set-Variable",
    f"{_PS}.SetVariableCommand",
    Param("Name", STRINGS, mandatory=True, position=0, by_property_name=True),
    Param("Value", OBJECT, position=1, pipeline=True, by_property_name=True),
    Param("Scope", STRING),
    Param("PassThru", SWITCH),
    Param("Force", SWITCH),
    Param("Description", STRING),
    Param("Option", STRING),
    Param("Include", STRINGS),
    Param("Exclude", STRINGS),
    Param("Visibility", STRING),
    should_process=True,
)
def set_variable(call: Call) -> None:
    value = call.get("Value")
    if value is None and call.input:
        value = call.input[-1] if len(call.input) == 1 else list(call.input)
    if call.get("WhatIf"):
        return
    for name in call["Name"]:
        found = _lookup(call.ctx.variables, name)
        key = found[0] if found else name
        call.ctx.variables[key] = value
        if call.get("PassThru"):
            call.write(_variable(key, value))


# --- Select-Object --------------------------------------------------------------------------------


@cmdlet(
    "Select-Object",
    f"{_PS}.SelectObjectCommand",
    Param("InputObject", PSOBJECT, pipeline=True),
    Param("Property", OBJECTS, position=0, sets=("DefaultParameter", "SkipLastParameter")),
    Param("ExcludeProperty", STRINGS, sets=("DefaultParameter", "SkipLastParameter")),
    Param("ExpandProperty", STRING, sets=("DefaultParameter", "SkipLastParameter")),
    Param("Unique", SWITCH),
    Param("Last", INT, sets=("DefaultParameter",)),
    Param("First", INT, sets=("DefaultParameter",)),
    Param("Skip", INT, sets=("DefaultParameter",)),
    Param("SkipLast", INT, sets=("SkipLastParameter",)),
    Param("Wait", SWITCH, sets=("DefaultParameter", "IndexParameter")),
    Param("Index", "System.Int32[]", sets=("IndexParameter",)),
    source=UTILITY,
    default_set="DefaultParameter",
)
def select_object(call: Call) -> None:
    items: list[Any] = list(call.input or [])
    if call.has("InputObject"):
        items = [call["InputObject"]]
    if call.has("Skip"):
        items = items[call["Skip"] :]
    if call.has("SkipLast"):
        items = items[: max(0, len(items) - call["SkipLast"])]
    if call.has("First") or call.has("Last"):
        first = items[: call["First"]] if call.has("First") else []
        last = items[len(items) - call["Last"] :] if call.has("Last") and call["Last"] > 0 else []
        items = first + last if call.has("First") else last
    if call.has("Index"):
        items = [items[i] for i in call["Index"] if -len(items) <= i < len(items)]
    properties = call.get("Property")
    expand = call.get("ExpandProperty")
    results: list[Any] = []
    for item in items:
        if properties:
            results.append(_selected(call, item, [str(p) for p in properties], call.get("ExcludeProperty")))
            continue
        if expand:
            try:
                value = get_property(item, expand)
            except KeyError:
                call.error(
                    call.record(
                        f'Property "{expand}" cannot be found.',
                        "InvalidArgument",
                        "ExpandPropertyNotFound",
                        target=item,
                        exception="System.Management.Automation.PSArgumentException",
                    )
                )
                continue
            if isinstance(value, list | tuple) and not isinstance(value, bytes | str):
                results.extend(value)
            elif isinstance(value, dict) and not getattr(value, "PSObject", None):
                results.extend(value.values())
            else:
                results.append(value)
            continue
        results.append(item)
    if call.get("Unique"):
        seen: list[str] = []
        unique = []
        for r in results:
            key = to_string(r)
            if key not in seen:
                seen.append(key)
                unique.append(r)
        results = unique
    call.write(results)


def _selected(call: Call, item: Any, patterns: list[str], exclude: list[str] | None) -> Any:
    import fnmatch

    names = property_names(item)
    chosen: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            chosen += [
                n for n in names if fnmatch.fnmatchcase(n.lower(), pattern.lower()) and n not in chosen
            ]
        else:
            match = next((n for n in names if n.lower() == pattern.lower()), pattern)
            if match not in chosen:
                chosen.append(match)
    if exclude:
        chosen = [n for n in chosen if not any(fnmatch.fnmatchcase(n.lower(), e.lower()) for e in exclude)]
    props = {n: get_property(item, n, None) for n in chosen}
    return custom_object(props, f"Selected.{type_names_of(item)[0].removeprefix('Deserialized.')}")


__all__ = ["SNAPINS"]


# --- Start-Sleep ----------------------------------------------------------------------------------


@cmdlet(
    "Start-Sleep",
    f"{_PS}.StartSleepCommand",
    Param("Seconds", INT, mandatory=True, position=0, pipeline=True, by_property_name=True,
          sets=("Seconds",), range=(0, 2147483)),
    Param("Milliseconds", INT, mandatory=True, aliases=("ms",), by_property_name=True,
          sets=("Milliseconds",), range=(0, 2147483647)),
    source=UTILITY,
    default_set="Seconds",
)
def start_sleep(call: Call) -> None:
    if call.has("Milliseconds"):
        seconds = call["Milliseconds"] / 1000
    elif call.has("Seconds"):
        seconds = float(call["Seconds"])
    else:  # -Seconds from the pipeline
        seconds = float(int(to_string((call.input or [0])[-1]) or 0))
    if call.ctx.wait(seconds):
        raise PipelineStopped()
