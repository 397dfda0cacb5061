"""The lab's WinRM answers against what real Windows servers answer, exchange by exchange.

pypsrp's own test corpus (``tests/tests_pypsrp/responses/*.yml`` in jborean93/pypsrp) holds
WS-Management exchanges recorded against Windows Server 2016/2019 PowerShell endpoints. The
facts below were read from those recordings and written down here as data: which answer
follows which request, the element names and their order, the namespaces, the fault codes and
texts, and the PSRP messages each Receive answer carries. Each test drives the same client
actions with real pypsrp against a lab endpoint, captures what the lab's WinRM service
answered (below the HTTP layer, so after NTLM unsealing), and compares.
"""

from __future__ import annotations

import base64
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue

from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.winrm.service import Answer
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

PASSWORD = "Crm-admin1"
ACCOUNTS = {"LAB\\crmadmin": PASSWORD}

SOAP = "http://www.w3.org/2003/05/soap-envelope"
ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
WSMV = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config"

# --- what the recordings show -----------------------------------------------------------------

# Every answer's header, in this order (ActivityId is WinRM's ETW activity).
HEADER = [(ADDRESSING, "Action"), (ADDRESSING, "MessageID"), (WSMV, "ActivityId"), (ADDRESSING, "To"),
          (ADDRESSING, "RelatesTo")]
# The namespaces each answer's root declares, by the request's action.
ROOT_PREFIXES = {
    "Create": ["s", "a", "x", "w", "rsp", "p"],
    "Command": ["s", "a", "x", "w", "rsp", "p"],
    "Send": ["s", "a", "x", "w", "rsp", "p"],
    "Signal": ["s", "a", "x", "w", "rsp", "p"],
    "Receive": ["s", "a", "w", "rsp", "p"],
    "Delete": ["s", "a", "w", "p"],
    "Get": ["s", "a", "x", "w", "p"],
    "fault": ["s", "a", "x", "e", "n", "w", "p"],
}
# The descriptor of a PowerShell shell in a CreateResponse; a Get of the shell adds the last two.
SHELL_FIELDS = ["ShellId", "ResourceUri", "Owner", "ClientIP", "ProcessId", "IdleTimeOut", "InputStreams",
                "OutputStreams", "MaxIdleTimeOut", "Locale", "DataLocale", "CompressionMode", "ProfileLoaded",
                "Encoding", "BufferMode", "State", "ShellRunTime", "ShellInactivity"]
SHELL_GET_EXTRA = ["MemoryUsed", "ChildProcesses"]
SHELL_VALUES = {"IdleTimeOut": "PT7200.000S", "MaxIdleTimeOut": "PT2147483.647S", "Locale": "en-US",
                "DataLocale": "en-US", "CompressionMode": "NoCompression", "ProfileLoaded": "Yes",
                "Encoding": "UTF8", "BufferMode": "Block", "State": "Connected",
                "ShellRunTime": "P0DT0H0M0S", "ShellInactivity": "P0DT0H0M0S",
                "InputStreams": "stdin pr", "OutputStreams": "stdout"}
CREATED = ["ResourceCreated",
           ["Address", "ReferenceParameters", ["ResourceURI", "SelectorSet", ["Selector"]]]]

# Opening a pool: Create, then two Receives (the pool's Opened state comes on its own), Delete.
OPEN_POOL = [
    ("Create", "CreateResponse", []),
    ("Receive", "ReceiveResponse", ["SESSION_CAPABILITY", "APPLICATION_PRIVATE_DATA"]),
    ("Receive", "ReceiveResponse", ["RUNSPACEPOOL_STATE:2"]),
]
TIMED_OUT = (2150858793, "w:TimedOut", "s:Receiver",
             "The WS-Management service cannot complete the operation within the time specified in "
             "OperationTimeout.  ")
INVALID_SELECTORS = ("The WS-Management service cannot process the request because the request contained "
                     "invalid selectors for the resource. ")
NO_SUCH_COMMAND = ("The Windows Remote Shell received a request to perform an operation on a command "
                   "identifier that does not exist. Either the command has completed execution or the client "
                   "specified an invalid command identifier. ")
BAD_HEADERS = ("The WS-Management service cannot process the request. The request contains one or more "
               "invalid SOAP headers. ")

