"""``Get-Command`` and PSRP's GetCommandMetadata: command info as Windows PowerShell 5.1 builds it.

Inside a pipeline the objects are whole: a CmdletInfo / ExternalScriptInfo with its
``Parameters`` (ParameterMetadata by name) and ``ParameterSets`` (CommandParameterSetInfo, each
with its CommandParameterInfo objects). What leaves the server is what 5.1 serializes
(:func:`psbridge.lab.commands.objects.for_wire`): a ParameterMetadata only with the properties
of its type data's serialization set (Name, ParameterType, Aliases, IsDynamic, SwitchParameter),
enums past the depth as their names, a script's ScriptBlock as a script block. So a client reads
a script's parameters with ``Get-Command -Name P | Select-Object -ExpandProperty Parameters |
Select-Object -ExpandProperty Values``, and their mandatory-ness with ``... -ExpandProperty
ParameterSets | Select-Object -ExpandProperty Parameters`` (``IsMandatory``, ``Position``).

Syntax strings are built as 5.1's CommandParameterSetInfo.ToString builds them: positional
parameters by position, then named mandatory ones, then the other named ones, types by their
accelerator names (``<string>``, ``<securestring>``), the common parameters as
``[<CommonParameters>]``, no command name (``Get-Command -Syntax`` adds it).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import psrpcore.types as pst

from psbridge.lab.commands import errors
from psbridge.lab.commands.filesystem import ServerFiles
from psbridge.lab.commands.objects import custom_object, dictionary, for_wire, new_object, typed_list
from psbridge.lab.commands.registry import (
    ALL_SETS,
    CMDLETS,
    COMMON,
    STRING,
    STRINGS,
    SWITCH,
    CommandSpec,
    Param,
    cmdlet,
)
from psbridge.lab.commands.runtime import Call, find_command
from psbridge.lab.runspace import CommandContext, MetadataRequest
from psbridge.lab.world import World

SMA = "System.Management.Automation"
SMA_ASSEMBLY = (
    "System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
)
# ParameterMetadata's PropertySerializationSet in Windows PowerShell's types.ps1xml.
PARAMETER_METADATA_SET = ("Name", "ParameterType", "Aliases", "IsDynamic", "SwitchParameter")
NAMED = -2147483648  # Position of a parameter that has none (int.MinValue)
# The built-in type accelerators 5.1 prints in syntax strings (ToStringCodeMethods.Type).
ACCELERATORS = {
    "System.String": "string",
    "System.Int32": "int",
    "System.Int64": "long",
    "System.UInt32": "uint32",
    "System.Boolean": "bool",
    "System.Byte": "byte",
    "System.Char": "char",
    "System.Double": "double",
    "System.Decimal": "decimal",
    "System.DateTime": "datetime",
    "System.Guid": "guid",
    "System.Version": "version",
    "System.Uri": "uri",
    "System.Collections.Hashtable": "hashtable",
    "System.Security.SecureString": "securestring",
    "System.Management.Automation.PSObject": "psobject",
    "System.Management.Automation.PSCredential": "pscredential",
    "System.Management.Automation.ScriptBlock": "scriptblock",
    "System.Management.Automation.SwitchParameter": "switch",
    "System.Xml.XmlDocument": "xml",
    "System.Type": "type",
}


def type_object(full_name: str) -> Any:
    """A System.Type; past the serialization depth it travels as its full name."""
    short = full_name.rsplit(".", 1)[-1]
    return new_object(
        ["System.RuntimeType", "System.Reflection.TypeInfo", "System.Type", "System.Reflection.MemberInfo"],
        {"Name": short, "FullName": full_name, "Namespace": full_name.rsplit(".", 1)[0]},
        full_name,
    )


def type_text(full_name: str) -> str:
    """A parameter's type as a syntax string prints it: ``string[]``, ``securestring``, ``Object``."""
    rank = ""
    while full_name.endswith("[]"):
        full_name, rank = full_name[:-2], rank + "[]"
    return ACCELERATORS.get(full_name, full_name.rsplit(".", 1)[-1]) + rank


