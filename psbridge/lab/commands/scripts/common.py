"""What both official scripts share: snap-in loading, ``ExitWithError``, try/catch semantics."""

from __future__ import annotations

from typing import Any, NoReturn

from psbridge.errors import TwinAnswer
from psbridge.lab.commands.runtime import CRM_SNAPIN, Call, PipelineStopped
from psbridge.lab.runspace import ScriptExit, TerminatingError

PROCESS_FAILED = "Process Failed."
PROCESS_SUCCEEDED = "Process succeeded."


class Thrown(TwinAnswer):
    """A terminating error inside the script's ``try``: what its ``catch`` sees.

    ``message`` is ``$_.Exception.Message``; ``details`` is ``"$_"`` (the error record as text,
    which for a web cmdlet is the response body).
    """

    def __init__(self, message: str, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else message


def exit_with_error(call: Call, message: str) -> NoReturn:
    """The scripts' ``ExitWithError``: the reason in red, "Process Failed." in red, ``exit 1``."""
    call.host(message, "Red")
    call.host(PROCESS_FAILED, "Red")
    raise ScriptExit(1)


def catch(call: Call, thrown: Thrown) -> NoReturn:
    """The scripts' outer ``Catch``: "Failure Details: $_", then ExitWithError."""
    call.host(f"Failure Details: {thrown.details}", "Red")
    exit_with_error(call, thrown.message)


def ensure_snapin(call: Call) -> None:
    if CRM_SNAPIN not in call.snapins():
        step(call, SNAPIN_LOAD)  # loading the CRM snap-in's assemblies is the slowest part
        call.snapins().append(CRM_SNAPIN)
        call.host("Added CRM powershell Pssnapin.", "Green")


def run_cmdlet(call: Call, name: str, *params: tuple[str | None, Any]) -> list[Any]:
    """A cmdlet called from the script: its terminating error becomes something ``catch`` sees."""
    try:
        return call.run(name, *params)
    except TerminatingError as e:
        raise Thrown(e.record.message) from None


def stopping(call: Call) -> None:
    """Between steps: a stop from the client ends the script where it is (no catch runs)."""
    if call.ctx.is_stopping():
        raise PipelineStopped()


# Seconds a step of the official scripts takes on a real CRM server (measured orders of
# magnitude: assemblies loading, a certificate store write, a configuration database update, an
# HTTPS round trip to Entra ID), scaled by the lab's pace knob (CommandContext.pace).
SNAPIN_LOAD = 1.5


def step(call: Call, seconds: float) -> None:
    """The time a script step takes; a stop from the client ends the script there (no catch runs)."""
    stopping(call)
    if call.ctx.wait(seconds * call.ctx.pace):
        raise PipelineStopped()
