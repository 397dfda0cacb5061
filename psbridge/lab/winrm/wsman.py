"""WS-Management SOAP envelopes as a WinRM service reads and writes them (MS-WSMV), sans I/O.

Only what a PowerShell remoting client uses: Create and Delete of a shell (a runspace pool),
Command (a pipeline), Send, Receive, Signal, Get of a shell or of the service configuration,
and SOAP faults with the WSManFault detail the client turns into an error code.

Answers are shaped as recorded Windows Server answers are: the same header order (Action,
MessageID, ActivityId, To, RelatesTo), the same prefixes (``s``, ``a``, ``x``, ``w``, ``rsp``,
``p``, ``cfg``, ``f``), the same shell descriptor fields and fault texts. They are written by
this module's own serializer rather than ``ElementTree.tostring``: ElementTree takes prefixes
from a process-wide map that any library may change at any time (pypsrp rewrites it whenever a
client is built), and the lab must neither depend on it nor change it.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from psbridge.errors import TwinAnswer

# Prefixes for reading requests (ElementPath lookups only; nothing is registered globally).
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
_EVENTING = "http://schemas.xmlsoap.org/ws/2004/08/eventing"
_ENUMERATION = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"

# The prefixes a Windows WinRM service writes, by namespace.
WIRE_PREFIX = {
    NS["s"]: "s",
    NS["wsa"]: "a",
    NS["wst"]: "x",
    _EVENTING: "e",
    _ENUMERATION: "n",
    NS["wsman"]: "w",
    NS["rsp"]: "rsp",
    NS["wsmv"]: "p",
    NS["cfg"]: "cfg",
    NS["wsmanfault"]: "f",
    NS["xml"]: "xml",
}
_URI = {prefix: uri for uri, prefix in WIRE_PREFIX.items()}

_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"


class Action:
    CREATE = _TRANSFER + "Create"
    DELETE = _TRANSFER + "Delete"
    GET = _TRANSFER + "Get"
    COMMAND = _SHELL + "Command"
    SEND = _SHELL + "Send"
    RECEIVE = _SHELL + "Receive"
    SIGNAL = _SHELL + "Signal"
    FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

    @staticmethod
    def response(action: str) -> str:
        return action + "Response"


# Which namespaces the envelope of each answer declares on its root, as recorded answers do.
_ROOT_PREFIXES = {
    Action.CREATE: ("s", "a", "x", "w", "rsp", "p"),
    Action.COMMAND: ("s", "a", "x", "w", "rsp", "p"),
    Action.SEND: ("s", "a", "x", "w", "rsp", "p"),
    Action.SIGNAL: ("s", "a", "x", "w", "rsp", "p"),
    Action.RECEIVE: ("s", "a", "w", "rsp", "p"),
    Action.DELETE: ("s", "a", "w", "p"),
    Action.GET: ("s", "a", "x", "w", "p"),
    Action.FAULT: ("s", "a", "x", "e", "n", "w", "p"),
}


class CommandState:
    DONE = _SHELL + "CommandState/Done"
    RUNNING = _SHELL + "CommandState/Running"
    PENDING = _SHELL + "CommandState/Pending"


class Signal:
    PS_CTRL_C = "powershell/signal/ctrl_c"
    TERMINATE = _SHELL + "signal/Terminate"
    CTRL_C = _SHELL + "signal/ctrl_c"


SHELL_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CONFIG_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/config"
POWERSHELL_RESOURCE_PREFIX = "http://schemas.microsoft.com/powershell/"
# WinRM's own limit for a shell's IdleTimeOut (MaxIdleTimeOut in the shell descriptor).
MAX_IDLE_TIMEOUT = 2147483.647


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
    locale: str = "en-US"
    data_locale: str = "en-US"
    bad_timeout: str | None = None  # an OperationTimeout the service cannot read (a fault)

    @property
    def shell_id(self) -> str | None:
        return self.selectors.get("ShellId")


class BadRequest(TwinAnswer):
    """The message is not a WS-Management request this service understands."""


_DURATION = re.compile(
    r"^P(?:(\d+)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str | None) -> float | None:
    """An xs:duration like ``PT20S``, ``PT1M30.5S`` or ``P0DT0H5M0S`` in seconds (None: not one)."""
    if not text:
        return None
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def duration(seconds: float) -> str:
    """How a shell descriptor writes a time span: ``P0DT0H1M5S``."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


