"""The lab WinRM pieces that need no socket: envelopes, sign-in names, sealing, what is never shown."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import spnego
from pypsrp.encryption import WinRMEncryption

from psbridge.lab.winrm import EndpointSpec, wsman
from psbridge.lab.winrm.auth import AuthFailed, Directory, NegotiateAcceptor, decode_basic

ACCOUNTS = {"LAB\\crmadmin": "Sec:ret ü1", "LAB\\operator": "0perator!"}


def test_durations() -> None:
    assert wsman.parse_duration("PT20S") == 20
    assert wsman.parse_duration("PT1M30.5S") == 90.5
    assert wsman.parse_duration("PT2H") == 7200
    assert wsman.parse_duration("P0DT0H1M5S") == 65 and wsman.parse_duration("P1D") == 86400
    for bad in ("PT-1S", "P", "PT", "20", None):
        assert wsman.parse_duration(bad) is None
    assert wsman.duration(3725) == "P0DT1H2M5S" and wsman.timeout_text(7200) == "PT7200.000S"


def test_request_parts_and_faults() -> None:
    body = (
        b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        b'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        b'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header>'
        b"<a:Action>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive</a:Action>"
        b"<a:MessageID>uuid:1</a:MessageID><w:MaxEnvelopeSize>512000</w:MaxEnvelopeSize>"
        b"<w:OperationTimeout>PT5S</w:OperationTimeout><w:ResourceURI>http://x</w:ResourceURI>"
        b'<w:SelectorSet><w:Selector Name="ShellId">ABC</w:Selector></w:SelectorSet>'
        b"</s:Header><s:Body/></s:Envelope>"
    )
    req = wsman.parse_request(body)
    assert (req.action, req.message_id, req.shell_id) == (wsman.Action.RECEIVE, "uuid:1", "ABC")
    assert (req.operation_timeout, req.max_envelope_size) == (5, 512000)
    with pytest.raises(wsman.BadRequest):
        wsman.parse_request(b"<not-soap/>")
    with pytest.raises(wsman.BadRequest):
        wsman.parse_request(b"<<<")
    fault = wsman.fault_envelope(wsman.timed_out(), "uuid:1", "CRM01")
    from pypsrp.wsman import WSMan

    parsed = WSMan._parse_wsman_fault(fault.decode())
    assert parsed.code == 2150858793 and parsed.machine == "CRM01"


def test_sign_in_names() -> None:
    d = Directory(ACCOUNTS)
    try:
        forms = ("crmadmin", "LAB\\crmadmin", "lab\\CRMADMIN", "crmadmin@lab.local", "CrmAdmin@LAB.LOCAL")
        for name in forms:
            found = d.find(name)
            assert found is not None and found.canonical == "LAB\\crmadmin"
        assert d.find("OTHER\\crmadmin") is None and d.find("nobody") is None
        assert d.check_basic("crmadmin", "Sec:ret ü1").canonical == "LAB\\crmadmin"
        with pytest.raises(AuthFailed):
            d.check_basic("crmadmin", "sec:ret ü1")
        # The acceptor's file holds hashes, never the passwords.
        text = d.ntlm_file.read_text(encoding="utf-8")
        assert "Sec:ret" not in text and "0perator" not in text
    finally:
        d.close()
    assert not d.ntlm_file.exists()


def test_basic_credentials_decode_utf8_and_latin1() -> None:
    assert decode_basic(base64.b64encode("u:pä:ss".encode()).decode()) == ("u", "pä:ss")
    assert decode_basic(base64.b64encode("u:pä".encode("latin-1")).decode()) == ("u", "pä")
    with pytest.raises(AuthFailed):
        decode_basic("!!!")


def test_seal_and_unseal_against_pypsrps_framing() -> None:
    d = Directory(ACCOUNTS)
    try:
        server = NegotiateAcceptor(d, None)
        client = spnego.client("LAB\\crmadmin", "Sec:ret ü1", hostname="localhost", service="HTTP",
                               protocol="negotiate", options=spnego.NegotiateOptions.wrapping_winrm)
        token = client.step()
        while not (client.complete and server.complete):
            answer = server.step(token or b"")
            token = client.step(answer) if answer else None
        assert server.account is not None and server.account.canonical == "LAB\\crmadmin"
        framing = WinRMEncryption(client, WinRMEncryption.SPNEGO)
        message = "<s:Envelope>Zürich ü 中文</s:Envelope>".encode() * 50
        ctype, body = framing.wrap_message(message)
        header = f'{ctype};protocol="{WinRMEncryption.SPNEGO}";boundary="Encrypted Boundary"'
        assert server.unseal(body, header) == message
        ctype, sealed = server.seal(message[::-1])
        assert framing.unwrap_message(sealed, "Encrypted Boundary") == message[::-1]
    finally:
        d.close()


def test_nothing_shows_a_password(tmp_path: Path) -> None:
    spec = EndpointSpec("CRM01", "http", ACCOUNTS, tmp_path)
    d = Directory(ACCOUNTS)
    try:
        shown = repr(spec) + str(spec) + repr(d.accounts)
    finally:
        d.close()
    assert "LAB\\\\crmadmin" in shown or "LAB\\crmadmin" in shown
    assert "Sec:ret" not in shown and "0perator" not in shown


def test_signing_in_never_removes_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspnego's acceptor finds the lab's NT hashes through NTLM_USER_FILE; a client thread of the
    same process iterating os.environ (requests' proxy lookup, every request) fails with a
    KeyError if the variable goes away under it, so it only ever changes value."""
    import os
    import threading

    monkeypatch.delenv("NTLM_USER_FILE", raising=False)
    d = Directory(ACCOUNTS)
    try:
        keys = set(os.environ)
        assert os.environ["NTLM_USER_FILE"] == ""  # pyspnego reads an empty value as none
        with d.ntlm_store():
            assert os.environ["NTLM_USER_FILE"] == str(d.ntlm_file)
            assert set(os.environ) == keys
        assert os.environ["NTLM_USER_FILE"] == ""
        assert set(os.environ) == keys

        failures: list[BaseException] = []
        done = threading.Event()

        def iterate() -> None:
            while not done.is_set():
                try:
                    dict(os.environ.items())
                except BaseException as e:  # what requests' proxy lookup would have raised
                    failures.append(e)
                    return

        readers = [threading.Thread(target=iterate) for _ in range(2)]
        for t in readers:
            t.start()
        for _ in range(20000):
            with d.ntlm_store():
                pass
        done.set()
        for t in readers:
            t.join()
        assert failures == []
    finally:
        d.close()