MESSAGE_TYPES = {
    0x00010002: "SESSION_CAPABILITY", 0x00010004: "INIT_RUNSPACEPOOL", 0x00010005: "PUBLIC_KEY",
    0x00010006: "ENCRYPTED_SESSION_KEY", 0x00021002: "SET_MAX_RUNSPACES", 0x00021003: "SET_MIN_RUNSPACES",
    0x00021004: "RUNSPACE_AVAILABILITY", 0x00021005: "RUNSPACEPOOL_STATE", 0x00021006: "CREATE_PIPELINE",
    0x00021007: "GET_AVAILABLE_RUNSPACES", 0x00021009: "APPLICATION_PRIVATE_DATA",
    0x0002100A: "GET_COMMAND_METADATA", 0x0002100C: "RESET_RUNSPACE_STATE", 0x00041002: "PIPELINE_INPUT",
    0x00041003: "END_OF_PIPELINE_INPUT", 0x00041004: "PIPELINE_OUTPUT", 0x00041005: "ERROR_RECORD",
    0x00041006: "PIPELINE_STATE", 0x00041010: "PROGRESS_RECORD", 0x00041011: "INFORMATION_RECORD",
}


# --- capturing the lab's answers ----------------------------------------------------------------

@dataclass
class Exchange:
    request: ET.Element
    status: int
    raw: bytes
    answer: ET.Element

    @property
    def action(self) -> str:
        return _text(self.request, f"{{{SOAP}}}Header/{{{ADDRESSING}}}Action").rsplit("/", 1)[-1]

    @property
    def answer_action(self) -> str:
        return _text(self.answer, f"{{{SOAP}}}Header/{{{ADDRESSING}}}Action").rsplit("/", 1)[-1]

    @property
    def body(self) -> ET.Element:
        body = self.answer.find(f"{{{SOAP}}}Body")
        assert body is not None
        return body

    def messages(self) -> list[str]:
        """The PSRP messages the answer's streams carry, with the state of a state message."""
        out: list[str] = []
        for stream in self.body.iter(f"{{{SHELL}}}Stream"):
            data = base64.b64decode(stream.text or "")
            while data:
                _, _, flags, length = struct.unpack(">QQBI", data[:21])
                blob, data = data[21:21 + length], data[21 + length:]
                if flags & 0x1:
                    kind = struct.unpack("<I", blob[4:8])[0]
                    name = MESSAGE_TYPES.get(kind, hex(kind))
                    if name in ("PIPELINE_STATE", "RUNSPACEPOOL_STATE"):
                        text = blob[40:].decode("utf-8-sig")
                        state = text.split('State">', 1)[1].split("<", 1)[0]
                        name += f":{state}" + ("+error" if "ExceptionAsErrorRecord" in text else "")
                    out.append(name)
        return out

    def command_state(self) -> tuple[str, str | None] | None:
        el = self.body.find(f"{{{SHELL}}}ReceiveResponse/{{{SHELL}}}CommandState")
        if el is None:
            return None
        return el.attrib["State"].rsplit("/", 1)[-1], el.findtext(f"{{{SHELL}}}ExitCode")


def _payloads(x: Exchange) -> list[ET.Element]:
    """The CLIXML of each PSRP message an answer carries."""
    out = []
    for stream in x.body.iter(f"{{{SHELL}}}Stream"):
        data = base64.b64decode(stream.text or "")
        while data:
            _, _, flags, length = struct.unpack(">QQBI", data[:21])
            blob, data = data[21:21 + length], data[21 + length:]
            if flags & 0x1:
                out.append(ET.fromstring(blob[40:].decode("utf-8-sig")))  # noqa: S314
    return out


def _text(el: ET.Element, path: str) -> str:
    return el.findtext(path) or ""


def _names(el: ET.Element) -> list[str]:
    return [child.tag.split("}", 1)[1] for child in el]


def _tree(el: ET.Element) -> list[Any]:
    """An element's children as [name, [grandchildren...], ...], for structure comparisons."""
    out: list[Any] = []
    for child in el:
        out.append(child.tag.split("}", 1)[1])
        if len(child):
            out.append(_tree(child))
    return out


class Capture:
    def __init__(self, ep: Endpoint) -> None:
        self.exchanges: list[Exchange] = []
        service = ep._httpd.service
        original = service.handle

        def handle(data: bytes, user: str, client_ip: str) -> Answer:
            answer = original(data, user, client_ip)
            self.exchanges.append(Exchange(ET.fromstring(data), answer.status, answer.body,  # noqa: S314
                                           ET.fromstring(answer.body)))  # noqa: S314
            return answer

        service.handle = handle  # type: ignore[method-assign]

    def take(self) -> list[Exchange]:
        got, self.exchanges = self.exchanges, []
        return got


