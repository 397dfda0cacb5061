"""The two official scripts on a lab server, called through run_pipeline with a recording context.

ConfigureCrmServerSideSync talks HTTPS to a real Entra/Graph twin on loopback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands_kit import (
    RECONFIGURE,
    SYNC,
    Recorder,
    cmd,
    crm_key_credentials,
    make_pfx,
    prop,
    register_app,
    run,
    secure,
)

from psbridge.lab.ca import LabCA
from psbridge.lab.entra import EntraTwin, start_twin
from psbridge.lab.runspace import CloudEndpoints
from psbridge.lab.world import World

PFX = "C:\\Temp\\psbridge\\s2s.pfx"


@pytest.fixture(scope="module")
def pfx() -> bytes:
    return make_pfx("pfx-pass", "CN=psbridge S2S contoso")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def module_twin(tmp_path_factory: pytest.TempPathFactory, ca: LabCA) -> Iterator[EntraTwin]:
    t = start_twin(tmp_path_factory.mktemp("entra"), ca)
    yield t
    t.stop()


@pytest.fixture
def twin(module_twin: EntraTwin) -> EntraTwin:
    """The module's twin with the Dynamics CRM service principal as a fresh tenant has it."""
    with module_twin.directory.change() as data:
        crm_app = "00000007-0000-0000-c000-000000000000"
        crm = next(s for s in data["servicePrincipals"] if s["appId"] == crm_app)
        crm["keyCredentials"] = []
    module_twin.reset_knobs()
    return module_twin


@pytest.fixture
def ctx(tmp_path: Path) -> Recorder:
    World.seed(tmp_path / "lab", servers=2, orgs=2, legacy_servers=1)
    c = Recorder(tmp_path / "lab")
    run(c, cmd("Set-Variable", Name="LASTEXITCODE", Value=0))
    return c


def upload(ctx: Recorder, data: bytes, path: str = PFX) -> None:
    """What the bridge does: folder, first chunk, further chunks, then the server's hash."""
    run(ctx, cmd("New-Item", ItemType="Directory", Path=path.rsplit("\\", 1)[0], Force=True))
    run(ctx, cmd("Set-Content", Path=path, Value=data[:700], Encoding="Byte"))
    run(ctx, cmd("Add-Content", Path=path, Value=data[700:], Encoding="Byte"))
    run(ctx, cmd("Get-FileHash", Path=path, Algorithm="SHA256"))
    assert prop(ctx.output[0], "Hash") == hashlib.sha256(data).hexdigest().upper()


def exit_code(ctx: Recorder) -> int:
    return int(run(ctx, cmd("Get-Variable", Name="LASTEXITCODE", ValueOnly=True)).output[0])


def reconfigure(ctx: Recorder, **overrides: object) -> list[str]:
    params = {
        "certificateFile": PFX,
        "password": "pfx-pass",
        "certificateType": "S2STokenIssuer",
        "serviceAccount": "LAB\\CRMAsyncService",
        "updateCrm": True,
        "storeFindType": "FindBySubjectDistinguishedName",
        **overrides,
    }
    return run(ctx, cmd(RECONFIGURE, **params)).messages


# --- file commands --------------------------------------------------------------------------------


