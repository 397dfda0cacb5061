"""The seam between the lab's PSRP transport and its emulated commands.

The transport (``psbridge.lab.winrm``) turns a PSRP ``CreatePipeline`` into a list of
statements of :class:`Invocation` and hands them to
``psbridge.lab.commands.run_pipeline(ctx, statements, pipeline_input)``. Commands are
plain functions over the world state: they never see a socket, a WSMan envelope or a
PSRP fragment, only a :class:`CommandContext` to write to. Like psrpcore, the protocol
side never knows what a command does, and the commands never know how bytes move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from psbridge.errors import LabSettingError, TwinAnswer

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Invocation:
    """One command of a statement, as the client sent it.

    ``parameters`` keeps order and form: ``(name, value)`` for a named parameter,
    ``(None, value)`` for a positional argument. A switch arrives as ``(name, True)``
    (pypsrp sends ``-Switch`` as a named parameter with value ``$true``; a bare switch
    in PSRP is a named parameter whose value is ``None``: treat both as present).
    Values are psrpcore's deserialized objects (``PSSecureString`` for a SecureString,
    ``bytes`` for a byte[]; strings, ints, bools, lists, ``PSObject``s otherwise).
    """

    name: str
    parameters: list[tuple[str | None, Any]] = field(default_factory=list)
    is_script: bool = False
    use_local_scope: bool | None = None


def psversion_table() -> dict[str, Any]:
    """``$PSVersionTable`` of the lab's servers (Windows Server 2019, Windows PowerShell 5.1).

    The transport sends it in the pool's application private data, as a Windows endpoint does;
    ``Get-Variable PSVersionTable`` shows the same table.
    """
    import psrpcore.types as pst

    version = "5.1.17763.6414"
    return {
        "PSVersion": pst.PSVersion(version),
        "PSEdition": "Desktop",
        "PSCompatibleVersions": [pst.PSVersion(v) for v in ("1.0", "2.0", "3.0", "4.0", "5.0", version)],
        "CLRVersion": pst.PSVersion("4.0.30319.42000"),
        "BuildVersion": pst.PSVersion("10.0.17763.6414"),
        "WSManStackVersion": pst.PSVersion("3.0"),
        "PSRemotingProtocolVersion": pst.PSVersion("2.3"),
        "SerializationVersion": pst.PSVersion("1.1.0.1"),
    }


@dataclass
class MetadataRequest:
    """A PSRP GetCommandMetadata request (what ``Import-PSSession`` and pypsrp's
    ``get_command_metadata`` send): command name patterns, a ``CommandTypes`` mask, modules."""

    names: list[str]
    command_type: int = 0x1FF  # CommandTypes.All
    namespaces: list[str] = field(default_factory=list)


@dataclass
class ErrorRecord:
    """What PowerShell's ErrorRecord carries, in the terms a client shows.

    ``category`` is an ErrorCategory name (``ObjectNotFound``, ``InvalidArgument``,
    ``InvalidOperation``, ``NotSpecified``, ``PermissionDenied``, ``OpenError``, …).
    ``fqid`` is the FullyQualifiedErrorId, e.g.
    ``CommandNotFoundException`` or ``GetCrmOrganization,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet``.
    ``exception_type`` is the .NET exception type name the record wraps.
    """

    message: str
    category: str = "NotSpecified"
    fqid: str = "NotSpecified"
    target: Any = None
    target_name: str = ""
    exception_type: str = "System.Management.Automation.RuntimeException"
    command_name: str = ""
    script_line: str = ""
    line_number: int = 0
    offset_in_line: int = 0
    script_name: str = ""
    reason: str = ""  # CategoryInfo.Reason; defaults to the short exception type name


class TerminatingError(TwinAnswer):
    """Raised by a command for a terminating error: the pipeline ends in state Failed."""

    def __init__(self, record: ErrorRecord) -> None:
        super().__init__(record.message)
        self.record = record


class ScriptExit(TwinAnswer):
    """Raised by an emulated script for ``exit N``.

    The script ends, ``$LASTEXITCODE`` becomes N, and the pipeline goes on to Completed:
    the caller sees success unless it reads ``$LASTEXITCODE``. The dispatcher catches it.
    """

    def __init__(self, code: int) -> None:
        super().__init__(f"exit {code}")
        self.code = code


# The lab knob for how long the official scripts take: a multiple of a real server's time.
# Unset: 1.0 (seconds per script, as on a server); the test suite sets it to 0.
PACE_ENV = "PSBRIDGE_LAB_PACE"


def default_pace() -> float:
    """The scripts' pace from ``PSBRIDGE_LAB_PACE`` (a non-negative number), else 1.0."""
    import os

    text = os.environ.get(PACE_ENV, "").strip()
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise LabSettingError(
            f"{PACE_ENV} must be a number (1 = as long as on a real server), not {text!r}"
        ) from None
    if value < 0 or value != value:
        raise LabSettingError(f"{PACE_ENV} must not be negative, not {text!r}")
    return value


@dataclass(frozen=True)
class CloudEndpoints:
    """Where an emulated CRM server's scripts reach Entra ID and Graph.

    On a real server these are ``https://login.microsoftonline.com`` and
    ``https://graph.microsoft.com``; in the lab, the Entra/Graph twin's URLs, trusted through
    the lab CA bundle. ``None`` means "not reachable", as when the twin is not running.
    """

    login: str | None
    graph: str | None
    ca_bundle: str | None = None
    timeout: float = 10.0


class CommandContext(Protocol):
    """What a running command may touch. One context per pipeline.

    ``server`` is the name of the CRM server (as in lab.json) the runspace pool is open on;
    ``variables`` are the runspace pool's variables (``LASTEXITCODE`` lives here and
    survives from one pipeline to the next in the same pool, as on a real server);
    ``user`` is the authenticated account (``LAB\\crmadmin``).
    """

    server: str
    user: str
    state_dir: Path
    cloud: CloudEndpoints
    variables: dict[str, Any]
    # Fault injection: lower-case command name -> message. The dispatcher makes such a
    # command fail with a terminating error carrying the message (set per server).
    fail_commands: dict[str, str]
    # How long the official scripts take, as a multiple of what they take on a real server
    # (1.0: seconds, as there; 0: at once). See PACE_ENV.
    pace: float

    def write_output(self, value: Any) -> None: ...

    def write_error(self, record: ErrorRecord) -> None: ...

    def write_warning(self, message: str) -> None: ...

    def write_verbose(self, message: str) -> None: ...

    def write_debug(self, message: str) -> None: ...

    def write_information(
        self, message_data: Any, source: str = "", tags: list[str] | None = None
    ) -> None: ...

    def write_host(
        self,
        text: str,
        foreground: str | None = None,
        background: str | None = None,
        no_newline: bool = False,
    ) -> None:
        """``Write-Host``: an information record tagged PSHOST, with colours, as PS 5.1 sends it."""

    def write_progress(
        self, activity: str, status: str, percent_complete: int = -1, activity_id: int = 0
    ) -> None: ...

    def is_stopping(self) -> bool:
        """True once the client sent a stop signal; long commands check it and return."""

    def wait(self, seconds: float) -> bool:
        """Let ``seconds`` of work pass (``Start-Sleep``, a script's slow step); True when the
        client stopped the pipeline meanwhile, which ends the wait at once."""
