"""What can go wrong on the way to a PowerShell pipeline and back, as types a caller can catch.

Every message names the server and the command, never a secret value: texts that come from the
server (a script's own messages) pass through :func:`psbridge.secrets.redact` before they are
put into an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psbridge.secrets import redact

if TYPE_CHECKING:
    from psbridge.remote.result import PSError, Result


class BridgeError(Exception):
    """Base class of every error the PowerShell bridge raises."""


class ProfileError(BridgeError, ValueError):
    """A connection profile that would be unsafe or cannot work (refused before connecting)."""


class ConnectError(BridgeError):
    """The runspace pool could not be opened: unreachable host, TLS or authentication failure."""


class AuthenticationFailed(ConnectError):
    """The server answered 401: wrong user or password, or the account may not log on."""


class ConnectionLost(BridgeError):
    """The connection dropped while a command was running.

    ``may_have_run`` is True when the command had been sent: a state-changing command may or
    may not have completed on the server, so it is never re-sent automatically.
    """

    def __init__(self, message: str, *, command: str = "", may_have_run: bool = True) -> None:
        super().__init__(message)
        self.command = command
        self.may_have_run = may_have_run


class CommandError(BridgeError):
    """A command ran and failed; ``result`` holds everything the server sent back."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(redact(message))
        self.result = result


class CommandFailed(CommandError):
    """The pipeline ended in state Failed: a terminating error (``error`` is its record)."""

    def __init__(self, result: Result, error: PSError | None = None) -> None:
        self.error = error if error is not None else (result.errors[-1] if result.errors else None)
        what = (
            self.error.describe() if self.error is not None else "the pipeline failed without an error record"
        )
        super().__init__(f"{result.command} failed on {result.server}: {what}", result)


class CommandTimeout(CommandError):
    """The call ran longer than its timeout; the remote pipeline was stopped."""

    def __init__(self, result: Result, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"{result.command} on {result.server} did not finish within {timeout:g} s; "
            "the remote pipeline was stopped",
            result,
        )


class ScriptNotFound(CommandError):
    """The script is not where the procedure expects it on this server."""

    def __init__(self, result: Result, script: str) -> None:
        self.script = script
        why = result.errors[0].message if result.errors else "no such script"
        super().__init__(f"{script} is not available on {result.server}: {why}", result)


class ScriptFailed(CommandError):
    """A script reported failure the way scripts do: ``exit N`` and/or "Process Failed.".

    The pipeline itself completed; ``exit_code`` is ``$LASTEXITCODE`` and ``messages`` are the
    script's own words (Write-Host and output text), which ``reason`` condenses.
    """

    def __init__(self, result: Result, script: str) -> None:
        self.script = script
        self.exit_code = result.exit_code
        self.messages = [redact(m) for m in result.messages()]
        self.reason = redact(_reason(result))
        code = f"exit code {self.exit_code}" if self.exit_code is not None else "no exit code"
        super().__init__(f"{script} failed on {result.server} ({code}): {self.reason}", result)


_FAILED = "Process Failed."


def _reason(result: Result) -> str:
    """The script's own explanation: what it wrote in red, else its errors, else its last words."""
    red = [m.text.strip() for m in result.information
           if m.foreground in ("Red", "DarkRed") and m.text.strip() not in ("", _FAILED)]
    if red:
        # Scripts often print the same failure twice ("Failure Details: X", then "X").
        distinct = [t for t in red if not any(t != o and t in o for o in red)]
        return " / ".join(dict.fromkeys(distinct[-2:]))
    if result.errors:
        return result.errors[-1].message
    said = [m.text.strip() for m in result.information if m.text.strip() not in ("", _FAILED)]
    said += [o.strip() for o in result.output if isinstance(o, str) and o.strip() not in ("", _FAILED)]
    return said[-1] if said else "the script gave no reason"


class TransferError(BridgeError):
    """A file did not arrive intact, or could not be removed afterwards."""


class ValidationError(BridgeError, ValueError):
    """An input was refused before anything was sent to a server.

    ``field`` names the input (``organization``, ``pfx_path``, ...) so a notebook can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class UnsupportedScript(BridgeError):
    """The installed official script lacks parameters this procedure needs (an older CRM build)."""

    def __init__(self, script: str, missing: list[str], server: str) -> None:
        self.script = script
        self.missing = missing
        self.server = server
        names = ", ".join(f"-{m}" for m in missing)
        super().__init__(
            f"{script} on {server} has no {names}: this is an older CRM build whose script predates "
            "app registrations (MSOnline era). Install the current CRM update (which ships the new "
            "script) before configuring server-side sync with an Entra ID app."
        )