def test_upload_then_remove(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    assert run(ctx, cmd("Test-Path", Path=PFX, PathType="Leaf")).output == [True]
    item = run(ctx, cmd("Get-Item", Path=PFX.upper())).output[0]
    assert prop(item, "Length") == len(pfx) and prop(item, "Extension") == ".pfx"
    assert prop(item, "FullName") == PFX  # the case it was created with
    run(ctx, cmd("Remove-Item", Path=PFX, Force=True))
    assert run(ctx, cmd("Test-Path", Path=PFX)).output == [False]
    run(ctx, cmd("Remove-Item", Path=PFX, Force=True))
    assert ctx.errors[0].message == f"Cannot find path '{PFX}' because it does not exist."
    assert ctx.errors[0].fqid == "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand"


def test_set_content_into_a_missing_folder_fails(ctx: Recorder) -> None:
    run(ctx, cmd("Set-Content", Path="C:\\Nowhere\\x.pfx", Value=b"abc", Encoding="Byte"))
    assert ctx.errors[0].message == "Could not find a part of the path 'C:\\Nowhere\\x.pfx'."


# --- CertificateReconfiguration.ps1 ---------------------------------------------------------------


def test_certificate_reconfiguration_installs_and_records(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    messages = reconfigure(ctx)
    assert messages[-1] == "Process succeeded."
    assert exit_code(ctx) == 0
    world = World.load(ctx.state_dir)
    [entry] = world.store("CRM01")
    assert entry["subject"] == "CN=psbridge S2S contoso" and entry["has_private_key"]
    assert entry["key_readers"] == ["LAB\\CRMAsyncService"]
    [crm_cert] = world.crm_certificates()
    assert crm_cert["certificate_type"] == "S2STokenIssuer" and crm_cert["thumbprint"] == entry["thumbprint"]
    certs = run(ctx, cmd("Get-ChildItem", Path="Cert:\\LocalMachine\\My")).output
    assert [prop(c, "Thumbprint") for c in certs] == [entry["thumbprint"]]
    assert prop(certs[0], "HasPrivateKey") is True and prop(certs[0], "Subject") == "CN=psbridge S2S contoso"
    run(ctx, cmd("Add-PSSnapin", Name="Microsoft.Crm.PowerShell", ErrorAction="SilentlyContinue"))
    [record] = run(ctx, cmd("Get-CrmCertificate")).output
    assert prop(record, "CertificateType") == "S2STokenIssuer" and prop(record, "Name") == entry["subject"]
    # Running it again changes nothing.
    assert reconfigure(ctx)[-1] == "Process succeeded."
    again = World.load(ctx.state_dir)
    assert again.store("CRM01") == world.store("CRM01")
    assert again.crm_certificates() == world.crm_certificates()


def test_wrong_password_fails_with_exit_code_1(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    messages = reconfigure(ctx, password="wrong")
    assert messages[-1] == "Process Failed."
    assert any("The specified network password is not correct." in m for m in messages)
    assert ("Process Failed.", "Red") in ctx.host
    assert exit_code(ctx) == 1
    assert World.load(ctx.state_dir).store("CRM01") == []


def test_duplicate_subject_means_private_key_not_found(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    assert reconfigure(ctx)[-1] == "Process succeeded."
    upload(ctx, make_pfx("pfx-pass", "CN=psbridge S2S contoso"))  # another key, the same subject
    messages = reconfigure(ctx)
    assert "Private key not found" in messages and messages[-1] == "Process Failed."
    assert exit_code(ctx) == 1


def test_expired_certificate_and_wrong_paths_fail(ctx: Recorder) -> None:
    old = make_pfx("pfx-pass", "CN=old", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=2)
    upload(ctx, old)
    assert any("expired" in m for m in reconfigure(ctx))
    assert exit_code(ctx) == 1
    assert any("does not exist" in m for m in reconfigure(ctx, certificateFile="C:\\Temp\\none.pfx"))
    upload(ctx, b"not a pfx", "C:\\Temp\\psbridge\\s2s.cer")
    assert any(".pfx" in m for m in reconfigure(ctx, certificateFile="C:\\Temp\\psbridge\\s2s.cer"))


def test_not_a_local_administrator(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.user = "LAB\\operator"
    messages = reconfigure(ctx)
    assert any("Access is denied." in m for m in messages) and messages[-1] == "Process Failed."


# --- ConfigureCrmServerSideSync.ps1 ----------------------------------------------------------------


def sync(
    ctx: Recorder,
    app: tuple[str, str],
    tenant: str,
    org: str = "contoso",
    pfx_path: str = PFX,
    password: str = "pfx-pass",
) -> list[str]:
    return run(
        ctx,
        cmd(
            SYNC,
            privateKeyPassword=secure(password),
            pfxFilePath=pfx_path,
            organizationName=org,
            microsoftEntraIdTenantIdOrDomainName=tenant,
            ClientID=app[0],
            ClientSecret=app[1],
        ),
    ).messages


def cloud(twin: EntraTwin) -> CloudEndpoints:
    return CloudEndpoints(twin.login_url, twin.graph_url, str(twin.ca_bundle))


def test_configure_server_side_sync_end_to_end(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    app = register_app(twin)
    messages = sync(ctx, app, twin.tenant_domain)
    assert messages[-1] == "Process succeeded.", messages
    assert messages[0] == "Added CRM powershell Pssnapin."
    assert "Done with setting up certificate information." in messages
    assert f"S2S Exchange Online Tenant ID is populated in configDB:  {twin.tenant_id}" in messages
    assert any(str(o).startswith("Adding new certificate principal credential") for o in ctx.output)
    assert exit_code(ctx) == 0
    [key] = crm_key_credentials(twin)
    assert key["type"] == "AsymmetricX509Cert" and key["usage"] == "Verify"
    assert key["displayName"] == "CN=psbridge S2S contoso"
    world = World.load(ctx.state_dir)
    assert world.org_setting("contoso", "S2STenantId") == twin.tenant_id
    assert (
        world.server_settings()["S2SDefaultAuthorizationServerPrincipalId"]
        == "00000001-0000-0000-c000-000000000000"
    )
    run(
        ctx,
        cmd(
            "Get-CrmAdvancedSetting",
            ConfigurationEntityName="Organization",
            Setting="S2STenantId",
            Id=world.organization("contoso")["id"],
        ),
    )  # type: ignore[index]
    assert ctx.output == [twin.tenant_id]


def test_configure_server_side_sync_sends_the_published_scripts_requests(
    ctx: Recorder, twin: EntraTwin, pfx: bytes
) -> None:
    # The request sequence of PowerApps-Samples' ConfigureCrmServerSideSync.ps1, as 5.1 sends it.
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    app = register_app(twin)
    crm_app = "00000007-0000-0000-c000-000000000000"
    sp = twin.directory.sp_by_app_id(crm_app)
    old = {"keyId": "6f1f9f6e-3d5a-4b1a-9d52-0c3f0f1b7a11", "type": "AsymmetricX509Cert", "usage": "Verify",
           "displayName": "CN=older s2s", "customKeyIdentifier": "AB12",
           "startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2099-01-01T00:00:00Z", "key": "MIIB"}
    with twin.directory.change() as data:
        crm = next(s for s in data["servicePrincipals"] if s["appId"] == crm_app)
        crm["keyCredentials"] = [dict(old)]
        crm["servicePrincipalNames"] = [n for n in crm["servicePrincipalNames"] if n != crm_app]
    twin.journal.take()
    assert sync(ctx, app, twin.tenant_domain)[-1] == "Process succeeded."
    seen = twin.journal.take()
    assert [(r.service, r.method, r.path) for r in seen] == [
        ("login", "POST", f"/{twin.tenant_domain}/oauth2/v2.0/token"),
        ("graph", "GET", "/v1.0/organization"),
        ("graph", "GET", "/v1.0/servicePrincipals"),
        ("graph", "PATCH", f"/v1.0/servicePrincipals/{sp['id']}"),
        ("graph", "PATCH", f"/v1.0/servicePrincipals/{sp['id']}"),
    ]
    token, organization, lookup, keys, names = seen
    assert token.content_type.startswith("application/x-www-form-urlencoded")
    assert sorted(token.form_fields) == ["Client_Id", "Client_Secret", "Grant_Type", "Scope"]
    assert all(r.user_agent.endswith("WindowsPowerShell/5.1.17763.6414") for r in seen)
    assert organization.query == {}
    assert lookup.query == {"$filter": f"appId eq '{crm_app}'",
                            "$select": "id,appId,servicePrincipalNames,keyCredentials"}
    assert all(r.status in (200, 204) for r in seen)
    assert lookup.response["@odata.context"].endswith(
        "/v1.0/$metadata#servicePrincipals(id,appId,servicePrincipalNames,keyCredentials)")
    # The existing credential goes back as Graph listed it, without key and displayName; the new
    # one with null dates.
    sent_old, sent_new = keys.body["keyCredentials"]
    assert sent_old == {k: v for k, v in old.items() if k not in ("key", "displayName")}
    assert sent_new["startDateTime"] is None and sent_new["endDateTime"] is None
    assert (sent_new["type"], sent_new["usage"], sent_new["displayName"]) == (
        "AsymmetricX509Cert", "Verify", "CN=psbridge S2S contoso")
    assert names.body == {"servicePrincipalNames": [*sp["servicePrincipalNames"], crm_app]} or (
        names.body["servicePrincipalNames"][-1] == crm_app)
    # Graph kept the existing credential whole (identified by keyId) and dated the new one.
    kept, added = crm_key_credentials(twin)
    assert kept == old
    assert added["startDateTime"] and added["endDateTime"] and added["key"]


def test_the_pfx_path_check_is_the_published_scripts(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    ctx.cloud = cloud(twin)
    app = register_app(twin)
    # "-ne" ignores case: an upper-case extension passes.
    upload(ctx, pfx, "C:\\Temp\\psbridge\\UPPER.PFX")
    upper = sync(ctx, app, twin.tenant_id, pfx_path="C:\\Temp\\psbridge\\UPPER.PFX")
    assert upper[-1] == "Process succeeded."
    # Test-Path -Path reads "[1]" as a wildcard: a PFX that is there counts as missing.
    run(ctx, cmd("Set-Content", LiteralPath="C:\\Temp\\psbridge\\s2s[1].pfx", Value=pfx, Encoding="Byte"))
    messages = sync(ctx, app, twin.tenant_id, pfx_path="C:\\Temp\\psbridge\\s2s[1].pfx")
    assert messages[-2:] == [
        "The specified value of the pfxFilePath parameter isn't valid. Please enter the correct path of the "
        "Personal Information Exchange file.",
        "Process Failed.",
    ]


def test_login_unreachable_fails_without_network(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = CloudEndpoints(None, None)
    messages = sync(ctx, ("app", "secret"), "contoso.onmicrosoft.com")
    assert messages == [
        "Added CRM powershell Pssnapin.",
        "Failure Details: The remote name could not be resolved: 'login.microsoftonline.com'",
        "The remote name could not be resolved: 'login.microsoftonline.com'",
        "Process Failed.",
    ]
    assert exit_code(ctx) == 1
    assert World.load(ctx.state_dir).org_setting("contoso", "S2STenantId") is None


def test_graph_denies_an_app_without_consent(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    messages = sync(ctx, register_app(twin, roles=()), twin.tenant_id)
    assert "The remote server returned an error: (403) Forbidden." in messages
    assert any(m.startswith("Failure Details: ") and "Authorization_RequestDenied" in m for m in messages)
    assert messages[-1] == "Process Failed." and exit_code(ctx) == 1
    assert crm_key_credentials(twin) == []


def test_wrong_client_secret(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    app_id, _ = register_app(twin)
    messages = sync(ctx, (app_id, "not-the-secret"), twin.tenant_id)
    assert "The remote server returned an error: (401) Unauthorized." in messages
    assert any("AADSTS7000215" in m for m in messages)
    assert "not-the-secret" not in " ".join(messages)


def test_unknown_organization_and_wrong_pfx(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    app = register_app(twin)
    messages = sync(ctx, app, twin.tenant_id, org="nosuchorg")
    assert "The specified organization nosuchorg is not a valid CRM organization." in messages
    assert exit_code(ctx) == 1
    ctx.variables["LASTEXITCODE"] = 0
    messages = sync(ctx, app, twin.tenant_id, password="wrong")
    assert any("The specified network password is not correct." in m for m in messages)
    messages = sync(ctx, app, twin.tenant_id, pfx_path="C:\\Temp\\missing.pfx")
    assert (
        "The specified value of the pfxFilePath parameter isn't valid. Please enter the correct path of "
        "the Personal Information Exchange file."
    ) in messages
    upload(ctx, pfx, "C:\\Temp\\psbridge\\s2s.p12")
    messages = sync(ctx, app, twin.tenant_id, pfx_path="C:\\Temp\\psbridge\\s2s.p12")
    assert (
        "The specified value of the pfxFilePath parameter isn't valid. Please enter the path of the .pfx "
        "file."
    ) in messages


def test_expired_certificate_is_refused_before_graph_changes(ctx: Recorder, twin: EntraTwin) -> None:
    old = make_pfx("pfx-pass", "CN=old", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=2)
    upload(ctx, old)
    ctx.cloud = cloud(twin)
    messages = sync(ctx, register_app(twin), twin.tenant_id)
    assert any("has already expired on" in m for m in messages) and messages[-1] == "Process Failed."
    assert crm_key_credentials(twin) == []


def test_legacy_script_cannot_sign_in(ctx: Recorder, pfx: bytes) -> None:
    ctx.server = "CRM02"
    upload(ctx, pfx)
    messages = run(
        ctx, cmd(SYNC, privateKeyPassword=secure("pfx-pass"), pfxFilePath=PFX, organizationName="contoso")
    ).messages
    assert any("MSOnline" in m for m in messages) and messages[-1] == "Process Failed."
    assert exit_code(ctx) == 1


def test_a_stop_ends_the_script_without_its_catch(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    ctx.stop_when = "Done with setting up certificate information."
    messages = sync(ctx, register_app(twin), twin.tenant_id)
    assert messages[-1] == "Done with setting up certificate information."  # nothing after the stop
    assert exit_code_unchanged(ctx)
    assert crm_key_credentials(twin) == []


def exit_code_unchanged(ctx: Recorder) -> bool:
    ctx.stopping = False
    return exit_code(ctx) == 0


def test_expired_key_credentials_stay_and_a_rerun_adds_the_key_again(
    ctx: Recorder, twin: EntraTwin, pfx: bytes
) -> None:
    # Windows PowerShell 5.1 compares Graph's date string with a DateTime as strings
    # ("2025-..." against "05/..."), so the published script never sees an expired credential.
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    old = {
        "keyId": "0b7ef0a4-94a3-4c27-b2a3-0a3f2a1e7a11",
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "displayName": "CN=old s2s",
        "customKeyIdentifier": "AB12",
        "startDateTime": "2024-01-01T00:00:00Z",
        "endDateTime": "2025-01-01T00:00:00Z",
        "key": "MIIB",
    }
    with twin.directory.change() as data:
        crm = next(
            s for s in data["servicePrincipals"] if s["appId"] == "00000007-0000-0000-c000-000000000000"
        )
        crm["keyCredentials"] = [dict(old)]
    app = register_app(twin)
    assert sync(ctx, app, twin.tenant_id)[-1] == "Process succeeded."
    assert not any("has expired" in str(o) for o in ctx.output)
    kept, added = crm_key_credentials(twin)
    # Sent back by keyId without key and displayName: Graph keeps the credential as it was.
    assert kept == old
    assert added["displayName"] == "CN=psbridge S2S contoso"
    # Graph lists key credentials without their "key", so the script cannot see that the
    # certificate is already there and adds it once more on a re-run.
    assert sync(ctx, app, twin.tenant_id)[-1] == "Process succeeded."
    keys = crm_key_credentials(twin)
    assert len(keys) == 3 and keys[1]["customKeyIdentifier"] == keys[2]["customKeyIdentifier"]


def test_a_key_credential_without_an_end_date_is_removed(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    # The one case the script's expiry check catches: $null -lt a date.
    from psbridge.lab.commands.scripts.server_side_sync import _ps_less_than_now

    now = dt.datetime(2026, 5, 10, 12, 0, tzinfo=dt.UTC)
    assert _ps_less_than_now(None, now)
    assert not _ps_less_than_now("2025-01-01T00:00:00Z", now)
    assert not _ps_less_than_now("1999-12-31T00:00:00Z", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert _ps_less_than_now("01/01/2026 00:00:00", now)  # a string in the same form does compare


def test_remove_crm_certificate_by_pipeline_and_by_id(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    assert reconfigure(ctx)[-1] == "Process succeeded."
    assert reconfigure(ctx, certificateType="AlternativeS2STokenIssuer")[-1] == "Process succeeded."
    run(ctx, cmd("Add-PSSnapin", Name="Microsoft.Crm.PowerShell", ErrorAction="SilentlyContinue"))
    certs = run(ctx, cmd("Get-CrmCertificate")).output
    types = sorted(prop(c, "CertificateType") for c in certs)
    assert types == ["AlternativeS2STokenIssuer", "S2STokenIssuer"]
    alternative = next(c for c in certs if prop(c, "CertificateType") == "AlternativeS2STokenIssuer")
    run(ctx, [cmd("Get-CrmCertificate", Id=prop(alternative, "Id")), cmd("Remove-CrmCertificate")])
    left = World.load(ctx.state_dir).crm_certificates()
    assert [c["certificate_type"] for c in left] == ["S2STokenIssuer"]
    remaining = World.load(ctx.state_dir).crm_certificates()[0]["id"]
    run(ctx, cmd("Remove-CrmCertificate", Id=remaining))
    assert World.load(ctx.state_dir).crm_certificates() == []
    run(ctx, cmd("Remove-CrmCertificate", Id=remaining))
    assert ctx.errors[0].message == f"Certificate with Id = {remaining} does not exist."


def test_certificate_drive_paths(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    assert reconfigure(ctx)[-1] == "Process succeeded."
    thumb = World.load(ctx.state_dir).store("CRM01")[0]["thumbprint"]
    path = f"Cert:\\LocalMachine\\My\\{thumb.lower()}"
    assert run(ctx, cmd("Test-Path", Path=path)).output == [True]
    assert run(ctx, cmd("Test-Path", Path="cert:\\localmachine\\my", PathType="Container")).output == [True]
    item = run(ctx, cmd("Get-Item", Path=path)).output[0]
    assert prop(item, "PSChildName") == thumb and prop(item, "NotAfter") > dt.datetime.now(dt.UTC)
    assert run(ctx, cmd("Get-ChildItem", Path="Cert:\\CurrentUser\\My")).output == []
    run(ctx, cmd("Get-ChildItem", Path="Cert:\\LocalMachine\\Nope"))
    assert ctx.errors[0].fqid == "PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand"
    ctx.user = "LAB\\operator"
    run(ctx, cmd("Remove-Item", Path=path, DeleteKey=True))
    assert ctx.errors[0].message == "Access is denied."
    ctx.user = "LAB\\crmadmin"
    run(ctx, cmd("Remove-Item", Path=path, DeleteKey=True))
    assert World.load(ctx.state_dir).store("CRM01") == []


def test_graph_throttling_is_not_retried_by_the_script(ctx: Recorder, twin: EntraTwin, pfx: bytes) -> None:
    upload(ctx, pfx)
    ctx.cloud = cloud(twin)
    app = register_app(twin)
    twin.set_knobs(throttle=1, retry_after=1)
    messages = sync(ctx, app, twin.tenant_id)
    assert "The remote server returned an error: (429) Too Many Requests." in messages
    assert messages[-1] == "Process Failed." and exit_code(ctx) == 1
    ctx.variables["LASTEXITCODE"] = 0
    ctx.cloud = CloudEndpoints(twin.login_url, None, str(twin.ca_bundle))  # Graph unreachable
    messages = sync(ctx, app, twin.tenant_id)
    assert "The remote name could not be resolved: 'graph.microsoft.com'" in messages


def test_items_from_the_pipeline_bind_by_their_path(ctx: Recorder, pfx: bytes) -> None:
    upload(ctx, pfx)
    assert reconfigure(ctx)[-1] == "Process succeeded."
    run(ctx, [cmd("Get-ChildItem", Path="Cert:\\LocalMachine\\My"), cmd("Remove-Item")])
    assert ctx.errors == [] and World.load(ctx.state_dir).store("CRM01") == []
    run(ctx, [cmd("Get-ChildItem", Path="C:\\Temp\\psbridge"), cmd("Get-FileHash")])
    assert [prop(h, "Path") for h in ctx.output] == [PFX]
    run(ctx, [cmd("Get-Item", Path=PFX), cmd("Remove-Item")])
    assert run(ctx, cmd("Test-Path", Path=PFX)).output == [False]
