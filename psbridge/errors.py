"""Everything psbridge raises, as one tree under :class:`PsbridgeError`.

``except PsbridgeError`` catches every failure psbridge names; a class lower down catches one
kind of it. Messages name the server, command, file or reference involved, never a secret
value: text that came from a server or the cloud passes through :func:`psbridge.secrets.redact`
before it goes into an exception.

Each class is also importable from the module whose code raises it (``psbridge.remote``,
``psbridge.cloud``, ``psbridge.certs``, ``psbridge.secrets``, ``psbridge.lab.world``, ...): that
module re-exports this very class, so existing imports and ``except`` clauses keep working.

The tree. A name in brackets is a further base class: a builtin that callers already catch
(``except ValueError`` around an input check), or a second family. ``(in MODULE)`` marks a class
defined beside the lab code that raises it rather than here: those never leave the lab's twins::

    PsbridgeError
    ├── ParameterError [ValueError]          an input refused before anything was changed or sent
    │   ├── ValidationError [BridgeError]    one input of a remote operation; ``field`` names it
    │   ├── ProfileError [BridgeError]       a connection profile that would be unsafe or cannot work
    │   ├── ParamsError                      (in psbridge.runbook.params) a parameter file's problems
    │   ├── InventoryError                   (in psbridge.batch.inventory) a batch inventory's problems
    │   ├── FactError                        (in psbridge.runbook.facts) a fact that cannot be recorded
    │   └── Confirmation                     (in psbridge.runbook.steps.decommission) not confirmed
    ├── BridgeError                          PowerShell on a server, over WinRM/PSRP
    │   ├── ConnectError                     the runspace pool could not be opened
    │   │   └── AuthenticationFailed         the server refused the credentials (401)
    │   ├── ConnectionLost                   the connection dropped while a command was running
    │   ├── CommandRefused                   the WinRM service refused a request (a WS-Management fault)
    │   ├── CommandError                     a command ran and failed; ``result`` holds what came back
    │   │   ├── CommandFailed                the pipeline ended in state Failed
    │   │   ├── CommandTimeout               it ran past its timeout; the remote pipeline was stopped
    │   │   ├── UnexpectedOutput             it answered in a shape the caller cannot use
    │   │   ├── ScriptNotFound               a script is not where the procedure expects it
    │   │   └── ScriptFailed                 a script said it failed: ``exit N`` or "Process Failed."
    │   ├── UnsupportedScript                the installed official script lacks a parameter we need
    │   ├── PrerequisiteFailed               a server is not ready for the procedure
    │   ├── ChangeNotApplied                 a change reported success, but reading it back says not
    │   └── TransferError                    a file did not arrive intact, or could not be removed
    ├── CloudError                           Entra ID and Microsoft Graph
    │   ├── SignInError                      Entra ID refused a sign-in
    │   ├── TokenCacheError                  (in psbridge.cloud.signin) a token cache not kept as asked
    │   ├── GraphError                       a Graph call failed, in Graph's own words
    │   ├── TenantLookupError                no tenant id could be found
    │   ├── NotFoundInTenant [LookupError]   the tenant lacks an object or a permission we need
    │   ├── AmbiguousInTenant                several objects where the procedure needs one
    │   └── ForeignHostRefused               a URL that would carry the Graph token to another host
    ├── WebApiError                          the organization's CRM Web API, and its sign-in
    │   ├── WebApiUnreachable                no answer: refused, timed out, dropped, TLS failed
    │   ├── ClientCertificateRequired        the site demands a client certificate (SDK-style clients cannot)
    │   ├── SignInUnsupported                the site offers no sign-in psbridge can make
    │   ├── SignInFailed                     the credentials were refused (by the site or by AD FS)
    │   │   └── TokenRefused                 a bearer token refused after its one renewal
    │   ├── ODataError                       the organization refused a request: status, code, message
    │   └── MetadataMismatch                 a name psbridge uses is not in the organization's $metadata
    ├── SecretError                          a reference malformed, or its value unreadable or unwritable
    ├── CertificateError                     a PFX that cannot be opened or is not fit for S2S
    ├── RecordError [ValueError]             a change record that cannot be written, read or rebuilt
    │   └── SigningError                     a key that cannot sign a record, or a signature unreadable
    ├── LockTimeout [TimeoutError]           another process held a shared file's lock for too long
    ├── RunbookError                         the runbook engine: its definition, deployment, steps, runs
    │   ├── DefinitionError                  (in psbridge.runbook.definition) a runbook that cannot be used
    │   ├── DeploymentError                  (in psbridge.runbook.deployment) no deployment to work on
    │   ├── StepError                        (in psbridge.runbook.steps.common) a step cannot go on
    │   ├── KernelError                      (in psbridge.runbook.warm) no kernel could be had for a step
    │   ├── RunError                         (in psbridge.runbook.runner) a run cannot start
    │   ├── ClusterError                     (in psbridge.batch.engine) no cluster, or workers lack its paths
    │   ├── GraphGateError                   a tenant's Graph gate a batch cannot keep
    │   └── ZygoteError                      (in psbridge.runbook.zygote) no kernel forked: start one anew
    └── LabError                             the embedded lab: it cannot start, or lacks what was asked
        ├── LabConfigError                   no lab description, or one that lacks what was asked for
        ├── LabSettingError [ValueError]     a world shape, fault knob or twin knob the lab does not have
        ├── NotInLab [KeyError]              no server or organization of that name in the lab's world
        ├── WorldError                       the world state is missing, unreadable or locked
        └── TwinAnswer                       unwinds a twin to where it answers in its protocol's terms
            ├── AuthFailed                   (in psbridge.lab.winrm.auth) credentials refused: 401
            ├── BadRequest                   (in psbridge.lab.winrm.wsman) not a request it understands
            ├── TerminatingError             (in psbridge.lab.runspace) the pipeline ends Failed
            ├── ScriptExit                   (in psbridge.lab.runspace) a script's ``exit N``
            ├── PipelineStopped              (in psbridge.lab.commands.runtime) the client stopped it
            ├── PfxError                     (in psbridge.lab.commands.certstore) a PFX that does not open
            ├── PathFormatError [ValueError] (in psbridge.lab.commands.filesystem) not a Windows path
            ├── Thrown                       (in psbridge.lab.commands.scripts.common) what a catch sees
            ├── WebFailure                   (in psbridge.lab.commands.scripts.web) a failed web cmdlet
            ├── TokenRejected                (in psbridge.lab.entra.tokens) Graph refuses a token: 401
            ├── AssertionRejected            (in psbridge.lab.entra.tokens) a refused client assertion
            ├── QueryError [ValueError]      (in psbridge.lab.entra.odata) an unsupported OData query
            ├── GraphError                   (in psbridge.lab.entra.graph) a Graph error answer
            ├── TokenInvalid                 (in psbridge.lab.adfs.tokens) a token a relying party refuses
            ├── TokenRefused                 (in psbridge.lab.webapi.service) CRM refuses a bearer token: 401
            ├── FilterError [ValueError]     (in psbridge.lab.webapi.odata) a $filter CRM cannot run
            └── CrmError                     (in psbridge.lab.webapi.records) CRM's error answer

Private classes (a leading underscore) are rooted in this tree too, but are not listed.

This module imports nothing of psbridge at module level, so every other module (the secret
store, the file helpers, the lab) can import it without a cycle; :func:`_redact` reaches the
redactor when an exception is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from psbridge.crm.prerequisites import Prerequisites
    from psbridge.remote.result import PSError, Result


def _redact(text: str) -> str:
    # Imported here: psbridge.secrets imports this module for SecretError.
    from psbridge.secrets import redact

    return redact(text)


class PsbridgeError(Exception):
    """The root: every failure psbridge names."""


# --- parameters ------------------------------------------------------------------------------


class ParameterError(PsbridgeError, ValueError):
    """An input refused before anything was changed or sent: the message says which and why.

    A ``ValueError`` too, so code that guards an input with ``except ValueError`` still catches it.
    """


# --- PowerShell over WinRM/PSRP ----------------------------------------------------------------


class BridgeError(PsbridgeError):
    """Base class of every error the PowerShell bridge (and the CRM operations on it) raises."""


class ValidationError(ParameterError, BridgeError):
    """An input was refused before anything was sent to a server.

    ``field`` names the input (``organization``, ``pfx_path``, ...) so a notebook can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class ProfileError(ParameterError, BridgeError):
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


