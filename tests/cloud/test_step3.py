"""Step 3 end to end against an empty twin tenant: app, secret, access, consent, teardown."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from psbridge import secrets
from psbridge.cloud import (
    CloudSettings,
    GraphClient,
    GraphError,
    SignIn,
    SignInError,
    ensure_app,
    ensure_client_secret,
    ensure_required_access,
    get_app,
    grant_admin_consent,
    read_crm_service_principal,
    setup_access,
    sign_in_client_secret,
    sign_in_device_code,
    teardown,
    tenant_id_from_discovery,
    tenant_id_from_graph,
)
from psbridge.errors import NotFoundInTenant, ParameterError
from psbridge.lab.entra import EntraTwin

APP_NAME = "psbridge S2S setup"
REDIRECT = "https://localhost/psbridge"


def _world(twin: EntraTwin) -> dict:
    """The directory as stored, minus refresh tokens (a sign-in changes those, not the tenant)."""
    data = json.loads(twin.directory.path.read_text(encoding="utf-8"))
    data.pop("refreshTokens")
    return data


def _admin(twin: EntraTwin, cache: Path) -> tuple[CloudSettings, SignIn, GraphClient]:
    settings = CloudSettings.from_lab(twin.describe())
    admin = sign_in_device_code(settings, twin.tenant_domain, on_code=lambda c: None, cache_dir=cache)
    return settings, admin, GraphClient(settings, admin, sleep=lambda s: None)


def _step3(graph: GraphClient, secret_ref: str):  # type: ignore[no-untyped-def]
    app = ensure_app(graph, APP_NAME, REDIRECT)
    secret = ensure_client_secret(graph, app, secret_ref)
    access = ensure_required_access(graph, app)
    consent = grant_admin_consent(graph, app)
    return app, secret, access, consent


def _certificate() -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CRM S2S")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))


def test_step3_from_an_empty_tenant_then_again_changes_nothing(fresh_twin: EntraTwin, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    twin = fresh_twin
    settings, _admin_signin, graph = _admin(twin, tmp_path / "cache")
    assert twin.directory.objects("applications") == []
    ref = f"file:{tmp_path / 'store' / 'setup-secret'}"

    app, secret, access, consent = _step3(graph, ref)
    assert app.changes == ["created app registration", "created service principal"]
    assert app.sign_in_audience == "AzureADMyOrg" and app.redirect_uris == [REDIRECT]
    assert secret.created and secret.secret_ref == ref
    assert (secret.end - secret.start).days in (179, 180)
    assert access.changed
    assert {(p.name, p.kind, p.id) for p in access.permissions} == {
        ("Application.ReadWrite.All", "Role", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"),
        ("Organization.Read.All", "Role", "498476ce-e0fe-48b0-b801-37ba7e2685c6"),
        ("User.Read", "Scope", "e1fe6dd8-ba31-4d61-89e7-88639da4683d"),
    }
    assert sorted(consent.created) == ["Application.ReadWrite.All", "Organization.Read.All", "User.Read"]
    stored_value = (tmp_path / "store" / "setup-secret").read_text(encoding="utf-8")
    assert len(stored_value) == 40 and stored_value.startswith(secret.hint)
    assert list(consent.table()["this run"]) == ["granted"] * 3

    tenant_id = tenant_id_from_graph(graph)
    assert tenant_id == twin.tenant_id == tenant_id_from_discovery(settings, twin.tenant_domain)

    # What ConfigureCrmServerSideSync then does with the app's secret, over the same wire.
    app_signin = sign_in_client_secret(settings, tenant_id, app.app_id, ref)
    roles = jwt.decode(app_signin.access_token().reveal(), options={"verify_signature": False})["roles"]
    assert roles == ["Application.ReadWrite.All", "Organization.Read.All"]
    as_app = GraphClient(settings, app_signin)
    assert as_app.get("/organization")["value"][0]["id"] == tenant_id
    crm = as_app.get_all("/servicePrincipals",
                         {"$filter": "appId eq '00000007-0000-0000-c000-000000000000'"})[0]
    cert = _certificate()
    der = cert.public_bytes(serialization.Encoding.DER)
    as_app.patch(f"/servicePrincipals/{crm['id']}", {
        "keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify",
                            "key": base64.b64encode(der).decode()}],
        "servicePrincipalNames": crm["servicePrincipalNames"],
    })
    evidence = read_crm_service_principal(graph)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - a certificate thumbprint
    assert evidence.has_certificate(thumb)
    assert "00000007-0000-0000-c000-000000000000" in evidence.service_principal_names
    assert thumb in evidence._repr_html_() and len(evidence.table()) == 1

    # A second run finds everything in place and changes nothing.
    before = _world(twin)
    app2, secret2, access2, consent2 = _step3(graph, ref)
    assert app2.changes == [] and app2.app_id == app.app_id
    assert not secret2.created and secret2.key_id == secret.key_id
    assert not access2.changed
    assert consent2.created == [] and sorted(consent2.already) == sorted(consent.created)
    assert _world(twin) == before

    # What a teardown would remove, read without changing anything.
    assert get_app(graph, APP_NAME) == app.model_copy(update={"changes": []})
    assert get_app(graph, "no such app") is None
    assert setup_access(graph, app) == [
        f"client secret {secret.key_id}", "admin consent to Application.ReadWrite.All, Organization.Read.All",
        "delegated consent to User.Read"]
    assert _world(twin) == before

    # Teardown: no secret, no consent; and again, nothing to do.
    report = teardown(graph, app, ref)
    assert report.secrets_removed == [secret.key_id] and report.secret_ref_deleted == ref
    assert sorted(report.role_assignments_removed) == ["Application.ReadWrite.All", "Organization.Read.All"]
    assert report.delegated_grants_removed == 1 and report.changed
    world = _world(twin)
    stored_app = next(a for a in world["applications"] if a["appId"] == app.app_id)
    assert stored_app["passwordCredentials"] == [] and world["passwordHashes"] == {}
    assert [a for a in world["appRoleAssignments"] if a["principalId"] == app.service_principal_id] == []
    assert [g for g in world["oauth2PermissionGrants"] if g["clientId"] == app.service_principal_id] == []
    assert not (tmp_path / "store" / "setup-secret").exists()
    with pytest.raises(SignInError, match="AADSTS7000215"):
        sign_in_client_secret(settings, tenant_id, app.app_id, secrets.Secret("x" * 40))
    assert not teardown(graph, app, ref).changed
    assert setup_access(graph, app) == []

    # The secret's value never reached a log line, the output, or a returned model.
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err]
    for model in (app, secret, access, consent, report, evidence):
        texts += [repr(model), model._repr_html_()]
    for text in texts:
        assert stored_value not in text
        assert secrets.redact(text) == text  # nor any other value handled as a secret


def test_missing_consent_fails_clearly(twin: EntraTwin, graph: GraphClient, tmp_path: Path) -> None:
    settings = CloudSettings.from_lab(twin.describe())
    app = ensure_app(graph, "no-consent-app", REDIRECT)
    ref = f"file:{tmp_path / 'secret'}"
    ensure_client_secret(graph, app, ref)
    ensure_required_access(graph, app)  # asked for, never consented
    as_app = GraphClient(settings, sign_in_client_secret(settings, twin.tenant_id, app.app_id, ref))
    with pytest.raises(GraphError) as e:
        as_app.get("/organization")
    assert (e.value.status, e.value.code) == (403, "Authorization_RequestDenied")
    assert e.value.message == "Insufficient privileges to complete the operation."
    assert "Authorization_RequestDenied" in str(e.value) and e.value.request_id in str(e.value)


def test_secret_lifetime_over_24_months_is_refused_before_any_change(twin: EntraTwin, graph: GraphClient,
                                                                      tmp_path: Path) -> None:
    app = ensure_app(graph, "lifetime-app", REDIRECT)
    before = _world(twin)
    with pytest.raises(ParameterError, match="24 months"):
        ensure_client_secret(graph, app, f"file:{tmp_path / 's'}", lifetime_days=731)
    with pytest.raises(ParameterError, match="cannot be written"):
        ensure_client_secret(graph, app, "env:SOME_VAR")
    assert _world(twin) == before
    info = ensure_client_secret(graph, app, f"file:{tmp_path / 's'}", lifetime_days=730)
    assert info.created


def test_lost_secret_is_replaced_and_the_unusable_one_removed(twin: EntraTwin, graph: GraphClient,
                                                              tmp_path: Path) -> None:
    app = ensure_app(graph, "lost-secret-app", REDIRECT)
    first = ensure_client_secret(graph, app, f"file:{tmp_path / 'a'}")
    (tmp_path / "a").unlink()  # the store lost it
    second = ensure_client_secret(graph, app, f"file:{tmp_path / 'a'}")
    assert second.created and second.key_id != first.key_id
    creds = graph.get(f"/applications/{app.object_id}")["passwordCredentials"]
    assert [c["keyId"] for c in creds] == [second.key_id]


def test_app_settings_drift_is_corrected(twin: EntraTwin, graph: GraphClient) -> None:
    app = ensure_app(graph, "drifting-app", REDIRECT)
    graph.patch(f"/applications/{app.object_id}", {"signInAudience": "AzureADMultipleOrgs",
                                                   "web": {"redirectUris": []}})
    again = ensure_app(graph, "drifting-app", REDIRECT)
    assert again.changes == ["set signInAudience", "set web"]
    assert again.sign_in_audience == "AzureADMyOrg" and again.redirect_uris == [REDIRECT]


def test_names_with_quotes_and_bad_input(twin: EntraTwin, graph: GraphClient) -> None:
    app = ensure_app(graph, "O'Brien's app", REDIRECT)
    assert ensure_app(graph, "O'Brien's app", REDIRECT).changes == []
    assert app.display_name == "O'Brien's app"
    with pytest.raises(ParameterError, match="redirect URI"):
        ensure_app(graph, "x", "http://example.test/cb")
    with pytest.raises(ParameterError, match="display name"):
        ensure_app(graph, "  ", REDIRECT)


def test_permission_resolution_is_by_name(twin: EntraTwin, graph: GraphClient) -> None:
    from psbridge.cloud import resolve_permissions

    perms = resolve_permissions(graph, [("Application.Read.All", "Role"),
                                        ("Application.ReadWrite.All", "Scope")])
    assert [p.id for p in perms] == ["9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
                                     "bdfbf15f-ee85-4955-8675-146e8e5296b5"]
    with pytest.raises(NotFoundInTenant, match=r"did you mean Application\.ReadWrite\.All"):
        resolve_permissions(graph, [("Application.ReadWrite.Al", "Role")])


def test_canary_secret_never_appears_in_logs_or_output(twin: EntraTwin, graph: GraphClient, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-5e1c-7a9f-do-not-print"
    caplog.set_level(logging.DEBUG)  # msal, urllib3 and psbridge at their most talkative
    settings = CloudSettings.from_lab(twin.describe())
    app = ensure_app(graph, "canary-app", REDIRECT)
    monkeypatch.setenv("PSB_CANARY_SECRET", canary)
    with pytest.raises(SignInError) as e:
        sign_in_client_secret(settings, twin.tenant_id, app.app_id, "env:PSB_CANARY_SECRET")
    # The same value stored as the app's secret reference: ensure + sign-in + Graph + teardown.
    ref = f"file:{tmp_path / 'canary-store'}"
    info = ensure_client_secret(graph, app, ref)
    real = secrets.resolve(ref)
    grant_admin_consent(graph, app)
    # Roles are fixed when a token is issued: sign in after the consent, as the CRM script does.
    signed = sign_in_client_secret(settings, twin.tenant_id, app.app_id, ref)
    GraphClient(settings, signed).get("/organization")
    teardown(graph, app, ref)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, str(e.value), repr(e.value), repr(info),
             info._repr_html_(), repr(signed), signed._repr_html_(), repr(real)]
    for text in texts:
        assert canary not in text
        assert real.reveal() not in text


def test_parallel_step3_runs_for_many_orgs(fresh_twin: EntraTwin, tmp_path: Path) -> None:
    """A batch runs step 3 for several orgs at once: each gets its own app, nothing is lost."""
    from concurrent.futures import ThreadPoolExecutor

    _settings, _admin_signin, graph = _admin(fresh_twin, tmp_path / "cache")

    def one(i: int) -> str:
        app = ensure_app(graph, f"psbridge S2S org{i}", REDIRECT)
        ensure_client_secret(graph, app, f"file:{tmp_path / f'org{i}'}")
        ensure_required_access(graph, app)
        grant_admin_consent(graph, app)
        return app.app_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        app_ids = list(pool.map(one, range(8), timeout=120))
    world = _world(fresh_twin)
    assert sorted(a["appId"] for a in world["applications"]) == sorted(app_ids)
    assert len(world["appRoleAssignments"]) == 16 and len(world["oauth2PermissionGrants"]) == 8
    assert len(world["passwordHashes"]) == 8


def test_runbook_teardown_step_plans_keeps_or_removes(fresh_twin: EntraTwin, tmp_path: Path) -> None:
    """Step 4's teardown as the runbook calls it: plan reads only, teardown=False keeps, then removes."""
    from psbridge.runbook.steps.s2s import KEPT, remove_setup_access, setup_access_left

    _settings, _admin_signin, graph = _admin(fresh_twin, tmp_path / "cache")
    ref = f"file:{tmp_path / 'store' / 'setup-secret'}"
    # Nothing made yet: the plan says step 3's additions will be removed again.
    planned = remove_setup_access(graph, APP_NAME, ref, teardown=True, configured=False, plan=True)
    assert planned.changes == [f"remove from {APP_NAME!r}: the client secret and consent step 3 adds"]
    _app, secret, _access, _consent = _step3(graph, ref)
    before = _world(fresh_twin)
    planned = remove_setup_access(graph, APP_NAME, ref, teardown=True, configured=True, plan=True)
    assert planned.planned and planned.changes == [
        f"remove from {APP_NAME!r}: client secret {secret.key_id}; "
        "admin consent to Application.ReadWrite.All, Organization.Read.All; delegated consent to User.Read"]
    kept = remove_setup_access(graph, APP_NAME, ref, teardown=False, configured=True)
    assert kept.changes == [] and kept.shown == [KEPT]
    assert _world(fresh_twin) == before and len(setup_access_left(graph, APP_NAME)) == 3

    done = remove_setup_access(graph, APP_NAME, ref, teardown=True, configured=True)
    assert done.changes == [f"removed client secret {secret.key_id}",
                            f"deleted the stored client secret at {ref}",
                            "revoked admin consent: Application.ReadWrite.All, Organization.Read.All",
                            "revoked the delegated permission grant (1)"]
    assert setup_access_left(graph, APP_NAME) == []
    assert remove_setup_access(graph, APP_NAME, ref, teardown=True, configured=True).changes == []
    assert remove_setup_access(graph, "no such app", ref, teardown=True, configured=True).changes == []
