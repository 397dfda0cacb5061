"""``Get-Command``: CmdletInfo / ExternalScriptInfo with their parameter metadata.

A client learns a script's parameters with
``Get-Command -Name P | Select-Object -ExpandProperty Parameters | Select-Object
-ExpandProperty Values``: ParameterMetadata objects (Name, ParameterType, SwitchParameter,
Aliases, IsDynamic, ...), each serialized at depth 1, so ``ParameterType`` arrives as the
type's full name.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import psrpcore.types as pst

from psbridge.lab.commands import errors
from psbridge.lab.commands.filesystem import ServerFiles
from psbridge.lab.commands.objects import dictionary, new_object, typed_list
from psbridge.lab.commands.registry import (
    ALL_SETS,
    CMDLETS,
    STRING,
    STRINGS,
    SWITCH,
    CommandSpec,
    Param,
    cmdlet,
)
from psbridge.lab.commands.runtime import Call, find_command

SMA = "System.Management.Automation"
SMA_ASSEMBLY = (
    "System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
)


def type_object(full_name: str) -> Any:
    short = full_name.rsplit(".", 1)[-1]
    return new_object(
        ["System.RuntimeType", "System.Reflection.TypeInfo", "System.Type", "System.Reflection.MemberInfo"],
        {"Name": short, "FullName": full_name, "Namespace": full_name.rsplit(".", 1)[0]},
        full_name,
    )


def _set_metadata(spec: CommandSpec, p: Param) -> dict[str, Any]:
    sets = list(p.sets) or [ALL_SETS]
    return {
        s: new_object(
            [f"{SMA}.ParameterSetMetadata"],
            {
                "Position": p.position if p.position is not None else -2147483648,
                "IsMandatory": p.mandatory,
                "ValueFromPipeline": p.pipeline,
                "ValueFromPipelineByPropertyName": p.by_property_name,
                "ValueFromRemainingArguments": False,
                "HelpMessage": None,
                "HelpMessageBaseName": None,
                "HelpMessageResourceId": None,
            },
            f"{SMA}.ParameterSetMetadata",
        )
        for s in sets
    }


def parameter_metadata(spec: CommandSpec, p: Param) -> Any:
    attributes = ["System.Management.Automation.ParameterAttribute"]
    if p.aliases:
        attributes.append("System.Management.Automation.AliasAttribute")
    if p.choices:
        attributes.append("System.Management.Automation.ValidateSetAttribute")
    return new_object(
        [f"{SMA}.ParameterMetadata"],
        {
            "Name": p.name,
            "ParameterType": type_object(p.type),
            "ParameterSets": dictionary(
                _set_metadata(spec, p), "System.String", f"{SMA}.ParameterSetMetadata", SMA_ASSEMBLY
            ),
            "IsDynamic": False,
            "Aliases": typed_list(list(p.aliases), "System.String"),
            "Attributes": typed_list(attributes, "System.Attribute"),
            "SwitchParameter": p.type == SWITCH,
        },
        f"{SMA}.ParameterMetadata",
    )


def _parameters(spec: CommandSpec) -> Any:
    items = {p.name: parameter_metadata(spec, p) for p in spec.all_params}
    return dictionary(items, "System.String", f"{SMA}.ParameterMetadata", SMA_ASSEMBLY)


def _syntax(spec: CommandSpec, set_name: str) -> str:
    parts = [spec.name if spec.kind == "Cmdlet" else str(spec.path)]
    for p in spec.params:
        if not p.in_set(set_name):
            continue
        value = (
            ""
            if p.type == SWITCH
            else f" <{p.type.rsplit('.', 1)[-1].replace('SecureString', 'securestring')}>"
        )
        name = f"-{p.name}" if p.position is None else f"[-{p.name}]"
        text = f"{name}{value}"
        parts.append(text if p.mandatory else f"[{text}]")
    parts.append("[<CommonParameters>]")
    return " ".join(parts)


def command_info(spec: CommandSpec, files: ServerFiles | None = None) -> Any:
    parameters = _parameters(spec)
    sets = spec.set_names
    set_infos = typed_list(
        [
            new_object(
                [f"{SMA}.CommandParameterSetInfo"],
                {
                    "Name": s,
                    "IsDefault": s == (spec.default_set or sets[0]),
                    "Parameters": "System.Collections.ObjectModel."
                    "ReadOnlyCollection`1[System.Management.Automation.CommandParameterInfo]",
                },
                _syntax(spec, s),
            )
            for s in sets
        ],
        f"{SMA}.CommandParameterSetInfo",
        "System.Collections.ObjectModel.ReadOnlyCollection`1",
    )
    if spec.kind == "ExternalScript":
        path = str(spec.path)
        contents = ""
        if files is not None and files.is_file(path):
            contents = files.read_bytes(path).decode("utf-8", errors="replace")
        return new_object(
            [f"{SMA}.ExternalScriptInfo", f"{SMA}.CommandInfo"],
            {
                "Path": path,
                "Definition": path,
                "Source": path,
                "Visibility": "Public",
                "ScriptBlock": contents,
                "OutputType": typed_list(
                    [], f"{SMA}.PSTypeName", "System.Collections.ObjectModel.ReadOnlyCollection`1"
                ),
                "ScriptContents": contents,
                "OriginalEncoding": "System.Text.UTF8Encoding",
                "Name": spec.name,
                "CommandType": pst.CommandTypes.ExternalScript,
                "Version": None,
                "ModuleName": "",
                "Module": None,
                "RemotingCapability": "PowerShell",
                "Parameters": parameters,
                "ParameterSets": set_infos,
            },
            spec.name,
        )
    verb, _, noun = spec.name.partition("-")
    return new_object(
        [f"{SMA}.CmdletInfo", f"{SMA}.CommandInfo"],
        {
            "Verb": verb,
            "Noun": noun,
            "HelpFile": f"{spec.type_name.rsplit('.', 1)[0]}.dll-Help.xml",
            "PSSnapIn": spec.source
            if spec.needs_snapin or spec.source == "Microsoft.PowerShell.Core"
            else None,
            "Version": pst.PSVersion("3.0.0.0"),
            "ImplementingType": type_object(spec.type_name),
            "Definition": "\r\n".join(_syntax(spec, s) for s in sets),
            "DefaultParameterSet": spec.default_set,
            "OutputType": typed_list(
                [], f"{SMA}.PSTypeName", "System.Collections.ObjectModel.ReadOnlyCollection`1"
            ),
            "Options": "ReadOnly",
            "Name": spec.name,
            "CommandType": pst.CommandTypes.Cmdlet,
            "Source": spec.source,
            "Visibility": "Public",
            "ModuleName": spec.source,
            "Module": None,
            "RemotingCapability": "PowerShell",
            "Parameters": parameters,
            "ParameterSets": set_infos,
        },
        spec.name,
    )


@cmdlet(
    "Get-Command",
    "Microsoft.PowerShell.Commands.GetCommandCommand",
    Param("Name", STRINGS, position=0, pipeline=True, by_property_name=True, sets=("AllCommandSet",)),
    Param("Verb", STRINGS, by_property_name=True, sets=("CmdletSet",)),
    Param("Noun", STRINGS, by_property_name=True, sets=("CmdletSet",)),
    Param("Module", STRINGS, aliases=("PSSnapin",), by_property_name=True),
    Param(
        "CommandType", "System.Management.Automation.CommandTypes", aliases=("Type",), sets=("AllCommandSet",)
    ),
    Param("TotalCount", "System.Int32"),
    Param("Syntax", SWITCH),
    Param("ShowCommandInfo", SWITCH),
    Param("All", SWITCH),
    Param("ListImported", SWITCH),
    Param("ParameterName", STRINGS),
    Param("ParameterType", STRING),
    default_set="CmdletSet",
)
def get_command(call: Call) -> None:
    files = ServerFiles(call.ctx.state_dir, call.ctx.server)
    names = call.get("Name") or [str(i) for i in (call.input or [])]
    loaded = [s for s in CMDLETS.values() if find_command(call.ctx, s.name, call.world) is not None]
    if not names:
        verbs = [v.lower() for v in call.get("Verb") or []]
        nouns = [n.lower() for n in call.get("Noun") or []]
        for spec in sorted(loaded, key=lambda s: s.name):
            verb, _, noun = spec.name.lower().partition("-")
            if verbs and not any(fnmatch.fnmatchcase(verb, v) for v in verbs):
                continue
            if nouns and not any(fnmatch.fnmatchcase(noun, n) for n in nouns):
                continue
            call.write(_shown(call, spec, files))
        return
    for name in names:
        if any(c in name for c in "*?["):
            for spec in sorted(loaded, key=lambda s: s.name):
                if fnmatch.fnmatchcase(spec.name.lower(), name.lower()):
                    call.write(_shown(call, spec, files))
            continue
        found = find_command(call.ctx, name, call.world)
        if found is None:
            rec = errors.not_recognized(name)
            rec.fqid = "CommandNotFoundException,Microsoft.PowerShell.Commands.GetCommandCommand"
            call.error(rec)
            continue
        call.write(_shown(call, found, files))


def _shown(call: Call, spec: CommandSpec, files: ServerFiles) -> Any:
    if call.get("Syntax"):
        return "\r\n".join(_syntax(spec, s) for s in spec.set_names)
    return command_info(spec, files)


__all__ = ["STRING", "command_info", "parameter_metadata"]