class CommandRefused(BridgeError):
    """The server's WinRM service refused a request with a WS-Management fault: nothing ran."""


class CommandError(BridgeError):
    """A command ran and failed; ``result`` holds everything the server sent back."""

    def __init__(self, message: str, result: Result) -> None:
        super().__init__(_redact(message))
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


class UnexpectedOutput(CommandError):
    """The command completed, but its output is not the shape the caller asked for."""


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
        self.messages = [_redact(m) for m in result.messages()]
        self.reason = _redact(_reason(result))
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


class PrerequisiteFailed(BridgeError):
    """A server is not ready for the procedure; ``report`` holds every check and its outcome."""

    def __init__(self, message: str, report: Prerequisites) -> None:
        super().__init__(message)
        self.report = report


class ChangeNotApplied(BridgeError):
    """A command or script reported success, but the state read back afterwards says otherwise."""


class TransferError(BridgeError):
    """A file did not arrive intact, or could not be removed afterwards."""


# --- the cloud -------------------------------------------------------------------------------


class CloudError(PsbridgeError):
    """Base class of what Entra ID sign-in and the Microsoft Graph operations raise."""


class SignInError(CloudError):
    """Entra ID refused a sign-in; carries its error code and description."""

    def __init__(self, what: str, result: dict[str, Any]) -> None:
        self.error = str(result.get("error", "unknown_error"))
        self.description = _redact(str(result.get("error_description", "")))
        self.codes = list(result.get("error_codes", []))
        super().__init__(f"{what}: {self.error}: {self.description}")


