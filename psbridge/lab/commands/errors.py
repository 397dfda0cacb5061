"""Error records the lab's commands raise, worded as Windows PowerShell 5.1 words them."""

from __future__ import annotations

from typing import Any

from psbridge.lab.runspace import ErrorRecord

BINDING = "System.Management.Automation.ParameterBindingException"


def not_recognized(name: str) -> ErrorRecord:
    return ErrorRecord(
        message=(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
            "operable program. Check the spelling of the name, or if a path was included, verify that "
            "the path is correct and try again."
        ),
        category="ObjectNotFound",
        fqid="CommandNotFoundException",
        target=name,
        target_name=name,
        exception_type="System.Management.Automation.CommandNotFoundException",
        reason="CommandNotFoundException",
    )


def binding(
    message: str,
    fqid: str,
    command: str,
    type_name: str,
    *,
    category: str = "InvalidArgument",
    exception: str = BINDING,
    target: Any = None,
) -> ErrorRecord:
    short = exception.rsplit(".", 1)[-1]
    return ErrorRecord(
        message=message,
        category=category,
        fqid=f"{fqid},{type_name}",
        target=target,
        target_name="" if target is None else str(target),
        exception_type=exception,
        command_name=command,
        reason=short,
    )


def path_not_found(path: str, command: str, type_name: str) -> ErrorRecord:
    return ErrorRecord(
        message=f"Cannot find path '{path}' because it does not exist.",
        category="ObjectNotFound",
        fqid=f"PathNotFound,{type_name}",
        target=path,
        target_name=path,
        exception_type="System.Management.Automation.ItemNotFoundException",
        command_name=command,
        reason="ItemNotFoundException",
    )


def thrown(message: str, command: str = "") -> ErrorRecord:
    """What ``throw "message"`` produces: category OperationStopped, the message as FQID."""
    return ErrorRecord(
        message=message,
        category="OperationStopped",
        fqid=message,
        target=message,
        target_name=message,
        exception_type="System.Management.Automation.RuntimeException",
        command_name=command,
        reason="RuntimeException",
    )


def record(
    message: str,
    category: str,
    fqid: str,
    command: str,
    type_name: str,
    *,
    target: Any = None,
    exception: str = "System.InvalidOperationException",
) -> ErrorRecord:
    return ErrorRecord(
        message=message,
        category=category,
        fqid=f"{fqid},{type_name}" if type_name else fqid,
        target=target,
        target_name="" if target is None else str(target),
        exception_type=exception,
        command_name=command,
        reason=exception.rsplit(".", 1)[-1],
    )
