"""PowerShell on a Windows server over WinRM/PSRP (pypsrp), as commands, not strings.

>>> from psbridge.remote import ConnectionProfile, Session, Cmd
>>> with Session(ConnectionProfile(host="crm01.contoso.local", user="CONTOSO\\\\admin",
...                                password="env:CRM_PASSWORD")) as s:
...     s.invoke("Get-CrmOrganization", Name="contoso").to_frame()
"""

from psbridge.remote.command import Cmd, Pipeline, SecureString
from psbridge.remote.convert import PSRecord
from psbridge.remote.errors import (
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
from psbridge.remote.paths import server_path
from psbridge.remote.profile import ConnectionProfile
from psbridge.remote.result import InformationMessage, Progress, PSError, Result
from psbridge.remote.session import JournalEntry, Session
from psbridge.remote.transfer import UploadReceipt, remove, upload, uploaded

__all__ = [
    "AuthenticationFailed",
    "BridgeError",
    "ChangeNotApplied",
    "Cmd",
    "CommandError",
    "CommandFailed",
    "CommandRefused",
    "CommandTimeout",
    "ConnectError",
    "ConnectionLost",
    "ConnectionProfile",
    "InformationMessage",
    "JournalEntry",
    "PSError",
    "PSRecord",
    "Pipeline",
    "ProfileError",
    "Progress",
    "Result",
    "ScriptFailed",
    "ScriptNotFound",
    "SecureString",
    "Session",
    "TransferError",
    "UnexpectedOutput",
    "UnsupportedScript",
    "UploadReceipt",
    "ValidationError",
    "remove",
    "server_path",
    "upload",
    "uploaded",
]