def timeout_text(seconds: float) -> str:
    """How WinRM writes a timeout it applies: ``PT7200.000S``."""
    return f"PT{seconds:.3f}S"


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

    def lang(path: str) -> str:
        el = header.find(path, NS)
        return el.attrib.get(q("xml", "lang"), "en-US") if el is not None else "en-US"

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
    raw_timeout = text("wsman:OperationTimeout")
    timeout = parse_duration(raw_timeout)
    return Request(
        action=action,
        message_id=text("wsa:MessageID"),
        resource_uri=text("wsman:ResourceURI"),
        body=body,
        selectors=selectors,
        options=options,
        operation_timeout=timeout,
        max_envelope_size=int(size) if size.isdigit() else None,
        locale=lang("wsman:Locale"),
        data_locale=lang("wsmv:DataLocale"),
        bad_timeout=raw_timeout if raw_timeout and timeout is None else None,
    )


# --- writing --------------------------------------------------------------------------------------

def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def serialize(root: ET.Element, root_prefixes: tuple[str, ...]) -> bytes:
    """``root`` as UTF-8 XML with the WinRM prefixes; ``root_prefixes`` are declared on the root,
    any other namespace on the first element that uses it (as WinRM does for ``cfg`` and ``f``)."""
    out: list[str] = []

    def name_of(tag: str, declared: set[str], decls: list[str]) -> str:
        uri, local = _split(tag)
        if not uri:
            return local
        prefix = WIRE_PREFIX.get(uri)
        if prefix is None:  # a namespace the service never writes: a default namespace
            decls.append(f' xmlns="{uri}"')
            return local
        if prefix != "xml" and prefix not in declared:
            declared.add(prefix)
            decls.append(f' xmlns:{prefix}="{uri}"')
        return f"{prefix}:{local}"

    def write(el: ET.Element, inherited: set[str], top: bool) -> None:
        declared = set(inherited)
        decls: list[str] = []
        if top:
            for prefix in root_prefixes:
                declared.add(prefix)
                decls.append(f' xmlns:{prefix}="{_URI[prefix]}"')
        tag = name_of(el.tag, declared, decls)
        attrs = [f" {name_of(k, declared, decls)}={quoteattr(v)}" for k, v in el.attrib.items()]
        head = f"<{tag}{''.join(attrs)}{''.join(decls)}"
        if len(el) == 0 and el.text is None:  # text "" is written open and closed: <s:Body></s:Body>
            out.append(head + "/>")
            return
        out.append(head + ">")
        if el.text:
            out.append(escape(el.text))
        for child in el:
            write(child, declared, False)
            if child.tail:
                out.append(escape(child.tail))
        out.append(f"</{tag}>")

    write(root, set(), True)
    return "".join(out).encode("utf-8")


def _envelope(action: str, relates_to: str, children: list[ET.Element], request_action: str) -> bytes:
    env = ET.Element(q("s", "Envelope"), {q("xml", "lang"): "en-US"})
    header = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(header, q("wsa", "Action")).text = action
    ET.SubElement(header, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, q("wsmv", "ActivityId")).text = str(uuid.uuid4()).upper()
    ET.SubElement(header, q("wsa", "To")).text = ANONYMOUS
    if relates_to:
        ET.SubElement(header, q("wsa", "RelatesTo")).text = relates_to
    body = ET.SubElement(env, q("s", "Body"))
    for child in children:
        body.append(child)
    if not children:
        body.text = ""  # WinRM writes an empty body as <s:Body></s:Body>
    return serialize(env, _ROOT_PREFIXES.get(request_action, ("s", "a", "w", "p")))


def envelope(action: str, relates_to: str, body: ET.Element | None = None) -> bytes:
    """A response envelope for ``action`` (a ``...Response`` action) answering ``relates_to``."""
    request_action = action.removesuffix("Response")
    return _envelope(action, relates_to, [body] if body is not None else [], request_action)


