"""WS-Management SOAP envelopes as a WinRM service reads and writes them (MS-WSMV), sans I/O.

Only what a PowerShell remoting client uses: Create and Delete of a shell (a runspace pool),
Command (a pipeline), Send, Receive, Signal, Get of a shell or of the service configuration,
and SOAP faults with the WSManFault detail the client turns into an error code.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from psbridge.errors import TwinAnswer

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "xml": "http://www.w3.org/XML/1998/namespace",
}
for _prefix, _uri in NS.items():
    if _prefix != "xml":
        ET.register_namespace(_prefix, _uri)

_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"


class Action:
    CREATE = _TRANSFER + "Create"
    DELETE = _TRANSFER + "Delete"
    GET = _TRANSFER + "Get"
    COMMAND = _SHELL + "Command"
    SEND = _SHELL + "Send"
    RECEIVE = _SHELL + "Receive"
    SIGNAL = _SHELL + "Signal"

    @staticmethod
    def response(action: str) -> str:
        return action + "Response"


class CommandState:
    DONE = _SHELL + "CommandState/Done"
    RUNNING = _SHELL + "CommandState/Running"


class Signal:
    PS_CTRL_C = "powershell/signal/ctrl_c"
    TERMINATE = _SHELL + "signal/Terminate"
    CTRL_C = _SHELL + "signal/ctrl_c"


SHELL_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CONFIG_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/config"
POWERSHELL_RESOURCE_PREFIX = "http://schemas.microsoft.com/powershell/"


def q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


@dataclass
class Request:
    """The parts of a WS-Management request a WinRM service acts on."""

    action: str
    message_id: str
    resource_uri: str
    body: ET.Element
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float | None = None
    max_envelope_size: int | None = None

    @property
    def shell_id(self) -> str | None:
        return self.selectors.get("ShellId")


class BadRequest(TwinAnswer):
    """The message is not a WS-Management request this service understands."""


_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def parse_duration(text: str | None) -> float | None:
    """An xs:duration like ``PT20S`` or ``PT1M30.5S`` in seconds."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m:
        return None
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_request(data: bytes) -> Request:
    try:
        # Loopback-only lab service; expat resolves no external entities.
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError as e:
        raise BadRequest(f"the request is not well-formed XML: {e}") from None
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if root.tag != q("s", "Envelope") or header is None or body is None:
        raise BadRequest("the request is not a SOAP 1.2 envelope")

    def text(path: str) -> str:
        el = header.find(path, NS)
        return (el.text or "").strip() if el is not None else ""

    action = text("wsa:Action")
    if not action:
        raise BadRequest("the request has no wsa:Action")
    selectors = {
        el.attrib.get("Name", ""): (el.text or "")
        for el in header.findall("wsman:SelectorSet/wsman:Selector", NS)
    }
    options = {
        el.attrib.get("Name", ""): (el.text or "")
        for el in header.findall("wsman:OptionSet/wsman:Option", NS)
    }
    size = text("wsman:MaxEnvelopeSize")
    return Request(
        action=action,
        message_id=text("wsa:MessageID"),
        resource_uri=text("wsman:ResourceURI"),
        body=body,
        selectors=selectors,
        options=options,
        operation_timeout=parse_duration(text("wsman:OperationTimeout")),
        max_envelope_size=int(size) if size.isdigit() else None,
    )


def envelope(action: str, relates_to: str, body: ET.Element | None = None) -> bytes:
    """A response envelope for ``action`` answering the request ``relates_to``."""
    return envelope_with(action, relates_to, [body] if body is not None else [])


def envelope_with(action: str, relates_to: str, children: list[ET.Element]) -> bytes:
    env = ET.Element(q("s", "Envelope"))
    header = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(header, q("wsa", "Action")).text = action
    ET.SubElement(header, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, q("wsa", "RelatesTo")).text = relates_to
    ET.SubElement(header, q("wsa", "To")).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    body = ET.SubElement(env, q("s", "Body"))
    for child in children:
        body.append(child)
    return ET.tostring(env, encoding="utf-8", xml_declaration=False)


def shell_element(shell_id: str, resource_uri: str, owner: str, client_ip: str, idle_seconds: int,
                  input_streams: str, output_streams: str) -> ET.Element:
    shell = ET.Element(q("rsp", "Shell"))
    for name, value in (
        ("ShellId", shell_id),
        ("ResourceUri", resource_uri),
        ("Owner", owner),
        ("ClientIP", client_ip),
        ("IdleTimeOut", f"PT{idle_seconds}.000S"),
        ("InputStreams", input_streams),
        ("OutputStreams", output_streams),
        ("ShellRunTime", "P0DT0H0M0S"),
        ("ShellInactivity", "P0DT0H0M0S"),
    ):
        ET.SubElement(shell, q("rsp", name)).text = value
    return shell


