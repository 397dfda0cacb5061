"""The PowerShell side of a lab WinRM endpoint: runspace pools and pipelines on psrpcore's server classes.

A WSMan shell is a :class:`psrpcore.ServerRunspacePool`; each WSMan command is a
:class:`psrpcore.ServerPipeline` running in its own thread. This module turns a PSRP
``CreatePipeline`` into statements of :class:`~psbridge.lab.runspace.Invocation` for the
emulated commands, and what those commands write into PSRP messages. It never touches a
socket: the HTTP layer hands it decoded fragments and takes back the bytes to answer.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psrpcore
import psrpcore.types as pst
from psrpcore.types import PSInvocationState, RunspacePoolState

from psbridge.lab.faults import read_faults
from psbridge.lab.runspace import (
    CloudEndpoints,
    ErrorRecord,
    Invocation,
    MetadataRequest,
    TerminatingError,
    psversion_table,
)
from psbridge.lab.winrm.records import host_information_message, to_psrp_error
from psbridge.lab.winrm.wsman import ShellInfo

log = logging.getLogger(__name__)

# The commands' entry point; a test may swap it for a tiny dispatcher of its own.
PipelineRunner = Callable[[Any, Sequence[Sequence[Invocation]], Sequence[Any] | None], None]

# PSRP fragments are cut to this size; a Receive answer carries as many as its envelope allows.
FRAGMENT_SIZE = 32 * 1024
# How long a Signal waits for a stopped pipeline to wind down before answering anyway.
STOP_GRACE = 10.0

_PREFERENCES = {
    "ErrorActionPreference": "Continue",
    "WarningPreference": "Continue",
    "VerbosePreference": "SilentlyContinue",
    "DebugPreference": "SilentlyContinue",
    "InformationPreference": "SilentlyContinue",
    "ProgressPreference": "Continue",
    "ConfirmPreference": "High",
}


def default_runner() -> PipelineRunner:
    from psbridge.lab.commands import run_pipeline

    return run_pipeline


def default_metadata_runner() -> Callable[[Any, MetadataRequest], None]:
    from psbridge.lab.commands import command_metadata

    return command_metadata


@dataclass
class HostSettings:
    server: str
    state_dir: Path
    cloud: CloudEndpoints
    runner: PipelineRunner | None = None
    # A shell nobody has touched for this long is closed, as WinRM's IdleTimeOut does; a
    # client that vanished (dropped connection, killed process) leaves no pool behind forever.
    idle_timeout: float = 7200.0
    pace: float = 1.0  # how long the official scripts take (CommandContext.pace)


@dataclass(frozen=True)
class ShellOptions:
    """What a client asked for when it created the shell (the Create body and its options)."""

    idle_timeout: float | None = None
    input_streams: str = "stdin pr"
    output_streams: str = "stdout"
    locale: str = "en-US"
    data_locale: str = "en-US"
    profile_loaded: bool = True  # WINRS_NOPROFILE=TRUE: no user profile loaded


_RUNSPACEPOOL_STATE = 0x00021005


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _fragments(data: bytes) -> list[tuple[bytes, int | None]]:
    """Split PSRP fragments (MS-PSRP 2.2.4), each with the message type it starts (or None)."""
    out: list[tuple[bytes, int | None]] = []
    offset = 0
    while offset + 21 <= len(data):
        flags = data[offset + 16]
        length = int.from_bytes(data[offset + 17:offset + 21], "big")
        end = offset + 21 + length
        blob = data[offset + 21:end]
        message_type = int.from_bytes(blob[4:8], "little") if flags & 0x1 and len(blob) >= 8 else None
        out.append((data[offset:end], message_type))
        offset = end
    if offset < len(data):
        out.append((data[offset:], None))
    return out


class _RunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server pool, reading message properties as Windows does: ignoring case.

    pypsrp sends SET_MAX_RUNSPACES and SET_MIN_RUNSPACES with their call id as ``CI`` (MS-PSRP
    writes ``ci``); a Windows endpoint answers them, so the lab must not fail on them.
    """

    def _process_SetMaxRunspaces(self, event: psrpcore.SetMaxRunspacesEvent) -> None:
        _alias(event, "ci")
        super()._process_SetMaxRunspaces(event)

    def _process_SetMinRunspaces(self, event: psrpcore.SetMinRunspacesEvent) -> None:
        _alias(event, "ci")
        super()._process_SetMinRunspaces(event)


def _alias(event: psrpcore.PSRPEvent[Any, Any], name: str) -> None:
    obj = event._ps_object
    props = obj.PSObject.extended_properties
    if any(p.name == name for p in props):
        return
    for p in props:
        if p.name.lower() == name.lower():
            pst.add_note_property(obj, name, p.get_value(obj))
            return


