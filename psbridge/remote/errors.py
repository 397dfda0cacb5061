"""What can go wrong on the way to a PowerShell pipeline and back, as types a caller can catch.

The classes are defined in :mod:`psbridge.errors` (the whole tree, in one place) and re-exported
here, where the bridge's callers have always imported them. Every message names the server and
the command, never a secret value: texts that come from the server (a script's own messages)
pass through :func:`psbridge.secrets.redact` before they are put into an exception.
"""

from psbridge.errors import (
    AuthenticationFailed,
    BridgeError,
    ChangeNotApplied,
    CommandError,
    CommandFailed,
    CommandRefused,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ProfileError,
    ScriptFailed,
    ScriptNotFound,
    TransferError,
    UnexpectedOutput,
    UnsupportedScript,
    ValidationError,
)

__all__ = [
    "AuthenticationFailed",
    "BridgeError",
    "ChangeNotApplied",
    "CommandError",
    "CommandFailed",
    "CommandRefused",
    "CommandTimeout",
    "ConnectError",
    "ConnectionLost",
    "ProfileError",
    "ScriptFailed",
    "ScriptNotFound",
    "TransferError",
    "UnexpectedOutput",
    "UnsupportedScript",
    "ValidationError",
]