@pytest.fixture(scope="module")
def ep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    state: Path = tmp_path_factory.mktemp("shapes")
    World.seed(state, servers=1, orgs=1)
    endpoint = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state, pace=0))
    yield endpoint
    endpoint.stop()


@pytest.fixture
def capture(ep: Endpoint) -> Capture:
    cap = Capture(ep)
    return cap


def wsman(ep: Endpoint, **kw: Any) -> Any:
    kw.setdefault("operation_timeout", 20)
    return new_wsman("127.0.0.1", port=ep.port, username="LAB\\crmadmin", password=PASSWORD, ssl=False,
                     auth="ntlm", read_timeout=30, **kw)


def sequence(exchanges: list[Exchange]) -> list[tuple[str, str, list[str]]]:
    return [(x.action, x.answer_action, x.messages()) for x in exchanges]


def check_envelope(x: Exchange) -> None:
    """What every answer has in common: header order, RelatesTo, xml:lang, the root's prefixes."""
    header = x.answer.find(f"{{{SOAP}}}Header")
    assert header is not None
    assert [(c.tag[1:].split("}")[0], c.tag.split("}")[1]) for c in header] == HEADER
    assert _text(header, f"{{{ADDRESSING}}}RelatesTo") == _text(
        x.request, f"{{{SOAP}}}Header/{{{ADDRESSING}}}MessageID")
    assert x.answer.attrib.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    root = x.raw.split(b">", 1)[0].decode()
    declared = [part.split("=")[0][len("xmlns:"):] for part in root.split() if part.startswith("xmlns:")]
    kind = "fault" if x.answer_action == "fault" else x.action
    assert declared == ROOT_PREFIXES[kind], (kind, declared)


def check_fault(x: Exchange, code: int, subcode: str, value: str, reason: str, message: str | None = None,
                detail: str | None = None, provider: bool = False) -> None:
    assert x.status == 500 and x.answer_action == "fault"
    check_envelope(x)
    fault = x.body.find(f"{{{SOAP}}}Fault")
    assert fault is not None
    assert _tree(fault)[:4] == ["Code", ["Value", "Subcode", ["Value"]], "Reason", ["Text"]]
    assert _text(fault, f"{{{SOAP}}}Code/{{{SOAP}}}Value") == value
    assert _text(fault, f"{{{SOAP}}}Code/{{{SOAP}}}Subcode/{{{SOAP}}}Value") == subcode
    assert _text(fault, f"{{{SOAP}}}Reason/{{{SOAP}}}Text") == reason
    detail_el = fault.find(f"{{{SOAP}}}Detail")
    assert detail_el is not None
    names = _names(detail_el)
    assert names == (["FaultDetail", "WSManFault"] if detail else ["WSManFault"])
    if detail:
        assert _text(detail_el, f"{{{WSMAN}}}FaultDetail") == detail
    wf = detail_el.find(f"{{{FAULT}}}WSManFault")
    assert wf is not None and wf.attrib["Code"] == str(code) and wf.attrib["Machine"] == "CRM01"
    msg = wf.find(f"{{{FAULT}}}Message")
    assert msg is not None
    if provider:
        pf = msg.find(f"{{{FAULT}}}ProviderFault")
        assert pf is not None and pf.attrib == {"provider": "Shell provider",
                                                "path": "%systemroot%\\system32\\WsmSvc.dll"}
        assert _text(pf, f"{{{FAULT}}}WSManFault/{{{FAULT}}}Message") == (message or reason)
    else:
        assert msg.text == (message or reason)


# --- the replays --------------------------------------------------------------------------------

