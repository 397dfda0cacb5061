"""Long commands over the wire: Receives that time out, partial output, stop, Ctrl-C, timeouts.

On a real server the official scripts take seconds and ``Start-Sleep`` exists, so a client's
Receive loop meets the WS-Management OperationTimeout fault and answers without a final state.
These tests drive psbridge's Session and plain pypsrp through that against a lab endpoint whose
scripts run at a real server's pace (``pace=1``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands_kit import RECONFIGURE, make_pfx
from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool

from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.winrm.service import Answer
from psbridge.lab.world import World
from psbridge.remote import CommandTimeout, ConnectionProfile, Session
from psbridge.remote.session import new_wsman

PASSWORD = "Crm-admin1"
PFX = "C:\\Temp\\psbridge\\paced.pfx"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("long")
    World.seed(d, servers=1, orgs=1)
    return d


@pytest.fixture(scope="module")
def ep(state: Path) -> Iterator[Endpoint]:
    endpoint = start_endpoint(EndpointSpec("CRM01", "http", {"LAB\\crmadmin": PASSWORD}, state, pace=1.0))
    yield endpoint
    endpoint.stop()


class Faults:
    """Counts the TimedOut faults the service answered (Receives that found nothing new)."""

    def __init__(self, ep: Endpoint) -> None:
        self.timed_out = 0
        service = ep._httpd.service
        self._service = service
        self._original = service.handle

        def handle(data: bytes, user: str, client_ip: str) -> Answer:
            answer = self._original(data, user, client_ip)
            if answer.status == 500 and b"w:TimedOut" in answer.body:
                self.timed_out += 1
            return answer

        service.handle = handle  # type: ignore[method-assign]

    def close(self) -> None:
        self._service.handle = self._original  # type: ignore[method-assign]


@pytest.fixture
def faults(ep: Endpoint) -> Iterator[Faults]:
    f = Faults(ep)
    yield f
    f.close()


@pytest.fixture
def session(ep: Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.setenv("PSBRIDGE_TEST_LONG_PASSWORD", PASSWORD)
    profile = ConnectionProfile(host="127.0.0.1", port=ep.port, scheme="http", auth="ntlm",
                                user="LAB\\crmadmin", password="env:PSBRIDGE_TEST_LONG_PASSWORD",
                                operation_timeout=1, read_timeout=10, name="CRM01")
    with Session(profile) as s:
        yield s


def running(ep: Endpoint) -> list[Any]:
    """The lab's pipelines that are still running, on every shell of the endpoint."""
    return [r for shell in ep._host.shells.values() for r in shell.runs.values() if not r.finished.is_set()]


def settle(ep: Endpoint, seconds: float = 5) -> list[Any]:
    deadline = time.monotonic() + seconds
    while running(ep) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running(ep)


def test_a_command_longer_than_the_operation_timeout(session: Session, faults: Faults) -> None:
    t0 = time.monotonic()
    result = session.invoke("Start-Sleep", Seconds=3)
    assert result.state == "Completed" and 2.9 < time.monotonic() - t0 < 6
    # Receives of 1 s each found nothing, twice or more, before the pipeline's end arrived.
    assert faults.timed_out >= 2


def test_the_per_call_timeout_stops_the_remote_pipeline(session: Session, ep: Endpoint) -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout) as e:
        session.invoke("Start-Sleep", Seconds=60, timeout=2)
    assert time.monotonic() - t0 < 6
    assert e.value.result.state == "Stopped"
    assert settle(ep) == []  # the server's pipeline stopped too
    assert any(entry.event == "stop" for entry in session.journal)
    # The same pool goes on.
    assert session.invoke("Get-Variable", Name="PSHOME", ValueOnly=True).output
    assert session.pools_opened == 1


def test_a_script_stopped_by_its_timeout_keeps_what_it_had_written(session: Session, ep: Endpoint,
                                                                     state: Path) -> None:
    session.upload(make_pfx("paced-pass", "CN=paced s2s"), PFX)
    # At a real server's pace the snap-in takes 1.5 s, the PFX import 0.4 s, the store 0.8 s:
    # a 2.5 s limit stops the script inside its work, before it records anything in CRM.
    with pytest.raises(CommandTimeout) as e:
        session.run_script(RECONFIGURE, timeout=2.5, certificateFile=PFX, password="paced-pass",
                           certificateType="S2STokenIssuer", serviceAccount="LAB\\CRMAsyncService",
                           updateCrm=True)
    messages = e.value.result.messages()
    assert messages[0] == "Added CRM powershell Pssnapin."
    assert "Process succeeded." not in messages and "Process Failed." not in messages
    assert settle(ep) == []
    assert World.load(state).crm_certificates() == []


def test_partial_output_arrives_while_the_script_runs(ep: Endpoint) -> None:
    # Plain pypsrp: each Receive answer carries what the script has written so far.
    w = new_wsman("127.0.0.1", port=ep.port, username="LAB\\crmadmin", password=PASSWORD, ssl=False,
                  auth="ntlm", operation_timeout=5, read_timeout=15)
    with RunspacePool(w) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("New-Item").add_parameter("ItemType", "Directory").add_parameter("Path", "C:\\Temp\\p")
        ps.add_parameter("Force", True).add_statement()
        ps.add_cmdlet("Set-Content").add_parameter("LiteralPath", "C:\\Temp\\p\\wrong.pfx")
        ps.add_parameter("Value", make_pfx("right", "CN=partial")).add_parameter("Encoding", "Byte")
        ps.invoke()
        ps = PowerShell(pool)
        # A wrong password: the script loads the snap-in, opens the PFX (0.4 s later), fails.
        ps.add_cmdlet(RECONFIGURE).add_parameter("certificateFile", "C:\\Temp\\p\\wrong.pfx")
        ps.add_parameter("password", "wrong").add_parameter("certificateType", "S2STokenIssuer")
        ps.add_parameter("serviceAccount", "LAB\\CRMAsyncService")
        t0 = time.monotonic()
        ps.begin_invoke()
        arrivals: list[tuple[float, int]] = []
        while ps.state == PSInvocationState.RUNNING:
            ps.poll_invoke(timeout=5)
            arrivals.append((time.monotonic() - t0, len(ps.streams.information)))
        assert ps.state == PSInvocationState.COMPLETED
        lines = [str(r.message_data) for r in ps.streams.information]
        assert lines[0] == "Added CRM powershell Pssnapin." and lines[-1] == "Process Failed."
        # The snap-in line came in its own answer, before the script's end.
        first = next(t for t, n in arrivals if n >= 1)
        assert 1.3 < first < arrivals[-1][0] + 0.01 and len(arrivals) >= 2


def test_ctrl_c_stops_the_remote_pipeline(session: Session, ep: Endpoint) -> None:
    # A real Ctrl-C: SIGINT to the main thread while it waits in a Receive.
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            session.invoke("Start-Sleep", Seconds=60)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 10
    assert settle(ep) == [], "the server's pipeline must not run on after Ctrl-C"
    assert any(entry.event == "stop" and "Ctrl-C" in entry.detail for entry in session.journal)
    # The session is still good: on its pool, or on a new one if the interrupted request broke it.
    assert session.invoke("Get-Variable", Name="PSHOME", ValueOnly=True).output