# --- pipelines ----------------------------------------------------------------------------------

class PipelineRun:
    """One WSMan command: a psrpcore ServerPipeline, its input, and the thread that runs it."""

    def __init__(self, shell: Shell, command_id: str) -> None:
        self.shell = shell
        self.command_id = command_id
        self.pipeline = psrpcore.ServerPipeline(shell.pool, uuid.UUID(command_id))
        self.powershell: psrpcore.PowerShell | None = None
        self.metadata: MetadataRequest | None = None  # a GetCommandMetadata pipeline
        self.input: list[Any] = []
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.finished = threading.Event()
        self.terminated = False

    @property
    def pipeline_id(self) -> uuid.UUID:
        return self.pipeline.pipeline_id

    def start(self) -> None:
        if self.thread is not None:
            return
        self.thread = threading.Thread(
            target=self._run, name=f"lab-pipeline-{self.command_id[:8]}", daemon=True
        )
        self.thread.start()

    def statements(self) -> list[list[Invocation]]:
        assert self.powershell is not None
        out: list[list[Invocation]] = [[]]
        for cmd in self.powershell.commands:
            out[-1].append(Invocation(
                name=cmd.command_text,
                parameters=list(cmd.parameters),
                is_script=bool(cmd.is_script),
                use_local_scope=cmd.use_local_scope,
            ))
            if cmd.end_of_statement:
                out.append([])
        return [s for s in out if s]

    def _run(self) -> None:
        shell = self.shell
        with shell.cond:
            if self.stopping.is_set():
                self.pipeline.state = PSInvocationState.Running  # psrpcore stops only a running pipeline
                self.pipeline.stop()
                shell.flush()
                self.finished.set()
                return
            # Running, silently: a Windows endpoint sends a pipeline's state only when it ends.
            self.pipeline._change_state(PSInvocationState.Running, emit=False)
        faults = read_faults(shell.settings.state_dir, shell.settings.server)
        ctx = LabCommandContext(self, faults.fail_commands)
        failure: pst.ErrorRecord | None = None
        try:
            if self.metadata is not None:
                default_metadata_runner()(ctx, self.metadata)
            else:
                runner = shell.settings.runner or default_runner()
                runner(ctx, self.statements(), self.input or None)
        except TerminatingError as e:
            failure = to_psrp_error(e.record)
        except Exception as e:  # a lab defect must end the pipeline, not hang the client
            log.exception("lab command failed unexpectedly")
            failure = to_psrp_error(ErrorRecord(
                # Only the type: an exception's text might quote a parameter value.
                message=f"The psbridge lab could not run this pipeline ({type(e).__name__}); see its log.",
                category="NotSpecified", fqid="PSBridgeLabInternalError",
            ))
        with shell.cond:
            if self.stopping.is_set():
                self.pipeline.stop()
            elif failure is not None:
                # psrpcore has no public "fail": the state message carries the reason, as on Windows.
                self.pipeline._change_state(PSInvocationState.Failed, error=failure)
            else:
                self.pipeline.complete()
            shell.flush()
            self.finished.set()
            if self.terminated:
                shell.forget(self)
            shell.cond.notify_all()

    def write(self, fn: Callable[[], None]) -> None:
        with self.shell.cond:
            if self.pipeline.state != PSInvocationState.Running:
                return
            fn()
            self.shell.flush()


class LabCommandContext:
    """The :class:`~psbridge.lab.runspace.CommandContext` a pipeline's commands write to."""

    def __init__(self, run: PipelineRun, fail_commands: dict[str, str]) -> None:
        shell = run.shell
        self._run = run
        self.server = shell.settings.server
        self.user = shell.owner
        self.state_dir = shell.settings.state_dir
        self.cloud = shell.settings.cloud
        self.variables = shell.variables
        self.fail_commands = dict(fail_commands)
        self.pace = shell.settings.pace

    @property
    def _pipe(self) -> psrpcore.ServerPipeline:
        return self._run.pipeline

    def write_output(self, value: Any) -> None:
        self._run.write(lambda: self._pipe.write_output(value))

    def write_error(self, record: ErrorRecord) -> None:
        err = to_psrp_error(record)
        self._run.write(lambda: self._pipe.write_error(
            err.Exception, err.CategoryInfo, err.TargetObject, err.FullyQualifiedErrorId,
            invocation_info=err.InvocationInfo, pipeline_iteration_info=err.PipelineIterationInfo,
        ))

    def write_warning(self, message: str) -> None:
        self._run.write(lambda: self._pipe.write_warning(message))

    def write_verbose(self, message: str) -> None:
        self._run.write(lambda: self._pipe.write_verbose(message))

    def write_debug(self, message: str) -> None:
        self._run.write(lambda: self._pipe.write_debug(message))

    def write_information(self, message_data: Any, source: str = "", tags: list[str] | None = None) -> None:
        self._run.write(lambda: self._pipe.write_information(
            message_data, source, tags=list(tags or []), user=self.user, computer=self.server,
        ))

    def write_host(self, text: str, foreground: str | None = None, background: str | None = None,
                   no_newline: bool = False) -> None:
        data = host_information_message(text, foreground, background, no_newline)
        self._run.write(lambda: self._pipe.write_information(
            data, "Write-Host", tags=["PSHOST"], user=self.user, computer=self.server,
        ))

    def write_progress(self, activity: str, status: str, percent_complete: int = -1,
                       activity_id: int = 0) -> None:
        self._run.write(lambda: self._pipe.write_progress(
            activity, activity_id, status, percent_complete=percent_complete,
        ))

    def is_stopping(self) -> bool:
        return self._run.stopping.is_set()

    def wait(self, seconds: float) -> bool:
        return self._run.stopping.wait(max(seconds, 0.0))


