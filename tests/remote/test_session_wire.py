"""Session over the wire against the lab: one pool, commands as data, every stream, failures."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from psbridge.remote import (
    AuthenticationFailed,
    Cmd,
    CommandFailed,
    ConnectError,
    ConnectionLost,
    ConnectionProfile,
    PSRecord,
    Result,
    SecureString,
    Session,
    TransferError,
)
from psbridge.secrets import Secret

TOOLS = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
HOSTILE = "O'Brien \"quoted\"; $(Remove-Item C:\\ -Recurse) `n `$x\r\nzweite Zeile ü 中文 😀"


def test_one_pool_serves_every_command(session: Session) -> None:
    before = session.pools_opened
    for _ in range(5):
        assert session.invoke("Test-Path", Path=TOOLS).output == [True]
    assert session.pools_opened == before == 1
    assert any(e.event == "open" for e in session.journal)


def test_hostile_values_arrive_verbatim(session: Session) -> None:
    session.invoke(Cmd("Set-Variable", Name="psbridgeHostile", Value=HOSTILE))
    back = session.invoke("Get-Variable", Name="psbridgeHostile", ValueOnly=True)
    assert back.output == [HOSTILE]


def test_statements_and_pipelines(session: Session) -> None:
    res = session.invoke(
        [
            Cmd("Set-Variable", Name="psbridgeA", Value="first"),
            Cmd("Get-Variable", Name="psbridgeA", ValueOnly=True),
            Cmd("Add-PSSnapin", Name="Microsoft.Crm.PowerShell", ErrorAction="SilentlyContinue"),
            Cmd("Get-CrmOrganization")
            | Cmd("Select-Object", First=1)
            | Cmd("Select-Object", ExpandProperty="UniqueName"),
        ]
    )
    assert res.output == ["first", "contoso"]


def test_objects_become_records_and_frames(session: Session) -> None:
    session.invoke("Add-PSSnapin", Name="Microsoft.Crm.PowerShell", ErrorAction="SilentlyContinue")
    res = session.invoke("Get-CrmOrganization")
    assert res.output and all(isinstance(o, PSRecord) for o in res.output)
    frame = res.to_frame()
    assert {"UniqueName", "Id"} <= set(frame.columns)
    assert "<table" in res._repr_html_() and "Get-CrmOrganization" in str(res)


def test_unknown_command_is_a_typed_failure_with_its_record(session: Session) -> None:
    with pytest.raises(CommandFailed) as e:
        session.invoke("Get-NoSuchThing", Name="x")
    err = e.value.error
    assert err is not None
    assert err.category == "ObjectNotFound"
    assert "CommandNotFoundException" in err.fqid
    assert "Get-NoSuchThing" in err.message
    assert e.value.result.had_errors and e.value.result.state == "Failed"
    assert err.terminating and err.target == "Get-NoSuchThing"
    res = session.invoke("Get-NoSuchThing", check=False)
    assert res.state == "Failed" and not res.ok
    # The pool survives a failed pipeline.
    assert session.invoke("Test-Path", Path=TOOLS).output == [True]


def test_error_record_carries_its_position(session: Session) -> None:
    session.invoke("Add-PSSnapin", Name="Microsoft.Crm.PowerShell", ErrorAction="SilentlyContinue")
    res = session.invoke("Get-CrmOrganization", Name="nosuchorg", check=False)
    err = res.errors[-1]
    assert err.command == "Get-CrmOrganization" and err.target_name == "nosuchorg"
    assert err.position.startswith("At line:1 char:1") and err.exception_type
    assert "At line:1 char:1" in str(res)


def test_non_terminating_error_keeps_output(session: Session) -> None:
    res = session.invoke("Get-Item", Path="C:\\does-not-exist\\x.txt", check=False)
    assert res.errors and res.errors[0].category == "ObjectNotFound"
    assert res.errors[0].fqid.startswith("PathNotFound")
    assert res.state == "Completed" and res.had_errors


def test_securestring_parameter_after_key_exchange(session: Session, tmp_path: Any) -> None:
    from crmkit import make_pfx

    pw = "pfx " + HOSTILE[:20]
    pfx = make_pfx(tmp_path / "s2s.pfx", pw).read_bytes()
    with session.uploaded(pfx, "C:\\Windows\\Temp\\psbridge-tests\\ss.pfx") as receipt:
        for _ in range(2):
            res = session.invoke(
                "Get-PfxData", FilePath=str(receipt.path), Password=SecureString(Secret(pw))
            )
            assert res.output and res.output[0].get_ci("EndEntityCertificates")
    # The session key is exchanged once per pool, not per SecureString.
    assert [e.event for e in session.journal].count("keys") == 1
    assert pw not in str(res) and pw not in session.journal_frame().to_string()


def test_upload_in_chunks_is_verified_and_removed(session: Session) -> None:
    data = bytes(range(256)) * 200  # 51200 bytes
    target = "C:\\Windows\\Temp\\psbridge-tests\\$(x);`'ü\\payload.bin"
    with session.uploaded(data, target, chunk_size=12_000) as receipt:
        assert receipt.chunks == 5 and receipt.size == len(data)
        assert receipt.sha256 == hashlib.sha256(data).hexdigest().upper()
        assert session.invoke("Test-Path", Path=target).output == [True]
    assert session.invoke("Test-Path", Path=target).output == [False]
    events = [e.event for e in session.journal]
    assert "upload" in events and "remove" in events


def test_empty_file_upload(session: Session) -> None:
    with session.uploaded(b"", "C:\\Windows\\Temp\\psbridge-tests\\empty.bin") as receipt:
        assert receipt.size == 0 and receipt.sha256 == hashlib.sha256(b"").hexdigest().upper()


def test_upload_of_a_relative_path_is_refused(session: Session) -> None:
    from psbridge.remote import ValidationError

    with pytest.raises(ValidationError):
        session.upload(b"x", "relative\\file.bin")


def test_wrong_password_is_authentication_failed(lab: Any, profile: ConnectionProfile, tmp_path: Any) -> None:
    (tmp_path / "pw").write_text("not-the-password")
    bad = profile.model_copy(update={"password": f"file:{tmp_path / 'pw'}"})
    with pytest.raises(AuthenticationFailed) as e:
        Session(bad).open()
    assert "not-the-password" not in str(e.value)


def test_unreachable_server(profile: ConnectionProfile) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = profile.model_copy(update={"port": port, "connection_timeout": 5.0})
    with pytest.raises(ConnectError, match="cannot reach"):
        Session(closed).open()


def test_https_with_the_lab_ca(lab: Any) -> None:
    p = ConnectionProfile.from_lab(lab.config, server="CRM01", scheme="https")
    assert p.ca_bundle is not None
    with Session(p) as s:
        assert s.invoke("Test-Path", Path=TOOLS).output == [True]


def test_https_without_the_ca_is_refused_clearly(lab: Any) -> None:
    p = ConnectionProfile.from_lab(lab.config, server="CRM01", scheme="https", ca_bundle=None)
    with pytest.raises(ConnectError, match="not trusted"):
        Session(p).open()


def test_https_with_validation_off_is_recorded(lab: Any) -> None:
    p = ConnectionProfile.from_lab(lab.config, server="CRM01", scheme="https", ca_bundle=None,
                                   cert_validation=False)
    with Session(p) as s:
        s.invoke("Test-Path", Path=TOOLS)
    assert any(e.event == "security" and "OFF" in e.detail for e in s.journal)


def test_read_only_command_is_retried_once_after_a_drop(lab: Any, profile: ConnectionProfile) -> None:
    with Session(profile) as s:
        lab.set_faults("CRM01", drop_after=1)
        try:
            res = s.invoke("Test-Path", Path=TOOLS)
        finally:
            lab.clear_faults()
        assert res.output == [True]
        assert s.pools_opened == 2
        assert any(e.event == "retry" for e in s.journal)


def test_state_changing_command_is_never_resent(lab: Any, profile: ConnectionProfile) -> None:
    with Session(profile) as s:
        lab.set_faults("CRM01", drop_after=1)
        try:
            with pytest.raises(ConnectionLost) as e:
                s.invoke("Set-Variable", Name="psbridgeX", Value="1")
        finally:
            lab.clear_faults()
        assert e.value.may_have_run
        assert "may or may not have completed" in str(e.value)
        assert s.pools_opened == 1
        # The next command opens a new pool.
        assert s.invoke("Test-Path", Path=TOOLS).output == [True]
        assert s.pools_opened == 2


def test_injected_command_failure_carries_the_servers_words(lab: Any, profile: ConnectionProfile) -> None:
    lab.set_faults("CRM01", fail_commands={"Get-ChildItem": "The RPC server is unavailable."})
    try:
        with Session(profile) as s, pytest.raises(CommandFailed, match="RPC server is unavailable"):
            s.invoke("Get-ChildItem", Path="Cert:\\LocalMachine\\My")
    finally:
        lab.clear_faults()


def test_result_is_plain_data(session: Session) -> None:
    res = session.invoke("Test-Path", Path=TOOLS)
    assert isinstance(res, Result)
    assert res.duration.total_seconds() > 0 and res.started is not None
    assert res.ok and res.scalar() is True
    assert res.exit_code is None


def test_timeout_stops_the_remote_pipeline(lab: Any, profile: ConnectionProfile) -> None:
    from psbridge.remote import CommandTimeout

    with Session(profile) as s:
        # Every answer now takes longer than the call may: the bridge must stop the pipeline.
        lab.set_faults("CRM01", delay=1.5)
        try:
            with pytest.raises(CommandTimeout, match="stopped") as e:
                s.invoke("Test-Path", Path=TOOLS, timeout=0.5)
        finally:
            lab.clear_faults()
        assert e.value.result.state == "Stopped"
        assert any(j.event == "stop" for j in s.journal)
        assert s.invoke("Test-Path", Path=TOOLS).output == [True]


def test_ctrl_c_stops_the_remote_pipeline(profile: ConnectionProfile) -> None:
    def interrupt(_s: Session, _text: str) -> None:
        raise KeyboardInterrupt

    with Session(profile) as s:
        s.on_running = interrupt
        with pytest.raises(KeyboardInterrupt):
            s.invoke("Test-Path", Path=TOOLS)
        s.on_running = None
        assert any(j.event == "stop" and "Ctrl-C" in j.detail for j in s.journal)
        assert s.invoke("Test-Path", Path=TOOLS).output == [True]


def test_upload_chunks_fill_the_pools_envelope(session: Session, tmp_path: Any) -> None:
    import math
    import os

    from psbridge.remote.transfer import chunk_size_for

    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(700_000))
    chunk = chunk_size_for(session.max_payload_size)
    receipt = session.upload(local, "C:\\Windows\\Temp\\psbridge-tests\\big.bin")
    try:
        assert receipt.chunks == math.ceil(700_000 / chunk) > 1
        assert receipt.sha256 == hashlib.sha256(local.read_bytes()).hexdigest().upper()
    finally:
        from psbridge.remote import remove

        remove(session, receipt.path)


@pytest.mark.parametrize("failing", ["Add-Content", "Get-FileHash"])
def test_a_failed_upload_leaves_nothing_behind(lab: Any, profile: ConnectionProfile, failing: str) -> None:
    target = "C:\\Windows\\Temp\\psbridge-tests\\partial.pfx"
    lab.set_faults("CRM01", fail_commands={failing: "The disk is full."})
    with Session(profile) as s:
        with pytest.raises(TransferError):
            s.upload(b"x" * 30_000, target, chunk_size=10_000)
        assert s.invoke("Test-Path", LiteralPath=target).output == [False]
        assert any(e.event == "remove" for e in s.journal)


def test_uploaded_file_is_removed_even_when_the_work_fails(session: Session) -> None:
    target = "C:\\Windows\\Temp\\psbridge-tests\\secret.pfx"
    with pytest.raises(RuntimeError), session.uploaded(b"private key", target):
        assert session.invoke("Test-Path", LiteralPath=target).output == [True]
        raise RuntimeError("the script failed")
    assert session.invoke("Test-Path", LiteralPath=target).output == [False]


def test_denied_sign_in_is_authentication_failed(lab: Any, profile: ConnectionProfile) -> None:
    lab.set_faults("CRM01", deny_auth=True)
    with pytest.raises(AuthenticationFailed, match="refused the credentials of LAB\\\\crmadmin"):
        Session(profile).open()