def test_open_and_close_a_pool(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)):
        pass
    got = capture.take()
    assert sequence(got) == [*OPEN_POOL, ("Delete", "DeleteResponse", [])]
    for x in got:
        check_envelope(x)
    create, delete = got[0], got[-1]
    assert _tree(create.body)[:2] == CREATED
    shell = create.body.find(f"{{{SHELL}}}Shell")
    assert shell is not None and _names(shell) == SHELL_FIELDS
    for name, value in SHELL_VALUES.items():
        assert shell.findtext(f"{{{SHELL}}}{name}") == value, name
    assert shell.findtext(f"{{{SHELL}}}Owner") == "LAB\\crmadmin"
    assert shell.findtext(f"{{{SHELL}}}ProcessId", "").isdigit()
    assert delete.raw.endswith(b"<s:Body></s:Body></s:Envelope>")
    # The server's capability and $PSVersionTable as a Windows PowerShell 5.1 endpoint sends them.
    capability, private = _payloads(got[1])
    # Windows writes protocolversion first, psrpcore PSVersion first: clients read them by name.
    assert {v.attrib["N"]: v.text for v in capability.iter("Version")} == {
        "protocolversion": "2.3", "PSVersion": "2.0", "SerializationVersion": "1.1.0.1"}
    table = [k.text for k in private.iter("S") if k.attrib.get("N") == "Key"]
    assert table == ["PSVersionTable", "PSVersion", "PSEdition", "PSCompatibleVersions", "CLRVersion",
                     "BuildVersion", "WSManStackVersion", "PSRemotingProtocolVersion", "SerializationVersion"]


def test_a_pool_created_with_an_idle_timeout_and_no_profile(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep), idle_timeout=60, no_profile=True) as pool:
        shell = capture.take()[0].body.find(f"{{{SHELL}}}Shell")
        assert shell is not None and shell.findtext(f"{{{SHELL}}}IdleTimeOut") == "PT60.000S"
        assert shell.findtext(f"{{{SHELL}}}ProfileLoaded") == "No"
        assert pool.is_alive()  # pypsrp's Get of the shell
        [get] = capture.take()
    assert get.action == "Get" and get.answer_action == "GetResponse"
    check_envelope(get)
    assert _names(get.body) == ["Shell"]
    assert _names(get.body[0]) == SHELL_FIELDS + SHELL_GET_EXTRA
    assert get.body[0].findtext(f"{{{SHELL}}}IdleTimeOut") == "PT60.000S"


def test_a_command_with_output_after_a_key_exchange(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        pool.exchange_keys()
        ps = PowerShell(pool)
        ps.add_cmdlet("Set-Variable").add_parameter("Name", "sec")
        ps.add_parameter("Value", TaggedValue("SS", "x"))
        ps.add_statement()
        ps.add_cmdlet("Get-Variable").add_parameter("Name", "*Preference").add_parameter("ValueOnly", True)
        ps.invoke()
        assert ps.state == PSInvocationState.COMPLETED and len(ps.output) == 7
        got = capture.take()
    send, _, command, receive = got
    assert sequence(got)[:3] == [("Send", "SendResponse", []), ("Receive", "ReceiveResponse",
                                                                   ["ENCRYPTED_SESSION_KEY"]),
                                  ("Command", "CommandResponse", [])]
    for x in got:
        check_envelope(x)
    assert send.raw.endswith(b"<s:Body><rsp:SendResponse/></s:Body></s:Envelope>")
    assert _tree(command.body) == ["CommandResponse", ["CommandId"]]
    # Only the final state: no "Running" at the start of the pipeline.
    assert receive.messages() == ["PIPELINE_OUTPUT"] * 7 + ["PIPELINE_STATE:4"]
    assert receive.command_state() == ("Done", "0")
    assert _names(receive.body[0]) == ["Stream"] * len(receive.body[0][:-1]) + ["CommandState"]
    stream = receive.body[0][0]
    assert set(stream.attrib) == {"Name", "CommandId"} and stream.attrib["Name"] == "stdout"


def test_a_long_command_times_out_receives_until_it_is_done(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep, operation_timeout=1)) as pool:
        capture.take()
        ps = PowerShell(pool)
        ps.add_cmdlet("Start-Sleep").add_parameter("Milliseconds", 2500)
        ps.add_statement().add_cmdlet("Get-Variable").add_parameter("Name", "PSHOME")
        ps.add_parameter("ValueOnly", True)
        t0 = time.monotonic()
        ps.invoke()  # pypsrp retries a Receive that timed out
        assert 2.4 < time.monotonic() - t0 < 6
        assert ps.output == ["C:\\Windows\\System32\\WindowsPowerShell\\v1.0"]
        got = capture.take()
    assert [x.action for x in got] == ["Command", "Receive", "Receive", "Receive"]
    for x in got[1:3]:
        check_fault(x, *TIMED_OUT)
    assert got[3].messages() == ["PIPELINE_OUTPUT", "PIPELINE_STATE:4"]
    assert got[3].command_state() == ("Done", "0")


