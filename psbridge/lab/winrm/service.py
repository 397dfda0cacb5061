"""The WinRM service: a decoded WS-Management request in, a SOAP answer out (no sockets).

Maps the WSMan shell operations a PowerShell remoting client sends onto the runspace pools
of :mod:`psbridge.lab.winrm.host`: Create/Delete a shell, Command, Send, Receive (a long
poll bounded by the client's OperationTimeout), Signal (stop, terminate), Get.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from dataclasses import dataclass

from psrpcore import PSRPCoreError

from psbridge.errors import TwinAnswer
from psbridge.lab.winrm import wsman
from psbridge.lab.winrm.host import STOP_GRACE, Host, Shell, ShellOptions
from psbridge.lab.winrm.wsman import NS, Action, Fault, Request

log = logging.getLogger(__name__)

DEFAULT_ENVELOPE = 153600
MAX_ENVELOPE_KB = 500
# The service's MaxTimeoutms: never hold a Receive longer than this, whatever the client asked.
MAX_TIMEOUT_MS = 60000
MAX_RECEIVE_WAIT = MAX_TIMEOUT_MS / 1000


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class WinRMService:
    def __init__(self, host: Host, address: str, machine: str) -> None:
        self.host = host
        self.address = address
        self.machine = machine

    def handle(self, data: bytes, user: str, client_ip: str) -> Answer:
        try:
            req = wsman.parse_request(data)
        except wsman.BadRequest as e:
            return self._fault(wsman.invalid(str(e)), "")
        if req.bad_timeout is not None:
            return self._fault(wsman.invalid_timeout(req.bad_timeout), req.message_id)
        try:
            return self._dispatch(req, user, client_ip)
        except _FaultRaised as f:
            return self._fault(f.fault, req.message_id)
        except (PSRPCoreError, ValueError, KeyError, binascii.Error) as e:
            log.debug("bad PSRP data", exc_info=True)
            fault = wsman.invalid(f"The PowerShell remoting data is not valid: {e}")
            return self._fault(fault, req.message_id)

    def internal_error(self) -> Answer:
        return self._fault(Fault(2147500037, "w:InternalError",
                                 "The psbridge lab's WinRM service failed on this request; see its log."), "")

    # --- plumbing ------------------------------------------------------------------------------

    def _fault(self, fault: Fault, relates_to: str) -> Answer:
        return Answer(500, wsman.fault_envelope(fault, relates_to, self.machine))

    def _ok(self, req: Request, *children: object) -> Answer:
        kids = [c for c in children if c is not None]
        return Answer(200, wsman.envelope_with(Action.response(req.action), req.message_id, kids))  # type: ignore[arg-type]

    def _shell(self, req: Request, user: str) -> Shell:
        shell = self.host.find(req.shell_id, user)
        if shell is None:
            raise _FaultRaised(wsman.shell_not_found(req.shell_id or "", get=req.action == Action.GET))
        shell.last_used = time.monotonic()
        return shell

    def _dispatch(self, req: Request, user: str, client_ip: str) -> Answer:
        handlers = {
            Action.CREATE: self._create,
            Action.DELETE: self._delete,
            Action.COMMAND: self._command,
            Action.SEND: self._send,
            Action.RECEIVE: self._receive,
            Action.SIGNAL: self._signal,
            Action.GET: self._get,
        }
        handler = handlers.get(req.action)
        if handler is None:
            raise _FaultRaised(wsman.unsupported(req.action))
        return handler(req, user, client_ip)

    # --- operations ----------------------------------------------------------------------------

    def _create(self, req: Request, user: str, client_ip: str) -> Answer:
        if not req.resource_uri.startswith(wsman.POWERSHELL_RESOURCE_PREFIX):
            raise _FaultRaised(wsman.unsupported(f"{req.action} on {req.resource_uri}"))
        shell_el = req.body.find("rsp:Shell", NS)
        if shell_el is None:
            raise _FaultRaised(wsman.invalid("Create carries no rsp:Shell"))
        creation = shell_el.findtext("pwsh:creationXml", None, NS)
        if not creation:
            raise _FaultRaised(wsman.invalid("a PowerShell shell needs its creationXml"))
        idle = wsman.parse_duration(shell_el.findtext("rsp:IdleTimeOut", None, NS))
        options = ShellOptions(
            idle_timeout=min(idle, wsman.MAX_IDLE_TIMEOUT) if idle else None,
            input_streams=shell_el.findtext("rsp:InputStreams", "stdin pr", NS) or "stdin pr",
            output_streams=shell_el.findtext("rsp:OutputStreams", "stdout", NS) or "stdout",
            locale=req.locale,
            data_locale=req.data_locale,
            profile_loaded=req.options.get("WINRS_NOPROFILE", "").strip().upper() != "TRUE",
        )
        shell = self.host.open_shell(shell_el.attrib.get("ShellId"), user, req.resource_uri, client_ip,
                                     base64.b64decode(creation), options)
        element = wsman.shell_element(shell.info())
        return self._ok(req, *wsman.create_response(self.address, req.resource_uri, element))

    def _delete(self, req: Request, user: str, client_ip: str) -> Answer:
        self.host.close_shell(self._shell(req, user))
        return self._ok(req)

    def _command(self, req: Request, user: str, client_ip: str) -> Answer:
        shell = self._shell(req, user)
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise _FaultRaised(wsman.invalid("Command carries no rsp:CommandLine"))
        command_id = (line.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        args = [a.text or "" for a in line.findall("rsp:Arguments", NS)]
        with shell.cond:
            run = shell.add_run(command_id)
            for arg in args:
                shell.feed(base64.b64decode(arg), run)
        return self._ok(req, wsman.command_response(command_id))

    def _send(self, req: Request, user: str, client_ip: str) -> Answer:
        shell = self._shell(req, user)
        with shell.cond:
            for stream in req.body.findall("rsp:Send/rsp:Stream", NS):
                command_id = stream.attrib.get("CommandId")
                run = None
                if command_id:
                    run = shell.runs.get(command_id.upper())
                    if run is None:
                        raise _FaultRaised(wsman.command_not_found(command_id))
                shell.feed(base64.b64decode(stream.text or ""), run)
        return self._ok(req, wsman.q_element("SendResponse"))

    def _receive(self, req: Request, user: str, client_ip: str) -> Answer:
        shell = self._shell(req, user)
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.attrib.get("CommandId") if desired is not None else None
        command_id = command_id.upper() if command_id else None
        envelope = req.max_envelope_size or DEFAULT_ENVELOPE
        budget = max((envelope - 4096) * 3 // 4, 1024)  # base64 and the SOAP around it
        wait = min(req.operation_timeout or 20.0, MAX_RECEIVE_WAIT)
        with shell.cond:
            if command_id and command_id not in shell.runs:
                raise _FaultRaised(wsman.command_not_found(command_id))
            got = shell.take(command_id, budget, wait)
        if got is None:
            raise _FaultRaised(wsman.shell_not_found(shell.id) if shell.closed else wsman.timed_out())
        chunks, done = got
        return self._ok(req, wsman.receive_response(chunks, command_id, done))

    def _signal(self, req: Request, user: str, client_ip: str) -> Answer:
        shell = self._shell(req, user)
        signal = req.body.find("rsp:Signal", NS)
        if signal is None:
            raise _FaultRaised(wsman.invalid("Signal carries no rsp:Signal"))
        command_id = (signal.attrib.get("CommandId") or "").upper()
        code = (signal.findtext("rsp:Code", "", NS) or "").strip()
        with shell.cond:
            run = shell.runs.get(command_id)
            if run is None:
                # Terminating a pipeline that is already gone is not an error for WinRM.
                if code == wsman.Signal.TERMINATE:
                    return self._ok(req, wsman.q_element("SignalResponse"))
                raise _FaultRaised(wsman.command_not_found(command_id))
            if code in (wsman.Signal.PS_CTRL_C, wsman.Signal.CTRL_C):
                shell.stop(run)
                deadline = time.monotonic() + STOP_GRACE
                while not run.finished.is_set() and time.monotonic() < deadline:
                    shell.cond.wait(deadline - time.monotonic())
            elif code == wsman.Signal.TERMINATE:
                if run.finished.is_set():
                    shell.forget(run)
                else:
                    run.terminated = True
                    run.stopping.set()
            else:
                raise _FaultRaised(wsman.invalid(f"unknown signal code {code}"))
        return self._ok(req, wsman.q_element("SignalResponse"))

    def _get(self, req: Request, user: str, client_ip: str) -> Answer:
        if req.resource_uri.rstrip("/") == wsman.CONFIG_RESOURCE:
            return self._ok(req, wsman.config_element(MAX_ENVELOPE_KB, MAX_TIMEOUT_MS))
        if req.resource_uri.rstrip("/") == wsman.SHELL_RESOURCE or req.shell_id:
            shell = self.host.find(req.shell_id, user)
            if shell is None:
                raise _FaultRaised(wsman.shell_not_found(req.shell_id or "", get=True))
            # A Get is a look at the shell, not a use of it: its inactivity keeps counting.
            return self._ok(req, wsman.shell_element(shell.info(), get=True))
        raise _FaultRaised(wsman.unsupported(f"{req.action} on {req.resource_uri}"))


class _FaultRaised(TwinAnswer):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.reason)
        self.fault = fault
