"""The deployment operations against the lab: reads, validation before any change, script failures."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crmkit import HOSTILE, lab_dict

from psbridge import crm
from psbridge.crm.scripts import RECONFIGURATION_PARAMETERS, SERVER_SIDE_SYNC_PARAMETERS
from psbridge.remote import (
    ScriptFailed,
    ScriptNotFound,
    Session,
    UnsupportedScript,
    ValidationError,
)
from psbridge.secrets import Secret

Opener = Callable[..., list[Session]]
PfxMaker = Callable[..., tuple[Path, str]]


def uploads(s: Session) -> list[str]:
    return [e.detail for e in s.journal if e.event == "upload"]


def test_prerequisites_pass_for_the_deployment_administrator(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    report = crm.check_prerequisites(s)
    assert report.passed, str(report)
    names = [c.name for c in report.checks]
    assert "CRM PowerShell snap-in" in names and "CRM deployment administrator" in names
    assert sum(1 for c in report.checks if c.name.endswith("present") and c.ok) == 2
    assert [c.ok for c in report.checks if c.name == "local administrator"] == [True]
    assert "Prerequisites on CRM01" in str(report) and "<table>" in report._repr_html_()
    assert list(report.to_frame().columns) == ["check", "ok", "detail"]


def test_prerequisites_fail_for_an_operator(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01", account="operator")
    report = crm.check_prerequisites(s)
    assert not report.passed
    failed = {c.name for c in report.failures}
    assert "CRM deployment administrator" in failed
    (local,) = [c for c in report.checks if c.name == "local administrator"]
    assert local.ok is None and "Domain Admins" in local.detail  # could be, through a group
    with pytest.raises(crm.PrerequisiteFailed, match="not ready"):
        report.raise_for_failures()


def test_prerequisites_notice_missing_scripts(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    report = crm.check_prerequisites(s, tools_folder="C:\\Program Files\\Elsewhere\\Tools")
    missing = [c for c in report.failures if c.name.endswith("present")]
    assert len(missing) == 2 and "not found at C:\\Program Files\\Elsewhere" in missing[0].detail


def test_organizations(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    expected = {o["name"]: o["id"] for o in lab_dict(lab)["organizations"]}
    orgs = crm.list_organizations(s)
    assert {o.unique_name: str(o.id) for o in orgs} == expected
    name = next(iter(expected))
    org = crm.get_organization(s, name.upper() if False else name)
    assert str(org.id) == expected[name] and org.state
    with pytest.raises(ValidationError, match="no organization 'nosuchorg' on CRM01") as e:
        crm.get_organization(s, "nosuchorg")
    assert name in str(e.value)
    with pytest.raises(ValidationError, match="unique name"):
        crm.get_organization(s, "Contoso Ltd")


def test_snapin_is_loaded_again_on_a_new_pool(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    crm.list_organizations(s)
    lab.set_faults("CRM01", drop_after=1)
    try:
        orgs = crm.list_organizations(s)  # read-only: re-sent once on a new pool with the snap-in
    finally:
        lab.clear_faults()
    assert orgs and s.pools_opened == 2


def test_installed_script_parameters(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    sync = crm.script_parameters(s, crm.script_path(crm.CONFIGURE_SERVER_SIDE_SYNC))
    for name in SERVER_SIDE_SYNC_PARAMETERS:
        assert name.lower() in sync
    assert sync["privatekeypassword"].type_name == "System.Security.SecureString"
    assert sync["clientsecret"].type_name == "System.String"
    recon = crm.script_parameters(s, crm.script_path(crm.CERTIFICATE_RECONFIGURATION))
    for name in RECONFIGURATION_PARAMETERS:
        assert name.lower() in recon
    assert recon["updatecrm"].switch and not recon["password"].switch


def test_missing_script_is_a_clear_failure(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    with pytest.raises(ScriptNotFound, match=r"is not available on CRM01: .*not recognized"):
        crm.script_parameters(s, "C:\\Program Files\\Elsewhere\\ConfigureCrmServerSideSync.ps1")


def test_tenant_id_is_set_read_back_and_left_alone_when_equal(fresh_lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(fresh_lab, "CRM01")
    org = crm.list_organizations(s)[0]
    assert crm.get_advanced_setting(s, "Organization", crm.S2S_TENANT_ID, org.id) in (None, "")
    tid = str(uuid.uuid4())
    assert crm.set_tenant_id(s, org.unique_name, tid) is True
    assert crm.get_advanced_setting(s, "Organization", crm.S2S_TENANT_ID, org.id) == tid
    assert crm.set_tenant_id(s, org.unique_name, tid.upper()) is False  # second run changes nothing
    assert any(e.event == "unchanged" for e in s.journal)
    with pytest.raises(ValidationError, match="tenant_id"):
        crm.set_tenant_id(s, org.unique_name, "not-a-guid")


def test_validation_stops_before_anything_is_sent(lab: Any, open_sessions: Opener, pfx: PfxMaker) -> None:
    (s,) = open_sessions(lab, "CRM01")
    account = lab_dict(lab).get("service_account", "LAB\\crmasync")
    good, ref = pfx()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"password": Secret("wrong")}, "does not open with the given password"),
        ({"service_account": "crmasync"}, "names no domain"),
        ({"certificate_type": "TrustedIssuer"}, "not a certificate type"),
        ({"pfx": good.with_suffix(".cer")}, "does not end in .pfx"),
        ({"upload_folder": "Temp\\psbridge"}, "not an absolute Windows path"),
        ({"password": "the-password-itself"}, "give a secret reference"),
    ]
    for change, words in cases:
        kw: dict[str, Any] = {"pfx": good, "password": ref, "service_account": account, **change}
        with pytest.raises(ValidationError, match=words):
            crm.certificate_reconfiguration(s, **kw)
    expired, eref = pfx(days=-1, start_days_ago=10)
    with pytest.raises(ValidationError, match="expired on"):
        crm.certificate_reconfiguration(s, expired, eref, account)
    sync_cases: list[tuple[dict[str, Any], str]] = [
        ({"organization": "nosuchorg"}, "no organization 'nosuchorg'"),
        ({"client_id": "not-a-guid"}, "client_id: 'not-a-guid' is not a GUID"),
        ({"tenant": "contoso"}, "neither a tenant GUID nor a domain"),
        ({"client_secret": "plain-secret"}, "client_secret: give a secret reference"),
        ({"pfx_password": Secret("wrong")}, "does not open"),
    ]
    org = lab_dict(lab)["organizations"][0]["name"]
    for change, words in sync_cases:
        kw = {"pfx": good, "pfx_password": ref, "organization": org, "tenant": str(uuid.uuid4()),
              "client_id": str(uuid.uuid4()), "client_secret": ref, **change}
        with pytest.raises(ValidationError, match=words):
            crm.configure_server_side_sync(s, **kw)
    assert uploads(s) == []
    assert crm.crm_certificates(s) == [] or all(c.thumbprint for c in crm.crm_certificates(s))


def test_legacy_script_is_detected_before_any_change(lab_factory: Any, open_sessions: Opener,
                                                     pfx: PfxMaker) -> None:
    legacy_lab = lab_factory(servers=1, orgs=1, legacy_servers=1, cloud=False)
    (s,) = open_sessions(legacy_lab, "CRM01")
    path, ref = pfx()
    org = lab_dict(legacy_lab)["organizations"][0]["name"]
    with pytest.raises(UnsupportedScript, match="-ClientID, -ClientSecret") as e:
        crm.configure_server_side_sync(s, path, ref, org, "contoso.onmicrosoft.com", str(uuid.uuid4()), ref)
    assert "older CRM build" in str(e.value) and e.value.server == "CRM01"
    assert uploads(s) == []


def test_script_failure_modes_carry_the_scripts_words(lab: Any, open_sessions: Opener, pfx: PfxMaker) -> None:
    """Called directly (past the bridge's own checks) the scripts fail their own way: exit 1."""
    (s,) = open_sessions(lab, "CRM01")
    path, _ = pfx()
    account = lab_dict(lab).get("service_account", "LAB\\crmasync")
    script = crm.script_path(crm.CERTIFICATE_RECONFIGURATION)
    with s.uploaded(path, "C:\\Windows\\Temp\\psbridge-tests\\fail.pfx") as receipt, \
            pytest.raises(ScriptFailed) as e:
        s.run_script(script, certificateFile=str(receipt.path), password=Secret("wrong " + HOSTILE),
                     certificateType="S2STokenIssuer", serviceAccount=account)
    failure = e.value
    assert failure.exit_code == 1
    assert "Process Failed." in failure.messages
    assert failure.reason and "Process Failed." not in failure.reason
    # Write-Host text arrives on the information stream with its colour, and shows in the HTML.
    last = failure.result.information[-1]
    assert (last.text, last.foreground, last.is_host) == ("Process Failed.", "Red", True)
    assert "Process Failed." in failure.result.host_text
    assert "color:#d00000" in failure.result._repr_html_()
    assert HOSTILE not in str(failure)

    # Not a .pfx: the script refuses the path itself.
    with pytest.raises(ScriptFailed):
        s.run_script(script, certificateFile="C:\\Windows\\Temp\\psbridge-tests\\x.cer", password="x",
                     certificateType="S2STokenIssuer", serviceAccount=account)
    assert s.invoke("Get-Variable", Name="LASTEXITCODE", ValueOnly=True).output == [1]


def test_snapin_loaded_by_a_script_is_not_an_error(lab: Any, open_sessions: Opener) -> None:
    (s,) = open_sessions(lab, "CRM01")
    s.invoke("Add-PSSnapin", Name="Microsoft.Crm.PowerShell")  # as the official scripts do
    assert crm.list_organizations(s)


def test_hostile_values_reach_the_server_verbatim(fresh_lab: Any, open_sessions: Opener) -> None:
    """Quotes, ;, $(), backticks, newlines and non-ASCII arrive as data, never as code."""
    (s,) = open_sessions(fresh_lab, "CRM01")
    hostile = HOSTILE + "\r\nline two; $(Get-Date) `$env:PATH \"q\" 'q' ü中😀"
    org = crm.list_organizations(s)[0]
    crm.set_advanced_setting(s, "Organization", crm.S2S_TENANT_ID, hostile, org.id)
    assert crm.get_advanced_setting(s, "Organization", crm.S2S_TENANT_ID, org.id) == hostile
    # A script path under a hostile folder: the server names exactly that path.
    folder = "C:\\Program Files\\$(Get-Date); `n 'x' ü中"
    with pytest.raises(ScriptNotFound) as e:
        crm.script_parameters(s, crm.script_path(crm.CONFIGURE_SERVER_SIDE_SYNC, folder))
    assert f"{folder}\\ConfigureCrmServerSideSync.ps1" in str(e.value)
    # An organization name the bridge would refuse, sent raw: the server's message repeats it.
    res = s.invoke("Get-CrmOrganization", Name=hostile, check=False)
    assert res.errors and hostile in res.errors[-1].message