def create_response(address: str, resource_uri: str, shell: ET.Element) -> list[ET.Element]:
    """The Body children of a CreateResponse: where the shell lives, then the shell itself."""
    created = ET.Element(q("wst", "ResourceCreated"))
    ET.SubElement(created, q("wsa", "Address")).text = address
    params = ET.SubElement(created, q("wsa", "ReferenceParameters"))
    ET.SubElement(params, q("wsman", "ResourceURI")).text = resource_uri
    selectors = ET.SubElement(params, q("wsman", "SelectorSet"))
    shell_id = shell.findtext("rsp:ShellId", "", NS)
    ET.SubElement(selectors, q("wsman", "Selector"), Name="ShellId").text = shell_id
    return [created, shell]


def q_element(name: str) -> ET.Element:
    """An empty ``rsp:`` answer element such as ``SendResponse``."""
    return ET.Element(q("rsp", name))


def command_response(command_id: str) -> ET.Element:
    el = ET.Element(q("rsp", "CommandResponse"))
    ET.SubElement(el, q("rsp", "CommandId")).text = command_id
    return el


def receive_response(chunks: list[bytes], command_id: str | None, done: bool) -> ET.Element:
    import base64

    el = ET.Element(q("rsp", "ReceiveResponse"))
    for chunk in chunks:
        attrs = {"Name": "stdout"}
        if command_id:
            attrs["CommandId"] = command_id
        ET.SubElement(el, q("rsp", "Stream"), attrs).text = base64.b64encode(chunk).decode("ascii")
    if command_id:
        state = CommandState.DONE if done else CommandState.RUNNING
        st = ET.SubElement(el, q("rsp", "CommandState"), CommandId=command_id, State=state)
        if done:
            ET.SubElement(st, q("rsp", "ExitCode")).text = "0"
    return el


def config_element(max_envelope_kb: int) -> ET.Element:
    cfg = ET.Element(q("cfg", "Config"))
    ET.SubElement(cfg, q("cfg", "MaxEnvelopeSizekb")).text = str(max_envelope_kb)
    ET.SubElement(cfg, q("cfg", "MaxTimeoutms")).text = "60000"
    return cfg


@dataclass(frozen=True)
class Fault:
    """A WS-Management fault: HTTP 500 with a SOAP Fault and the WSManFault ``code``."""

    code: int
    subcode: str
    reason: str
    value: str = "s:Receiver"
    action: str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"


def fault_envelope(fault: Fault, relates_to: str, machine: str) -> bytes:
    env = ET.Element(q("s", "Envelope"))
    header = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(header, q("wsa", "Action")).text = fault.action
    ET.SubElement(header, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    if relates_to:
        ET.SubElement(header, q("wsa", "RelatesTo")).text = relates_to
    body = ET.SubElement(env, q("s", "Body"))
    f = ET.SubElement(body, q("s", "Fault"))
    code = ET.SubElement(f, q("s", "Code"))
    ET.SubElement(code, q("s", "Value")).text = fault.value
    sub = ET.SubElement(code, q("s", "Subcode"))
    ET.SubElement(sub, q("s", "Value")).text = fault.subcode
    reason = ET.SubElement(f, q("s", "Reason"))
    ET.SubElement(reason, q("s", "Text"), {q("xml", "lang"): "en-US"}).text = fault.reason
    detail = ET.SubElement(f, q("s", "Detail"))
    wf = ET.SubElement(detail, q("wsmanfault", "WSManFault"), Code=str(fault.code), Machine=machine)
    ET.SubElement(wf, q("wsmanfault", "Message")).text = fault.reason
    return ET.tostring(env, encoding="utf-8", xml_declaration=False)


def timed_out() -> Fault:
    return Fault(2150858793, "w:TimedOut",
                 "The WS-Management service cannot complete the operation within the time specified in "
                 "OperationTimeout.")


def shell_not_found(shell_id: str) -> Fault:
    return Fault(
        2150858843, "w:InvalidSelectors",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not "
        "found on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer "
        "exists on the server. Provide the correct ShellId or create a new shell and retry the operation.",
        value="s:Sender")


def command_not_found(command_id: str) -> Fault:
    return Fault(
        2150858843, "w:InvalidSelectors",
        f"The request for the command with CommandId {command_id} failed because the command was not found "
        "in the shell.", value="s:Sender")


def unsupported(action: str) -> Fault:
    return Fault(
        2150858771, "w:ActionNotSupported",
        f"The WS-Management service cannot process the request. The action {action} is not supported by "
        "this resource.", value="s:Sender")


def invalid(reason: str) -> Fault:
    return Fault(2150858817, "w:InvalidMessageInformationHeader", reason, value="s:Sender")

