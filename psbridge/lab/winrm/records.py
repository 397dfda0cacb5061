"""What lab commands write, as the .NET records PowerShell serializes (psrpcore types)."""

from __future__ import annotations

from typing import Any

import psrpcore.types as pst

from psbridge.lab.runspace import ErrorRecord


def _exception(message: str, type_name: str) -> pst.NETException:
    exc = pst.NETException(Message=message, HResult=-2146233087)
    names = [type_name]
    for base in ("System.SystemException", "System.Exception", "System.Object"):
        if base not in names:
            names.append(base)
    exc.PSObject.type_names = names
    return exc


def _category(name: str) -> pst.ErrorCategory:
    try:
        return pst.ErrorCategory[name]
    except KeyError:
        return pst.ErrorCategory.NotSpecified


def _target_type(target: Any) -> str:
    if target is None:
        return ""
    if isinstance(target, str):
        return "String"
    names = getattr(getattr(target, "PSObject", None), "type_names", None)
    if names:
        return str(names[0]).rsplit(".", 1)[-1]
    return type(target).__name__


def to_psrp_error(record: ErrorRecord) -> pst.ErrorRecord:
    """Our ErrorRecord as the .NET ErrorRecord PowerShell serializes."""
    reason = record.reason or record.exception_type.rsplit(".", 1)[-1]
    target_name = record.target_name or ("" if record.target is None else str(record.target))
    info = pst.ErrorCategoryInfo(
        Category=_category(record.category),
        Activity=record.command_name or "",
        Reason=reason,
        TargetName=target_name,
        TargetType=_target_type(record.target),
    )
    invocation = None
    if record.command_name or record.script_name:
        line = record.script_line or record.command_name
        script = record.script_name or "line"
        where = f"At {script}:{record.line_number or 1} char:{record.offset_in_line or 1}"
        position = f"{where}\n+ {line}" if line else ""
        invocation = pst.InvocationInfo(
            BoundParameters=pst.PSDict(),
            CommandOrigin=pst.CommandOrigin.Runspace,
            DisplayScriptPosition=None,
            ExpectingInput=False,
            HistoryId=1,
            InvocationName=record.command_name,
            Line=line,
            MyCommand=None,
            OffsetInLine=record.offset_in_line,
            PipelineLength=1,
            PipelinePosition=1,
            PositionMessage=position,
            PSCommandPath=record.script_name,
            PSScriptRoot="",
            ScriptLineNumber=record.line_number,
            ScriptName=record.script_name,
            UnboundArguments=pst.PSList(),
        )
        if record.command_name:
            invocation.MyCommand = pst.PSCustomObject(
                CommandType=pst.CommandTypes.ExternalScript if record.command_name.lower().endswith(".ps1")
                else pst.CommandTypes.Cmdlet,
                Name=record.command_name,
                Definition=record.command_name,
                Visibility=pst.SessionStateEntryVisibility.Public,
            )
    err = pst.ErrorRecord(
        Exception=_exception(record.message, record.exception_type),
        CategoryInfo=info,
        TargetObject=record.target,
        FullyQualifiedErrorId=record.fqid,
        InvocationInfo=invocation,
        PipelineIterationInfo=pst.PSList([0, 0]) if invocation else None,
    )
    err.serialize_extended_info = invocation is not None
    return err


def host_information_message(text: str, foreground: str | None, background: str | None,
                             no_newline: bool) -> pst.PSObject:
    """What ``Write-Host`` puts in an InformationRecord's MessageData (PS 5.1)."""

    def colour(name: str | None) -> Any:
        if name is None:
            return None
        try:
            return pst.ConsoleColor[name]
        except KeyError:
            raise ValueError(f"{name!r} is not a ConsoleColor") from None

    obj = pst.PSObject()
    obj.PSObject.type_names = ["System.Management.Automation.HostInformationMessage", "System.Object"]
    pst.add_note_property(obj, "Message", text)
    pst.add_note_property(obj, "NoNewLine", bool(no_newline))
    pst.add_note_property(obj, "ForegroundColor", colour(foreground))
    pst.add_note_property(obj, "BackgroundColor", colour(background))
    obj.PSObject.to_string = text
    return obj