def _sets_of(spec: CommandSpec, p: Param) -> list[str]:
    return list(p.sets) or [ALL_SETS]


def _attributes(p: Param) -> Any:
    names = [f"{SMA}.ParameterAttribute"]
    if p.aliases:
        names.append(f"{SMA}.AliasAttribute")
    if p.choices:
        names.append(f"{SMA}.ValidateSetAttribute")
    if p.range:
        names.append(f"{SMA}.ValidateRangeAttribute")
    if p.not_null_or_empty:
        names.append(f"{SMA}.ValidateNotNullOrEmptyAttribute")
    attrs = [new_object([n, f"{SMA}.Internal.CmdletMetadataAttribute", "System.Attribute"], {"TypeId": n}, n)
             for n in names]
    return typed_list(attrs, "System.Attribute", "System.Collections.ObjectModel.ReadOnlyCollection`1")


def _set_metadata(spec: CommandSpec, p: Param) -> dict[str, Any]:
    return {
        s: new_object(
            [f"{SMA}.ParameterSetMetadata"],
            {
                "Position": p.position if p.position is not None else NAMED,
                "IsMandatory": p.mandatory,
                "ValueFromPipeline": p.pipeline,
                "ValueFromPipelineByPropertyName": p.by_property_name,
                "ValueFromRemainingArguments": False,
                "HelpMessage": p.help,
                "HelpMessageBaseName": None,
                "HelpMessageResourceId": None,
            },
            f"{SMA}.ParameterSetMetadata",
            serialize=("Position", "Flags", "HelpMessage"),
        )
        for s in _sets_of(spec, p)
    }


def parameter_metadata(spec: CommandSpec, p: Param) -> Any:
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
            "Attributes": _attributes(p),
            "SwitchParameter": p.type == SWITCH,
        },
        f"{SMA}.ParameterMetadata",
        serialize=PARAMETER_METADATA_SET,
    )


def _parameters(spec: CommandSpec) -> Any:
    items = {p.name: parameter_metadata(spec, p) for p in spec.all_params}
    return dictionary(items, "System.String", f"{SMA}.ParameterMetadata", SMA_ASSEMBLY)


def _in_set(p: Param, set_name: str) -> bool:
    return p.in_set(set_name) or set_name == ALL_SETS


def _parameter_info(p: Param) -> Any:
    return new_object(
        [f"{SMA}.CommandParameterInfo"],
        {
            "Name": p.name,
            "ParameterType": type_object(p.type),
            "IsMandatory": p.mandatory,
            "IsDynamic": False,
            "Position": p.position if p.position is not None else NAMED,
            "ValueFromPipeline": p.pipeline,
            "ValueFromPipelineByPropertyName": p.by_property_name,
            "ValueFromRemainingArguments": False,
            "HelpMessage": p.help,
            "Aliases": typed_list(list(p.aliases), "System.String",
                                  "System.Collections.ObjectModel.ReadOnlyCollection`1"),
            "Attributes": _attributes(p),
        },
        f"{SMA}.CommandParameterInfo",
    )


def _in_display_order(params: list[Param]) -> tuple[list[Param], bool]:
    """5.1's GenerateParametersInDisplayOrder: positional by position, named mandatory, then named
    (the common parameters held back: True when all of them are there, printed as one group)."""
    positional = sorted((p for p in params if p.position is not None), key=lambda p: p.position or 0)
    mandatory = [p for p in params if p.position is None and p.mandatory]
    common_names = {c.name for c in COMMON}
    named = [p for p in params if p.position is None and not p.mandatory and p.name not in common_names]
    common = [p for p in params if p.position is None and not p.mandatory and p.name in common_names]
    grouped = len(common) == len(COMMON)
    return positional + mandatory + named + ([] if grouped else common), grouped