# --- runspace pools -----------------------------------------------------------------------------

class Shell:
    """A WSMan shell: one runspace pool, its variables and its running pipelines."""

    def __init__(self, shell_id: str, owner: str, settings: HostSettings, resource_uri: str,
                 client_ip: str, options: ShellOptions | None = None) -> None:
        self.id = shell_id
        self.owner = owner
        self.settings = settings
        self.resource_uri = resource_uri
        self.client_ip = client_ip
        self.options = options or ShellOptions()
        # Each shell is its own wsmprovhost.exe on Windows, with its own process id.
        self.process_id = 1024 + (uuid.UUID(shell_id).int % 30000) * 4 if _is_uuid(shell_id) else 4096
        self.idle_timeout = self.options.idle_timeout or settings.idle_timeout
        self.cond = threading.Condition(threading.RLock())
        self.pool = _RunspacePool(application_private_data={"PSVersionTable": psversion_table()})
        self.variables: dict[str, Any] = dict(_PREFERENCES)
        self.runs: dict[str, PipelineRun] = {}
        self.created = time.monotonic()
        self.last_used = self.created
        self.closed = False
        # Fragments per target (pool or pipeline); True marks a fragment that starts a new
        # Receive answer (see flush).
        self.queues: dict[uuid.UUID | None, list[tuple[bytes, bool]]] = {}

    def info(self) -> ShellInfo:
        now = time.monotonic()
        return ShellInfo(
            shell_id=self.id, resource_uri=self.resource_uri, owner=self.owner, client_ip=self.client_ip,
            process_id=self.process_id, idle_timeout=self.idle_timeout,
            input_streams=self.options.input_streams, output_streams=self.options.output_streams,
            locale=self.options.locale, data_locale=self.options.data_locale,
            profile_loaded=self.options.profile_loaded,
            run_time=now - self.created, inactivity=now - self.last_used,
        )

    # Everything below runs with self.cond held.

    def flush(self) -> None:
        """Move what psrpcore has to send into one queue per target (pool or pipeline).

        A Windows endpoint answers the first Receive of a new pool with the session capability
        and the application private data, and only the next one with the pool's Opened state:
        a runspace pool state message starts an answer of its own.
        """
        while True:
            payload = self.pool.data_to_send(FRAGMENT_SIZE)
            if payload is None:
                break
            queue = self.queues.setdefault(payload.pipeline_id, [])
            for fragment, message_type in _fragments(payload.data):
                own = payload.pipeline_id is None and message_type == _RUNSPACEPOOL_STATE
                queue.append((fragment, own))
        self.cond.notify_all()

    def feed(self, data: bytes, run: PipelineRun | None = None) -> None:
        """Fragments from the client (creationXml, Command arguments or Send): act on each message."""
        stream = psrpcore.StreamType.default
        self.pool.receive_data(psrpcore.PSRPPayload(data, stream, run.pipeline_id if run else None))
        while True:
            event = self.pool.next_event()
            if event is None:
                break
            self._on_event(event)
        self.flush()

    def _on_event(self, event: psrpcore.PSRPEvent[Any, Any]) -> None:
        if isinstance(event, psrpcore.CreatePipelineEvent):
            run = self._run_for(event.pipeline_id)
            run.powershell = event.pipeline
            if run.powershell.no_input:
                run.start()
        elif isinstance(event, psrpcore.PipelineInputEvent):
            self._run_for(event.pipeline_id).input.append(event.data)
        elif isinstance(event, psrpcore.EndOfPipelineInputEvent):
            self._run_for(event.pipeline_id).start()
        elif isinstance(event, (psrpcore.SetMaxRunspacesEvent, psrpcore.SetMinRunspacesEvent)):
            self.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.ResetRunspaceStateEvent):
            self.variables.clear()
            self.variables.update(_PREFERENCES)
            self.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
            busy = sum(1 for r in self.runs.values() if not r.finished.is_set())
            self.pool.runspace_availability_response(event.ci, max(self.pool.max_runspaces - busy, 0))
        elif isinstance(event, psrpcore.GetCommandMetadataEvent):
            run = self._run_for(event.pipeline_id)
            request = event.pipeline
            run.metadata = MetadataRequest(
                names=[str(n) for n in (request.name or ["*"])],
                command_type=int(request.command_type),
                namespaces=[str(n) for n in (request.namespace or [])],
            )
            run.start()
        # SessionCapability, InitRunspacePool and PublicKey are answered by psrpcore itself.

    def _run_for(self, pipeline_id: uuid.UUID | None) -> PipelineRun:
        for run in self.runs.values():
            if run.pipeline_id == pipeline_id:
                return run
        raise KeyError(f"no pipeline {pipeline_id}")

    def add_run(self, command_id: str) -> PipelineRun:
        run = PipelineRun(self, command_id)
        self.runs[command_id] = run
        return run

    def forget(self, run: PipelineRun) -> None:
        self.runs.pop(run.command_id, None)
        self.queues.pop(run.pipeline_id, None)
        if run.pipeline.state in (PSInvocationState.Running, PSInvocationState.Stopping):
            return
        run.pipeline.close()

    def take(self, command_id: str | None, budget: int, timeout: float) -> tuple[list[bytes], bool] | None:
        """Wait for data for the pool (``None``) or a pipeline: ``(chunks, done)``, or None on timeout."""
        deadline = time.monotonic() + max(timeout, 0.0)
        run = self.runs.get(command_id) if command_id else None
        key = run.pipeline_id if run else None
        while not self.closed:
            queue = self.queues.get(key, [])
            if queue:
                chunks: list[bytes] = []
                size = 0
                while queue and (not chunks or (size + len(queue[0][0]) <= budget and not queue[0][1])):
                    fragment, _ = queue.pop(0)
                    size += len(fragment)
                    chunks.append(fragment)
                done = bool(run and run.finished.is_set() and not queue)
                if done and run is not None:
                    self.forget(run)  # the client has it all: nothing to keep (Terminate is then a no-op)
                return chunks, done
            if run is not None and run.finished.is_set():
                self.forget(run)
                return [], True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.cond.wait(remaining)
        return None

    def stop(self, run: PipelineRun) -> None:
        run.stopping.set()
        if run.thread is None and not run.finished.is_set():
            run.start()  # stops at once: the pipeline never began

    def close(self) -> None:
        self.closed = True
        self.cond.notify_all()  # a Receive waiting on this pool ends now
        for run in list(self.runs.values()):
            run.stopping.set()
            run.terminated = True
        self.pool.pipeline_table.clear()
        self.runs.clear()
        self.queues.clear()
        if self.pool.state in (RunspacePoolState.Opened, RunspacePoolState.Closing, RunspacePoolState.Closed):
            self.pool.close()