def envelope_with(action: str, relates_to: str, children: list[ET.Element]) -> bytes:
    return _envelope(action, relates_to, children, action.removesuffix("Response"))


@dataclass(frozen=True)
class ShellInfo:
    """What a shell descriptor (``rsp:Shell`` in Create and Get answers) says about a shell."""

    shell_id: str
    resource_uri: str
    owner: str
    client_ip: str
    process_id: int
    idle_timeout: float
    input_streams: str = "stdin pr"
    output_streams: str = "stdout"
    locale: str = "en-US"
    data_locale: str = "en-US"
    profile_loaded: bool = True
    run_time: float = 0.0
    inactivity: float = 0.0


def shell_element(info: ShellInfo, *, get: bool = False) -> ET.Element:
    """The shell descriptor, field for field as a Windows PowerShell endpoint writes it.

    A Get of the shell adds what the service measures about the host process.
    """
    shell = ET.Element(q("rsp", "Shell"))
    fields = [
        ("ShellId", info.shell_id),
        ("ResourceUri", info.resource_uri),
        ("Owner", info.owner),
        ("ClientIP", info.client_ip),
        ("ProcessId", str(info.process_id)),
        ("IdleTimeOut", timeout_text(info.idle_timeout)),
        ("InputStreams", info.input_streams),
        ("OutputStreams", info.output_streams),
        ("MaxIdleTimeOut", timeout_text(MAX_IDLE_TIMEOUT)),
        ("Locale", info.locale),
        ("DataLocale", info.data_locale),
        # The lab never compresses: a client asking for xpress compression gets none.
        ("CompressionMode", "NoCompression"),
        ("ProfileLoaded", "Yes" if info.profile_loaded else "No"),
        ("Encoding", "UTF8"),
        ("BufferMode", "Block"),
        ("State", "Connected"),
        ("ShellRunTime", duration(info.run_time)),
        ("ShellInactivity", duration(info.inactivity)),
    ]
    if get:
        fields += [("MemoryUsed", "58MB"), ("ChildProcesses", "0")]
    for name, value in fields:
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
    """A ReceiveResponse: the streams, and a CommandState only once the command is Done.

    A Windows PowerShell endpoint reports no state while a pipeline still runs: an answer that
    carries part of the output has no ``rsp:CommandState`` at all.
    """
    import base64

    el = ET.Element(q("rsp", "ReceiveResponse"))
    for chunk in chunks:
        attrs = {"Name": "stdout"}
        if command_id:
            attrs["CommandId"] = command_id
        ET.SubElement(el, q("rsp", "Stream"), attrs).text = base64.b64encode(chunk).decode("ascii")
    if command_id and done:
        st = ET.SubElement(el, q("rsp", "CommandState"), CommandId=command_id, State=CommandState.DONE)
        ET.SubElement(st, q("rsp", "ExitCode")).text = "0"
    return el


def config_element(max_envelope_kb: int, max_timeout_ms: int) -> ET.Element:
    """The service configuration a client reads (pypsrp takes MaxEnvelopeSizekb from it)."""
    cfg = ET.Element(q("cfg", "Config"))
    for name, value in (
        ("MaxEnvelopeSizekb", str(max_envelope_kb)),
        ("MaxTimeoutms", str(max_timeout_ms)),
        ("MaxBatchItems", "32000"),
        ("MaxProviderRequests", "4294967295"),
    ):
        ET.SubElement(cfg, q("cfg", name)).text = value
    service = ET.SubElement(cfg, q("cfg", "Service"))
    ET.SubElement(service, q("cfg", "MaxConcurrentOperationsPerUser")).text = "1500"
    ET.SubElement(service, q("cfg", "EnumerationTimeoutms")).text = "240000"
    ET.SubElement(service, q("cfg", "MaxConnections")).text = "300"
    ET.SubElement(service, q("cfg", "MaxPacketRetrievalTimeSeconds")).text = "120"
    ET.SubElement(service, q("cfg", "AllowUnencrypted")).text = "false"
    return cfg


# --- faults ---------------------------------------------------------------------------------------

INVALID_SELECTORS = ("The WS-Management service cannot process the request because the request contained "
                     "invalid selectors for the resource. ")