def syntax(spec: CommandSpec, set_name: str) -> str:
    """CommandParameterSetInfo.ToString() for one parameter set."""
    params = [p for p in spec.all_params if _in_set(p, set_name)]
    ordered, grouped = _in_display_order(params)
    parts: list[str] = []
    for p in ordered:
        if p.type == SWITCH:
            parts.append(f"-{p.name}" if p.mandatory else f"[-{p.name}]")
            continue
        shown = type_text(p.type)
        if p.mandatory:
            parts.append(f"[-{p.name}] <{shown}>" if p.position is not None else f"-{p.name} <{shown}>")
        else:
            parts.append(f"[[-{p.name}] <{shown}>]" if p.position is not None else f"[-{p.name} <{shown}>]")
    if grouped:
        parts.append("[<CommonParameters>]")
    return " ".join(parts)


def _set_info(spec: CommandSpec, set_name: str, default: bool) -> Any:
    params = [p for p in spec.all_params if _in_set(p, set_name)]
    return new_object(
        [f"{SMA}.CommandParameterSetInfo"],
        {
            "Name": set_name,
            "IsDefault": default,
            "Parameters": typed_list([_parameter_info(p) for p in params], f"{SMA}.CommandParameterInfo",
                                     "System.Collections.ObjectModel.ReadOnlyCollection`1"),
        },
        syntax(spec, set_name),
    )


def _definition(spec: CommandSpec) -> str:
    """CmdletInfo.Definition: each set's syntax after the name, each on a line of its own."""
    return "".join(f"\r\n{spec.name} {syntax(spec, s)}\r\n" for s in spec.set_names)


def syntax_text(spec: CommandSpec) -> str:
    """What ``Get-Command -Syntax`` writes: a cmdlet's Definition, a script's sets after its file name."""
    if spec.kind == "ExternalScript":
        return "".join(f"{spec.name} {syntax(spec, s)}\r\n" for s in spec.set_names)
    return _definition(spec)


def _help_uri(spec: CommandSpec) -> str:
    return ""  # the CRM snap-in and the scripts have no online help; core cmdlets are not looked up