@dataclass
class Host:
    """Every shell of one endpoint."""

    settings: HostSettings
    shells: dict[str, Shell] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_shell(self, shell_id: str | None, owner: str, resource_uri: str, client_ip: str,
                   creation: bytes, options: ShellOptions | None = None) -> Shell:
        self.reap_idle()
        sid = (shell_id or str(uuid.uuid4())).upper()
        shell = Shell(sid, owner, self.settings, resource_uri, client_ip, options)
        with shell.cond:
            shell.feed(creation)
        with self.lock:
            self.shells[sid] = shell
        return shell

    def reap_idle(self) -> None:
        now = time.monotonic()
        with self.lock:
            idle = [s for s in self.shells.values() if s.last_used < now - s.idle_timeout]
        for shell in idle:
            self.close_shell(shell)

    def find(self, shell_id: str | None, owner: str) -> Shell | None:
        if not shell_id:
            return None
        with self.lock:
            shell = self.shells.get(shell_id.upper())
        # Another account cannot see this user's shells, as on Windows.
        return shell if shell is not None and shell.owner == owner else None

    def close_shell(self, shell: Shell) -> None:
        with self.lock:
            self.shells.pop(shell.id, None)
        with shell.cond:
            shell.close()

    def close_all(self) -> None:
        with self.lock:
            shells = list(self.shells.values())
            self.shells.clear()
        for shell in shells:
            with shell.cond:
                shell.close()