UNEXPECTED_SELECTORS = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"


@dataclass(frozen=True)
class Fault:
    """A WS-Management fault: HTTP 500 with a SOAP Fault and the WSManFault ``code``.

    ``reason`` is the SOAP Reason text, ``message`` the WSManFault Message (the same text when
    not given), ``detail`` a ``w:FaultDetail`` URI, ``provider`` wraps the message in the
    ProviderFault of the shell provider (as a Get of a shell that is gone answers).
    """

    code: int
    subcode: str
    reason: str
    value: str = "s:Receiver"
    message: str | None = None
    detail: str | None = None
    provider: bool = False


def fault_envelope(fault: Fault, relates_to: str, machine: str) -> bytes:
    env = ET.Element(q("s", "Envelope"), {q("xml", "lang"): "en-US"})
    header = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(header, q("wsa", "Action")).text = Action.FAULT
    ET.SubElement(header, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, q("wsmv", "ActivityId")).text = str(uuid.uuid4()).upper()
    ET.SubElement(header, q("wsa", "To")).text = ANONYMOUS
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
    if fault.detail:
        ET.SubElement(detail, q("wsman", "FaultDetail")).text = fault.detail
    attrs = {"Code": str(fault.code), "Machine": machine}
    wf = ET.SubElement(detail, q("wsmanfault", "WSManFault"), attrs)
    message = ET.SubElement(wf, q("wsmanfault", "Message"))
    text = fault.message if fault.message is not None else fault.reason
    if fault.provider:
        pf = ET.SubElement(message, q("wsmanfault", "ProviderFault"),
                           {"provider": "Shell provider", "path": "%systemroot%\\system32\\WsmSvc.dll"})
        inner = ET.SubElement(pf, q("wsmanfault", "WSManFault"), attrs)
        ET.SubElement(inner, q("wsmanfault", "Message")).text = text
    else:
        message.text = text
    return serialize(env, _ROOT_PREFIXES[Action.FAULT])


def timed_out() -> Fault:
    text = ("The WS-Management service cannot complete the operation within the time specified in "
            "OperationTimeout.  ")
    return Fault(2150858793, "w:TimedOut", text)


def shell_not_found(shell_id: str, *, get: bool = False) -> Fault:
    if get:
        # A Get (pypsrp's is_alive) of a shell that is gone: the shell provider's own fault.
        return Fault(2150858843, "w:InvalidSelectors", INVALID_SELECTORS, value="s:Sender",
                     detail=UNEXPECTED_SELECTORS, provider=True)
    return Fault(
        2150858843, "w:InvalidSelectors", INVALID_SELECTORS, value="s:Sender", detail=UNEXPECTED_SELECTORS,
        message=f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell "
        "was not found on the server. Possible causes are: the specified ShellId is incorrect or the shell "
        "no longer exists on the server. Provide the correct ShellId or create a new shell and retry the "
        "operation. ")


def command_not_found(command_id: str) -> Fault:
    return Fault(
        2150858843, "w:InvalidSelectors", INVALID_SELECTORS, value="s:Sender", detail=UNEXPECTED_SELECTORS,
        message="The Windows Remote Shell received a request to perform an operation on a command identifier "
        "that does not exist. Either the command has completed execution or the client specified an "
        "invalid command identifier. ")


def unsupported(action: str) -> Fault:
    return Fault(
        2150858771, "w:ActionNotSupported",
        f"The WS-Management service cannot process the request. The action {action} is not supported by "
        "this resource.", value="s:Sender")


def invalid_header(message: str) -> Fault:
    return Fault(2150858767, "a:InvalidMessageInformationHeader",
                 "The WS-Management service cannot process the request. The request contains one or more "
                 "invalid SOAP headers. ", value="s:Sender", message=message)


def invalid_timeout(text: str) -> Fault:
    return invalid_header("The WS-Management service cannot process the request. The XML contains an "
                          f"invalid timeout field in the SOAP header: {text}. ")


def invalid(reason: str) -> Fault:
    return Fault(2150858817, "w:InvalidMessageInformationHeader", reason, value="s:Sender")