def command_info(spec: CommandSpec, files: ServerFiles | None = None) -> Any:
    parameters = _parameters(spec)
    sets = spec.set_names
    default = spec.default_set or sets[0]
    set_infos = typed_list(
        [_set_info(spec, s, s == default) for s in sets],
        f"{SMA}.CommandParameterSetInfo",
        "System.Collections.ObjectModel.ReadOnlyCollection`1",
    )
    if spec.kind == "ExternalScript":
        path = str(spec.path)
        contents = ""
        if files is not None and files.is_file(path):
            contents = files.read_bytes(path).decode("utf-8-sig", errors="replace")
        return new_object(
            [f"{SMA}.ExternalScriptInfo", f"{SMA}.CommandInfo"],
            {
                "Path": path,
                "Definition": path,
                "Source": path,
                "Visibility": pst.SessionStateEntryVisibility.Public,
                "ScriptBlock": pst.PSScriptBlock(contents),
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
            path,
            extended={"Namespace": "", "HelpUri": _help_uri(spec)},
        )
    verb, _, noun = spec.name.partition("-")
    module = spec.source
    return new_object(
        [f"{SMA}.CmdletInfo", f"{SMA}.CommandInfo"],
        {
            "Verb": verb,
            "Noun": noun,
            "HelpFile": f"{spec.type_name.rsplit('.', 1)[0]}.dll-Help.xml",
            "PSSnapIn": spec.source
            if spec.needs_snapin or spec.source == "Microsoft.PowerShell.Core"
            else None,
            "Version": pst.PSVersion("9.0.0.0" if spec.needs_snapin else "3.0.0.0"),
            "ImplementingType": type_object(spec.type_name),
            "Definition": _definition(spec),
            "DefaultParameterSet": spec.default_set,
            "OutputType": typed_list(
                [], f"{SMA}.PSTypeName", "System.Collections.ObjectModel.ReadOnlyCollection`1"
            ),
            "Options": "ReadOnly",
            "Name": spec.name,
            "CommandType": pst.CommandTypes.Cmdlet,
            "Source": module,
            "Visibility": pst.SessionStateEntryVisibility.Public,
            "ModuleName": module,
            "Module": None,
            "RemotingCapability": "PowerShell",
            "Parameters": parameters,
            "ParameterSets": set_infos,
        },
        spec.name,
        # CommandInfo's and CmdletInfo's type data members, which 5.1 serializes too.
        extended={"Namespace": module, "HelpUri": _help_uri(spec), "DLL": _dll(spec)},
    )


def _dll(spec: CommandSpec) -> str:
    if spec.needs_snapin:
        return "C:\\Program Files\\Microsoft Dynamics CRM\\Tools\\Microsoft.Crm.PowerShell.dll"
    assembly = "System.Management.Automation"
    for module in ("Management", "Utility"):
        if module in spec.source:
            assembly = f"Microsoft.PowerShell.Commands.{module}"
    return (f"C:\\Windows\\Microsoft.Net\\assembly\\GAC_MSIL\\{assembly}\\v4.0_3.0.0.0__31bf3856ad364e35\\"
            f"{assembly}.dll")


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
    loaded = _loaded(call.ctx, call.world)
    if not names:
        verbs = [v.lower() for v in call.get("Verb") or []]
        nouns = [n.lower() for n in call.get("Noun") or []]
        for spec in loaded:
            verb, _, noun = spec.name.lower().partition("-")
            if verbs and not any(fnmatch.fnmatchcase(verb, v) for v in verbs):
                continue
            if nouns and not any(fnmatch.fnmatchcase(noun, n) for n in nouns):
                continue
            call.write(_shown(call, spec, files))
        return
    for name in names:
        if any(c in name for c in "*?["):
            for spec in loaded:
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


def _loaded(ctx: CommandContext, world: World) -> list[CommandSpec]:
    return sorted((s for s in CMDLETS.values() if find_command(ctx, s.name, world) is not None),
                  key=lambda s: s.name)


def _shown(call: Call, spec: CommandSpec, files: ServerFiles) -> Any:
    if call.get("Syntax"):
        return syntax_text(spec)
    return command_info(spec, files)


# --- GetCommandMetadata ----------------------------------------------------------------------------

_CMDLET_TYPE = 0x8  # CommandTypes.Cmdlet


def command_metadata(ctx: CommandContext, request: MetadataRequest) -> None:
    """Answer a PSRP GetCommandMetadata pipeline as a Windows endpoint does.

    First a count (``Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo``), then one
    ``Selected.System.Management.Automation.CmdletInfo`` per matching command with Name,
    Namespace, HelpUri, CommandType, ResolvedCommandName, OutputType and Parameters.
    """
    world = World.shared(ctx.state_dir)
    found: list[CommandSpec] = []
    if request.command_type & _CMDLET_TYPE:
        for spec in _loaded(ctx, world):
            if not any(fnmatch.fnmatchcase(spec.name.lower(), n.lower()) for n in request.names):
                continue
            if request.namespaces and not any(
                fnmatch.fnmatchcase(spec.source.lower(), m.lower()) for m in request.namespaces
            ):
                continue
            found.append(spec)
    ctx.write_output(for_wire(custom_object(
        {"Count": len(found)}, "Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo")))
    for spec in found:
        ctx.write_output(for_wire(custom_object(
            {
                "Name": spec.name,
                "Namespace": spec.source,
                "HelpUri": _help_uri(spec),
                "CommandType": pst.CommandTypes.Cmdlet,
                "ResolvedCommandName": None,
                "OutputType": typed_list([], f"{SMA}.PSTypeName",
                                         "System.Collections.ObjectModel.ReadOnlyCollection`1"),
                "Parameters": _parameters(spec),
            },
            f"Selected.{SMA}.CmdletInfo",
        )))


__all__ = ["STRING", "command_info", "command_metadata", "parameter_metadata", "syntax", "syntax_text"]
