"""pypsrp itself against a lab WinRM endpoint: sign-in, encryption, pools, pipelines, streams.

The endpoints run the lab's real commands where the test is about them (Get-Variable, an
unknown command, the world on disk); the stream and parameter tests use a small dispatcher
of their own, because what they check is the transport: that every value and every record
crosses the wire intact, whatever command produced it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from psrpcore.types import PSSecureString
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.wsman import WSMan

from psbridge.lab.ca import LabCA
from psbridge.lab.runspace import ErrorRecord, Invocation, TerminatingError
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

PASSWORD = "Lab:pa55 w0rd;ü"
ACCOUNTS = {"LAB\\crmadmin": PASSWORD, "LAB\\operator": "0perator!"}
HOSTILE = ["it's", 'say "hi"', "a; Remove-Item C:\\ -Recurse", "$(whoami)", "`n`t back`tick",
           "line1\nline2\r\nline3", "Zürich 中文 ☃", "", " spaced ", "<xml attr='1'>&amp;</xml>"]


class Dispatcher:
    """A few commands that exercise the transport; everything they receive is recorded."""

    def __init__(self) -> None:
        self.received: list[Invocation] = []
        self.inputs: list[Any] = []
        self.stop_seen = threading.Event()
        self.waiting = threading.Event()

    def __call__(self, ctx: Any, statements: Sequence[Sequence[Invocation]], pipeline_input: Any) -> None:
        self.inputs = list(pipeline_input or [])
        for statement in statements:
            for inv in statement:
                self.received.append(inv)
                getattr(self, "cmd_" + inv.name.replace("-", "_").lower())(ctx, inv)

    def cmd_echo_args(self, ctx: Any, inv: Invocation) -> None:
        for name, value in inv.parameters:
            if isinstance(value, PSSecureString):
                ctx.write_output(value)  # sent back as a SecureString, encrypted with the session key
            else:
                ctx.write_output(value if name is None else f"{name}={value}")

    def cmd_write_streams(self, ctx: Any, inv: Invocation) -> None:
        ctx.write_output("out")
        ctx.write_error(ErrorRecord("no such org", category="ObjectNotFound",
                                    fqid="GetCrmOrganization,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet",
                                    target="nosuchorg", command_name="Get-CrmOrganization",
                                    exception_type="System.ArgumentException"))
        ctx.write_warning("careful")
        ctx.write_verbose("details")
        ctx.write_debug("debugging")
        ctx.write_information("plain info", source="Test", tags=["T1"])
        ctx.write_host("Process succeeded.", foreground="Green", background="Black")
        ctx.write_progress("Configuring", "step 2 of 4", percent_complete=50, activity_id=3)

    def cmd_fail_terminating(self, ctx: Any, inv: Invocation) -> None:
        ctx.write_output("before")
        raise TerminatingError(ErrorRecord("Private key not found", category="InvalidOperation",
                                           fqid="PrivateKeyNotFound", command_name="Fail-Terminating"))

    def cmd_wait_stop(self, ctx: Any, inv: Invocation) -> None:
        ctx.write_output("started")
        self.waiting.set()
        for _ in range(200):  # bounded: 10 s at most
            if ctx.is_stopping():
                self.stop_seen.set()
                return
            threading.Event().wait(0.05)

    def cmd_count(self, ctx: Any, inv: Invocation) -> None:
        ctx.variables["counter"] = ctx.variables.get("counter", 0) + 1
        ctx.write_output(ctx.variables["counter"])

    def cmd_whoami(self, ctx: Any, inv: Invocation) -> None:
        ctx.write_output(ctx.user)
        ctx.write_output(ctx.server)

    def cmd_get_input(self, ctx: Any, inv: Invocation) -> None:
        for item in self.inputs:
            ctx.write_output(item)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("winrm")
    World.seed(d, servers=1, orgs=1)
    return d


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture(scope="module")
def http_ep(state: Path, dispatcher: Dispatcher) -> Iterator[Endpoint]:
    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state), runner=dispatcher)
    yield ep
    ep.stop()


@pytest.fixture(scope="module")
def https_ep(state: Path, dispatcher: Dispatcher) -> Iterator[Endpoint]:
    tls = LabCA.load_or_create(state).server_certificate("crm01")
    ep = start_endpoint(EndpointSpec("CRM01", "https", ACCOUNTS, state, tls=tls), runner=dispatcher)
    yield ep
    ep.stop()


def wsman(ep: Endpoint, user: str = "LAB\\crmadmin", password: str = PASSWORD, **kw: Any) -> WSMan:
    kw.setdefault("ssl", ep.spec.scheme == "https")
    kw.setdefault("auth", "negotiate")
    return new_wsman("127.0.0.1", port=ep.port, username=user, password=password,
                 operation_timeout=10, read_timeout=15, connection_timeout=5, **kw)


@pytest.fixture(scope="module")
def pool(http_ep: Endpoint) -> Iterator[RunspacePool]:
    with RunspacePool(wsman(http_ep)) as p:
        yield p


def run(pool: RunspacePool, *commands: tuple[str, dict[str, Any]], statements: bool = False) -> PowerShell:
    ps = PowerShell(pool)
    for i, (name, params) in enumerate(commands):
        if i and statements:
            ps.add_statement()
        ps.add_cmdlet(name)
        for k, v in params.items():
            if k.startswith("_"):
                ps.add_argument(v)
            else:
                ps.add_parameter(k, v)
    ps.invoke()
    return ps


# --- sign-in and encryption ---------------------------------------------------------------------

def test_http_ntlm_is_encrypted_end_to_end(pool: RunspacePool) -> None:
    ps = run(pool, ("Whoami", {}))
    assert ps.state == PSInvocationState.COMPLETED
    assert ps.output == ["LAB\\crmadmin", "CRM01"]
    assert pool.connection.transport.encryption is not None  # every body went multipart/encrypted


@pytest.mark.parametrize("user", ["crmadmin", "LAB\\crmadmin", "lab\\CRMADMIN", "crmadmin@lab.local"])
def test_user_name_forms_sign_in_as_the_domain_account(http_ep: Endpoint, user: str) -> None:
    with RunspacePool(wsman(http_ep, user=user)) as p:
        assert run(p, ("Whoami", {})).output[0] == "LAB\\crmadmin"


def test_wrong_password_is_401(http_ep: Endpoint) -> None:
    with pytest.raises(AuthenticationError), RunspacePool(wsman(http_ep, password="wrong")):
        pass


def test_unknown_user_is_401(http_ep: Endpoint) -> None:
    with pytest.raises(AuthenticationError), RunspacePool(wsman(http_ep, user="LAB\\nobody")):
        pass


def test_basic_over_http_is_refused(http_ep: Endpoint) -> None:
    with pytest.raises(AuthenticationError), RunspacePool(wsman(http_ep, auth="basic", encryption="never")):
        pass


def test_clear_text_negotiate_over_http_is_refused(http_ep: Endpoint) -> None:
    with pytest.raises(AuthenticationError), RunspacePool(wsman(http_ep, auth="ntlm", encryption="never")):
        pass


@pytest.mark.parametrize("auth", ["negotiate", "ntlm", "basic"])
def test_https_with_the_lab_ca(https_ep: Endpoint, state: Path, auth: str) -> None:
    ca = str(LabCA.load_or_create(state).bundle_path)
    with RunspacePool(wsman(https_ep, auth=auth, cert_validation=ca)) as p:
        ps = run(p, ("Whoami", {}))
        assert ps.output == ["LAB\\crmadmin", "CRM01"]
        assert p.connection.transport.encryption is None  # TLS protects the bodies


def test_https_wrong_password_is_401(https_ep: Endpoint, state: Path) -> None:
    ca = str(LabCA.load_or_create(state).bundle_path)
    for auth in ("basic", "negotiate"):
        with pytest.raises(AuthenticationError), RunspacePool(
                wsman(https_ep, auth=auth, password="nope", cert_validation=ca)):
            pass


# --- pools, pipelines, parameters ---------------------------------------------------------------

def test_several_pipelines_per_pool_share_its_variables(pool: RunspacePool, http_ep: Endpoint) -> None:
    first = run(pool, ("Count", {})).output[0]
    assert run(pool, ("Count", {})).output == [first + 1]
    with RunspacePool(wsman(http_ep)) as other:
        assert run(other, ("Count", {})).output == [1]  # another pool, other variables


def test_several_statements_in_one_pipeline(pool: RunspacePool, dispatcher: Dispatcher) -> None:
    ps = run(pool, ("Echo-Args", {"A": "1"}), ("Echo-Args", {"B": "2"}), statements=True)
    assert ps.output == ["A=1", "B=2"]


def test_hostile_strings_arrive_verbatim(pool: RunspacePool, dispatcher: Dispatcher) -> None:
    dispatcher.received.clear()
    ps = PowerShell(pool)
    ps.add_cmdlet("Echo-Args")
    for i, text in enumerate(HOSTILE):
        ps.add_parameter(f"P{i}", text)
    ps.add_argument(HOSTILE[0])
    ps.invoke()
    inv = dispatcher.received[-1]
    assert inv.name == "Echo-Args"
    assert inv.parameters == [*((f"P{i}", t) for i, t in enumerate(HOSTILE)), (None, HOSTILE[0])]
    assert ps.output[:-1] == [f"P{i}={t}" for i, t in enumerate(HOSTILE)]


def test_secure_string_round_trip(pool: RunspacePool, dispatcher: Dispatcher) -> None:
    secret = "Pfx;p@ss `$(x) ü"
    dispatcher.received.clear()
    pool.exchange_keys()
    ps = PowerShell(pool)
    ps.add_cmdlet("Echo-Args").add_parameter("privateKeyPassword", TaggedValue("SS", secret))
    ps.invoke()
    value = dispatcher.received[-1].parameters[0][1]
    assert isinstance(value, PSSecureString)
    assert value.decrypt() == secret
    assert ps.output == [secret]  # and back: pypsrp decrypts the server's SecureString


def test_pipeline_input(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Input")
    ps.invoke(input=["a", "b;c", "ü"])
    assert ps.output == ["a", "b;c", "ü"]


def test_every_stream(pool: RunspacePool) -> None:
    ps = run(pool, ("Write-Streams", {}))
    assert ps.state == PSInvocationState.COMPLETED
    assert ps.output == ["out"]
    [err] = ps.streams.error
    assert str(err) == "no such org"
    assert err.fq_error == "GetCrmOrganization,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet"
    assert err.category == 13  # ObjectNotFound
    assert err.target_object == "nosuchorg"
    assert err.reason == "ArgumentException"
    assert (err.activity, err.target_name, err.command_name) == (
        "Get-CrmOrganization", "nosuchorg", "Get-CrmOrganization")
    assert err.exception.adapted_properties["Message"] == "no such org"
    assert "System.ArgumentException" in err.exception.types[0]
    assert [w.message for w in ps.streams.warning] == ["careful"]
    assert [v.message for v in ps.streams.verbose] == ["details"]
    assert [d.message for d in ps.streams.debug] == ["debugging"]
    info, host = ps.streams.information
    assert info.message_data == "plain info" and info.source == "Test" and info.tags == ["T1"]
    assert host.tags == ["PSHOST"]
    data = host.message_data
    assert data.extended_properties["Message"] == "Process succeeded."
    assert str(data.extended_properties["ForegroundColor"]) == "Green"
    assert str(data.extended_properties["BackgroundColor"]) == "Black"
    assert data.extended_properties["NoNewLine"] is False
    [prog] = ps.streams.progress
    assert (prog.activity, prog.description, prog.percent_complete, prog.activity_id) == (
        "Configuring", "step 2 of 4", 50, 3)


def test_terminating_error_fails_the_pipeline(pool: RunspacePool) -> None:
    ps = run(pool, ("Fail-Terminating", {}))
    assert ps.state == PSInvocationState.FAILED
    assert ps.had_errors
    assert ps.output == ["before"]
    assert [str(e) for e in ps.streams.error] == ["Private key not found"]
    assert ps.streams.error[0].fq_error == "PrivateKeyNotFound"
    # The pool is still good for the next pipeline.
    assert run(pool, ("Echo-Args", {"_": "x"})).output == ["x"]


def test_stop_signal_stops_a_running_pipeline(pool: RunspacePool, dispatcher: Dispatcher) -> None:
    dispatcher.stop_seen.clear()
    dispatcher.waiting.clear()
    ps = PowerShell(pool)
    ps.add_cmdlet("Wait-Stop")
    ps.begin_invoke()
    for _ in range(20):  # each poll waits at most 5 s for news
        if ps.output:
            break
        ps.poll_invoke(timeout=5)
    assert ps.output == ["started"]
    assert dispatcher.waiting.is_set()
    ps.stop()
    assert dispatcher.stop_seen.wait(5)
    assert ps.state == PSInvocationState.STOPPED
    assert run(pool, ("Echo-Args", {"_": "after"})).output == ["after"]


def test_unknown_command_record_from_the_lab_commands(state: Path) -> None:
    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state))
    try:
        with RunspacePool(wsman(ep)) as p:
            ps = run(p, ("Get-Nothing", {}))
            assert ps.state == PSInvocationState.FAILED
            [err] = ps.streams.error
            assert "Get-Nothing" in str(err) and "is not recognized" in str(err)
            assert err.fq_error == "CommandNotFoundException"
            ps = run(p, ("Get-Variable", {"Name": "ErrorActionPreference"}))
            assert ps.state == PSInvocationState.COMPLETED
            assert ps.output and str(ps.output[0].adapted_properties.get("Value",
                                     ps.output[0].extended_properties.get("Value"))) == "Continue"
    finally:
        ep.stop()


def test_shell_of_another_user_is_not_found(http_ep: Endpoint) -> None:
    from pypsrp.exceptions import WSManFaultError

    with RunspacePool(wsman(http_ep)) as mine:
        other = wsman(http_ep, user="LAB\\operator", password="0perator!")
        stolen = RunspacePool(other)
        stolen.shell.id = mine.shell.id
        stolen.shell._selector_set = mine.shell._selector_set
        stolen.shell.opened = True
        stolen.state = 2  # OPENED
        stolen.protocol_version = mine.protocol_version
        with pytest.raises(WSManFaultError) as e:
            PowerShell(stolen).add_cmdlet("Whoami").invoke()
        assert e.value.code == 2150858843


def test_large_parameters_and_output_cross_in_many_fragments(pool: RunspacePool,
                                                              dispatcher: Dispatcher) -> None:
    # Bigger than one envelope both ways: the CreatePipeline continues in Send requests and
    # the output spans several Receive answers.
    blob = "".join(chr(0x20 + (i * 7919) % 0x2000) for i in range(300_000))
    data = bytes(range(256)) * 2000
    ps = PowerShell(pool)
    ps.add_cmdlet("Echo-Args").add_parameter("Value", blob).add_parameter("Bytes", data)
    ps.invoke()
    assert ps.state == PSInvocationState.COMPLETED
    assert dispatcher.received[-1].parameters == [("Value", blob), ("Bytes", data)]
    assert ps.output == [f"Value={blob}", f"Bytes={data}"]


def test_idle_pools_are_closed_when_a_new_one_opens(state: Path, dispatcher: Dispatcher) -> None:
    from pypsrp.exceptions import WSManFaultError

    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state, idle_timeout=0), runner=dispatcher)
    try:
        forgotten = RunspacePool(wsman(ep))
        forgotten.open()  # and never closed, as by a client that died
        with RunspacePool(wsman(ep)) as fresh:
            assert run(fresh, ("Whoami", {})).output[0] == "LAB\\crmadmin"
        assert not forgotten.is_alive()  # pypsrp's own check reads the fault code
        with pytest.raises(WSManFaultError) as e:
            run(forgotten, ("Whoami", {}))
        assert e.value.code == 2150858843  # the shell is gone
    finally:
        ep.stop()


def test_parallel_pools_on_one_endpoint_keep_to_themselves(http_ep: Endpoint, https_ep: Endpoint,
                                                           state: Path) -> None:
    # A batch drives many servers and pools at once: sign-ins, keys and variables must not mix.
    from concurrent.futures import ThreadPoolExecutor

    ca = str(LabCA.load_or_create(state).bundle_path)

    def work(i: int) -> list[Any]:
        ep, kw = (http_ep, {}) if i % 2 else (https_ep, {"cert_validation": ca})
        user, password = ("LAB\\operator", "0perator!") if i % 3 == 0 else ("LAB\\crmadmin", PASSWORD)
        with RunspacePool(wsman(ep, user=user, password=password, **kw)) as p:
            counts = [run(p, ("Count", {})).output[0] for _ in range(5)]
            return [run(p, ("Whoami", {})).output[0], counts]

    with ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(work, range(6)))
    for i, (who, counts) in enumerate(results):
        assert who == ("LAB\\operator" if i % 3 == 0 else "LAB\\crmadmin")
        assert counts == [1, 2, 3, 4, 5]


def test_shell_query_and_service_configuration(http_ep: Endpoint) -> None:
    w = wsman(http_ep)
    w.update_max_payload_size()  # reads MaxEnvelopeSizekb from the service configuration
    assert w.max_envelope_size == 500 * 1024
    pool = RunspacePool(w)
    pool.open()
    assert pool.is_alive()
    pool.close()


class _Tap:
    """A loopback relay that keeps every byte both ways, to look at what crossed the wire."""

    def __init__(self, port: int) -> None:
        import socket

        self.seen = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._target = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target), timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._listener.close()


def test_nothing_readable_crosses_plain_http(http_ep: Endpoint) -> None:
    marker = "psbridge-marker-Zürich"
    tap = _Tap(http_ep.port)
    try:
        w = new_wsman("127.0.0.1", port=tap.port, ssl=False, username="LAB\\crmadmin", password=PASSWORD,
                  auth="negotiate", operation_timeout=10, read_timeout=15)
        with RunspacePool(w) as p:
            assert run(p, ("Echo-Args", {"Marker": marker})).output == [f"Marker={marker}"]
    finally:
        tap.close()
    wire = bytes(tap.seen)
    assert b"multipart/encrypted" in wire
    for needle in (marker.encode(), marker.encode("utf-16-le"), b"Echo-Args", b"<s:Envelope", b"creationXml"):
        assert needle not in wire


def test_a_long_lived_pool_keeps_no_finished_pipelines(http_ep: Endpoint) -> None:
    with RunspacePool(wsman(http_ep)) as p:
        for _ in range(30):
            run(p, ("Count", {}))  # pypsrp's invoke() never sends Terminate
        shell = http_ep._host.find(p.shell.id, "LAB\\crmadmin")
        assert shell is not None and not shell.runs and not shell.pool.pipeline_table


def test_a_lab_defect_fails_the_pipeline_without_quoting_values(state: Path) -> None:
    def broken(ctx: Any, statements: Sequence[Sequence[Invocation]], pipeline_input: Any) -> None:
        raise RuntimeError(f"bad value {statements[0][0].parameters[0][1]}")

    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state), runner=broken)
    try:
        with RunspacePool(wsman(ep)) as p:
            ps = run(p, ("Anything", {"Password": "Do-not-show-1"}))
            assert ps.state == PSInvocationState.FAILED
            [err] = ps.streams.error
            assert "RuntimeError" in str(err) and "Do-not-show-1" not in str(err)
            assert err.fq_error == "PSBridgeLabInternalError"
    finally:
        ep.stop()