def test_partial_output_carries_no_command_state(ep: Endpoint, capture: Capture) -> None:
    # A pipeline that is still running: the answer holds what is there, and no state at all.
    with RunspacePool(wsman(ep, operation_timeout=5)) as pool:
        capture.take()
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Variable").add_parameter("Name", "PSHOME").add_parameter("ValueOnly", True)
        ps.add_statement().add_cmdlet("Start-Sleep").add_parameter("Seconds", 1)
        ps.begin_invoke()
        while ps.state == PSInvocationState.RUNNING:
            ps.poll_invoke(timeout=5)
        got = capture.take()
    receives = [x for x in got if x.action == "Receive"]
    assert receives[0].messages() == ["PIPELINE_OUTPUT"] and receives[0].command_state() is None
    assert receives[-1].messages() == ["PIPELINE_STATE:4"] and receives[-1].command_state() == ("Done", "0")


def test_a_failing_pipeline_sends_its_output_then_the_failed_state(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Variable").add_parameter("Name", "PSHOME").add_parameter("ValueOnly", True)
        ps.add_statement().add_cmdlet("Get-Nothing")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED
        got = capture.take()
    assert got[-1].messages() == ["PIPELINE_OUTPUT", "PIPELINE_STATE:5+error"]
    assert got[-1].command_state() == ("Done", "0")


def test_receive_for_an_unknown_command(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        with pytest.raises(WSManFaultError) as e:
            pool.shell.receive("stdout", command_id="D1BF48DA-B26C-4F4A-BE52-B382AC20DD1F")
        assert e.value.code == 2150858843 and e.value.reason == NO_SUCH_COMMAND.strip()
        [x] = capture.take()
    check_fault(x, 2150858843, "w:InvalidSelectors", "s:Sender", INVALID_SELECTORS, NO_SUCH_COMMAND,
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors")


def test_is_alive_after_the_shell_is_gone(ep: Endpoint, capture: Capture) -> None:
    pool = RunspacePool(wsman(ep))
    pool.open()
    shell_id = pool.shell.id
    ep._host.close_shell(ep._host.find(shell_id, "LAB\\crmadmin"))  # gone, as after an idle timeout
    capture.take()
    assert pool.is_alive() is False
    [x] = capture.take()
    check_fault(x, 2150858843, "w:InvalidSelectors", "s:Sender", INVALID_SELECTORS,
                detail="http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors",
                provider=True)


def test_an_invalid_operation_timeout_is_a_header_fault(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        with pytest.raises(WSManFaultError) as e:
            pool.shell.wsman.get(pool.shell.resource_uri, selector_set=pool.shell._selector_set, timeout=-1)
        assert e.value.code == 2150858767
        [x] = capture.take()
    check_fault(x, 2150858767, "a:InvalidMessageInformationHeader", "s:Sender", BAD_HEADERS,
                "The WS-Management service cannot process the request. The XML contains an invalid timeout "
                "field in the SOAP header: PT-1S. ")


def test_terminate_after_each_invocation_and_ctrl_c_of_a_running_one(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Variable").add_parameter("Name", "PSHOME").add_parameter("ValueOnly", True)
        for _ in range(2):
            ps.invoke()
            ps.close()  # Signal Terminate, then the same CommandId again
        got = capture.take()
        assert [(x.action, x.answer_action) for x in got] == [
            ("Command", "CommandResponse"), ("Receive", "ReceiveResponse"), ("Signal", "SignalResponse")] * 2
        ids = {x.body[0].findtext(f"{{{SHELL}}}CommandId") for x in got if x.action == "Command"}
        assert len(ids) == 1
        running = PowerShell(pool)
        running.add_cmdlet("Start-Sleep").add_parameter("Seconds", 30)
        running.begin_invoke()
        t0 = time.monotonic()
        running.stop()
        assert time.monotonic() - t0 < 5
        got = capture.take()
    signal = got[-1]
    assert signal.action == "Signal" and signal.answer_action == "SignalResponse"
    check_envelope(signal)
    assert signal.raw.endswith(b"<s:Body><rsp:SignalResponse/></s:Body></s:Envelope>")


def test_service_configuration(ep: Endpoint, capture: Capture) -> None:
    w = wsman(ep)
    w.update_max_payload_size()
    [x] = capture.take()
    check_envelope(x)
    assert _names(x.body) == ["Config"] and x.body[0].tag == f"{{{CONFIG}}}Config"
    assert _names(x.body[0])[:4] == ["MaxEnvelopeSizekb", "MaxTimeoutms", "MaxBatchItems",
                                     "MaxProviderRequests"]
    assert x.body[0].findtext(f"{{{CONFIG}}}MaxEnvelopeSizekb") == "500"
    assert x.body[0].findtext(f"{{{CONFIG}}}MaxTimeoutms") == "60000"


def test_runspace_availability(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        assert pool.get_available_runspaces() == 1
        pool.max_runspaces = 2
        pool.reset_runspace_state()
        got = capture.take()
    assert sequence(got) == [
        ("Send", "SendResponse", []), ("Receive", "ReceiveResponse", ["RUNSPACE_AVAILABILITY"]),
        ("Send", "SendResponse", []), ("Receive", "ReceiveResponse", ["RUNSPACE_AVAILABILITY"]),
        ("Send", "SendResponse", []), ("Receive", "ReceiveResponse", ["RUNSPACE_AVAILABILITY"]),
    ]


def test_get_command_metadata(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        found = pool.get_command_metadata(["get-*"], command_types=8)
        got = capture.take()
    names = [c.name for c in found]
    assert "Get-Command" in names and "Get-Item" in names and names == sorted(names)
    command = next(c for c in found if c.name == "Get-Item")
    assert command.namespace == "Microsoft.PowerShell.Management"
    assert command.parameters["LiteralPath"].parameter_type == "System.String[]"
    assert command.parameters["LiteralPath"].aliases == ["PSPath"]
    assert command.parameters["Force"].switch_parameter is True
    assert got[0].action == "Command" and _sent(got[0]) == ["GET_COMMAND_METADATA"]
    # The count first, then one object per command, then the state (over as many answers as needed).
    answered = [m for x in got[1:] for m in x.messages()]
    assert answered == ["PIPELINE_OUTPUT"] * (len(found) + 1) + ["PIPELINE_STATE:4"]


def test_pipeline_input_arrives_with_send(ep: Endpoint, capture: Capture) -> None:
    with RunspacePool(wsman(ep)) as pool:
        capture.take()
        ps = PowerShell(pool)
        ps.add_cmdlet("Select-Object").add_parameter("First", 2)
        ps.invoke(input=["a", "b", "c"])
        assert ps.output == ["a", "b"]
        got = capture.take()
    assert sequence(got) == [
        ("Command", "CommandResponse", []), ("Send", "SendResponse", []),
        ("Receive", "ReceiveResponse", ["PIPELINE_OUTPUT", "PIPELINE_OUTPUT", "PIPELINE_STATE:4"]),
    ]
    assert [m for m in _sent(got[1])] == ["PIPELINE_INPUT"] * 3 + ["END_OF_PIPELINE_INPUT"]


def _sent(x: Exchange) -> list[str]:
    out = []
    sent = [*x.request.iter(f"{{{SHELL}}}Stream"), *x.request.iter(f"{{{SHELL}}}Arguments")]
    for stream in sent:
        data = base64.b64decode(stream.text or "")
        while data:
            _, _, flags, length = struct.unpack(">QQBI", data[:21])
            blob, data = data[21:21 + length], data[21 + length:]
            if flags & 0x1:
                out.append(MESSAGE_TYPES.get(struct.unpack("<I", blob[4:8])[0], "?"))
    return out


def test_the_lab_does_not_depend_on_elementtrees_global_prefixes(ep: Endpoint, capture: Capture) -> None:
    # ElementTree's prefix map is process-wide; another library remapping a namespace must not
    # change what the lab writes.
    saved = dict(ET._namespace_map)  # type: ignore[attr-defined]
    try:
        ET.register_namespace("zz", SHELL)
        ET.register_namespace("yy", ADDRESSING)
        with RunspacePool(wsman(ep)):
            pass
    finally:
        ET._namespace_map.clear()  # type: ignore[attr-defined]
        ET._namespace_map.update(saved)  # type: ignore[attr-defined]
    for x in capture.take():
        assert b"zz:" not in x.raw and b"yy:" not in x.raw and b"<a:Action>" in x.raw