class GraphError(CloudError):
    """A Graph call that failed, in Graph's own terms."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 request_id: str | None = None, client_request_id: str | None = None,
                 attempts: int = 1) -> None:
        self.method, self.path, self.status = method, path, status
        self.code, self.message = code, message
        self.request_id, self.client_request_id, self.attempts = request_id, client_request_id, attempts
        rid = f" (request-id {request_id})" if request_id else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"Graph {method} {path} failed{tries}: {status} {code}: {message}{rid}")


class TenantLookupError(CloudError):
    """No tenant id could be found: from Graph's ``/organization`` or the tenant's OpenID metadata."""


class NotFoundInTenant(CloudError, LookupError):
    """The tenant has no object (a service principal) or permission the procedure needs."""


class AmbiguousInTenant(CloudError):
    """The tenant holds several objects where the procedure must find exactly one."""


class ForeignHostRefused(CloudError):
    """A URL (a page link Graph returned, or a caller's) that would send the Graph token elsewhere."""


# --- the organization's CRM Web API ----------------------------------------------------------


class WebApiError(PsbridgeError):
    """Anything the CRM Web API client could not do; the message says what and where."""


class WebApiUnreachable(WebApiError):
    """The organization did not answer: the connection was refused, timed out, dropped or failed TLS."""


class ClientCertificateRequired(WebApiError):
    """The site demands a TLS client certificate.

    The Dynamics 365 SDK does not support client certificates, and neither do SDK-style clients
    such as psbridge: the fix is on the server (IIS SSL settings: client certificates Ignore).
    """

    def __init__(self, url: str, how: str) -> None:
        self.url = url
        super().__init__(
            f"{url} demands a client certificate ({how}). Clients of the Dynamics 365 Web API and SDK "
            "cannot sign in with client certificates: set the CRM web site's SSL settings in IIS to ignore "
            "client certificates (Windows or claims-based authentication still applies), then try again.")


class SignInUnsupported(WebApiError):
    """The site asks for a sign-in psbridge does not make (or, without a challenge, for none it knows)."""


class SignInFailed(WebApiError):
    """The credentials were refused: by the site (401 after a complete handshake) or by AD FS."""


class TokenRefused(SignInFailed):
    """A bearer token refused, renewed once, and the new one refused too: psbridge does not loop."""


class ODataError(WebApiError):
    """A request the organization refused, in its own terms."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 request_id: str | None = None) -> None:
        self.method, self.path, self.status = method, path, status
        self.code, self.message, self.request_id = code, _redact(message), request_id
        rid = f" (REQ_ID {request_id})" if request_id else ""
        super().__init__(f"{method} {path} failed: {status} {code}: {self.message}{rid}")


class MetadataMismatch(WebApiError):
    """Names psbridge uses that the organization's ``$metadata`` does not have (a different CRM build)."""


# --- secrets, certificates, records, shared files ----------------------------------------------


class SecretError(PsbridgeError):
    """A reference that is malformed, or whose value cannot be read or written.

    Messages name the reference, never a value.
    """


class CertificateError(PsbridgeError):
    """A PFX that cannot be opened or is not fit for S2S; ``problems`` lists every reason."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(what + ("" if not problems else ":\n  - " + "\n  - ".join(problems)))


class RecordError(PsbridgeError, ValueError):
    """A change record that cannot be written, read or rebuilt as asked.

    A ``ValueError`` too: readers of many records skip one that is not a record that way.
    """


class SigningError(RecordError):
    """A key that cannot sign a record: not found, not readable with its password, not a key
    and certificate that belong together, or a certificate outside its validity."""


class LockTimeout(PsbridgeError, TimeoutError):
    """Another process (or thread) held the lock for longer than the caller would wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        super().__init__(f"{path} is held by another process (waited {timeout:g} s)")


# --- the runbook engine ----------------------------------------------------------------------


class RunbookError(PsbridgeError):
    """Base class of the runbook engine's errors: its definition, deployment, steps and runs."""


class GraphGateError(RunbookError):
    """A batch cannot keep a tenant's Graph gate: its semaphore is known with another bound."""


# --- the embedded lab ------------------------------------------------------------------------


class LabError(PsbridgeError):
    """The lab cannot start, or was asked about something it does not have."""


class LabConfigError(LabError):
    """No lab description, or one that does not describe what was asked for."""


class LabSettingError(LabError, ValueError):
    """A world shape, fault knob or twin knob the lab does not have, or a value it cannot take."""


class NotInLab(LabError, KeyError):
    """The lab's world has no server or organization of that name."""

    # KeyError's str() quotes its argument, which suits a key but not a sentence.
    __str__ = BaseException.__str__


class WorldError(LabError):
    """The world state is missing or cannot be read."""


class TwinAnswer(LabError):
    """Raised inside one of the lab's twins and turned, where it is caught, into that protocol's answer.

    A 401, a WS-Management fault, a Graph or OAuth error body, a PowerShell error record or an
    exit code: a client sees the answer, never the exception. The subclasses live beside the
    twin code that raises them.
    """
