"""msal sign-in against the twin: device code, client secret, certificate, cache, renewal."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from psbridge.cloud import (
    DeviceCode,
    GraphClient,
    GraphError,
    SignInError,
    ensure_app,
    ensure_client_secret,
    sign_in_certificate,
    sign_in_client_secret,
    sign_in_device_code,
)
from psbridge.cloud.settings import CloudSettings
from psbridge.errors import CertificateError
from psbridge.lab.entra import EntraTwin

CANARY = "canary-2b7d1e0f-never-print-me"


def settings_of(twin: EntraTwin) -> CloudSettings:
    return CloudSettings.from_lab(twin.describe())


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_device_code_sign_in_shows_code_and_url(twin: EntraTwin, tmp_path: Path) -> None:
    shown: list[DeviceCode] = []
    me = sign_in_device_code(settings_of(twin), twin.tenant_domain, on_code=shown.append, cache_dir=tmp_path)
    assert len(shown) == 1
    assert shown[0].verification_uri == f"{twin.login_url}/devicelogin"
    assert shown[0].user_code in shown[0].message
    assert shown[0].user_code in shown[0]._repr_html_()
    assert me.username == f"admin@{twin.tenant_domain}"
    assert me.tenant_id == twin.tenant_id
    claims = _claims(me.access_token().reveal())
    assert claims["tid"] == twin.tenant_id
    assert "Application.ReadWrite.All" in claims["scp"].split()
    assert me.username in repr(me) and "device_code" in me._repr_html_()
    graph = GraphClient(settings_of(twin), me)
    assert graph.get("/me")["userPrincipalName"] == me.username


def test_second_sign_in_reuses_the_cache_silently(twin: EntraTwin, tmp_path: Path) -> None:
    settings = settings_of(twin)
    sign_in_device_code(settings, twin.tenant_domain, on_code=lambda c: None, cache_dir=tmp_path)
    files = list((tmp_path / twin.tenant_domain).glob("*.json"))
    assert [f.name for f in files] == [f"admin@{twin.tenant_domain}.json"]
    if sys.platform != "win32":
        assert files[0].stat().st_mode & 0o077 == 0

    def must_not_prompt(code: DeviceCode) -> None:
        raise AssertionError("a cached sign-in must not ask for a device code")

    again = sign_in_device_code(settings, twin.tenant_domain, on_code=must_not_prompt, cache_dir=tmp_path)
    assert again.username == f"admin@{twin.tenant_domain}"
    assert again.access_token()


def test_manual_approval_entered_at_the_devicelogin_page(twin: EntraTwin, tmp_path: Path) -> None:
    twin.set_knobs(device_code_approval="manual")

    def user_enters_code(code: DeviceCode) -> None:
        page = requests.get(code.verification_uri, verify=str(twin.ca_bundle), timeout=10)
        assert "Enter code" in page.text
        r = requests.post(code.verification_uri, data={"otc": code.user_code}, verify=str(twin.ca_bundle),
                          timeout=10)
        assert r.status_code == 200

    me = sign_in_device_code(settings_of(twin), twin.tenant_id, on_code=user_enters_code, cache_dir=tmp_path)
    assert me.username == f"admin@{twin.tenant_domain}"


def test_declined_device_code_fails_clearly(twin: EntraTwin, tmp_path: Path) -> None:
    twin.set_knobs(device_code_approval="manual")
    with pytest.raises(SignInError) as e:
        sign_in_device_code(settings_of(twin), twin.tenant_id, cache_dir=tmp_path,
                            on_code=lambda c: twin.approve_device_code(c.user_code, approve=False))
    assert e.value.error == "authorization_declined"


def test_client_secret_sign_in_and_wrong_secret(twin: EntraTwin, graph: GraphClient, tmp_path: Path) -> None:
    app = ensure_app(graph, "signin-secret-test", "https://localhost/psbridge")
    info = ensure_client_secret(graph, app, f"file:{tmp_path / 'secret.txt'}", lifetime_days=30)
    settings = settings_of(twin)
    signed = sign_in_client_secret(settings, twin.tenant_id, app.app_id, info.secret_ref)
    claims = _claims(signed.access_token().reveal())
    assert claims["appid"] == app.app_id and claims["idtyp"] == "app"
    assert "roles" not in claims  # nothing consented yet
    with pytest.raises(SignInError) as e:
        from psbridge.secrets import Secret

        sign_in_client_secret(settings, twin.tenant_id, app.app_id, Secret(CANARY))
    assert "AADSTS7000215" in str(e.value)
    assert CANARY not in str(e.value) and CANARY not in repr(e.value)


def _self_signed(tmp_path: Path, password: bytes) -> tuple[Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "psbridge-test-client")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    pfx = tmp_path / "client.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(
        b"client", key, cert, None, serialization.BestAvailableEncryption(password)))
    return pfx, cert


def test_certificate_sign_in(twin: EntraTwin, graph: GraphClient, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    app = ensure_app(graph, "signin-cert-test", "https://localhost/psbridge")
    pfx, cert = _self_signed(tmp_path, b"pfx-pass")
    der = cert.public_bytes(serialization.Encoding.DER)
    graph.patch(f"/applications/{app.object_id}", {"keyCredentials": [
        {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der).decode()}]})
    monkeypatch.setenv("PSB_TEST_PFX_PASSWORD", "pfx-pass")
    pw_ref = "env:PSB_TEST_PFX_PASSWORD"
    signed = sign_in_certificate(settings_of(twin), twin.tenant_id, app.app_id, pfx, pw_ref)
    assert _claims(signed.access_token().reveal())["appid"] == app.app_id
    (tmp_path / "other").mkdir()
    other, _ = _self_signed(tmp_path / "other", b"pfx-pass")
    with pytest.raises(SignInError) as e:
        sign_in_certificate(settings_of(twin), twin.tenant_id, app.app_id, other, "env:PSB_TEST_PFX_PASSWORD")
    assert "AADSTS700027" in str(e.value)
    monkeypatch.setenv("PSB_TEST_PFX_PASSWORD", "wrong")
    with pytest.raises(CertificateError, match="wrong password or not a PFX"):
        sign_in_certificate(settings_of(twin), twin.tenant_id, app.app_id, pfx, "env:PSB_TEST_PFX_PASSWORD")


def test_expired_token_is_renewed_once(twin: EntraTwin, tmp_path: Path) -> None:
    me = sign_in_device_code(settings_of(twin), twin.tenant_domain, on_code=lambda c: None,
                             cache_dir=tmp_path)
    graph = GraphClient(settings_of(twin), me)
    first = me.access_token().reveal()
    assert graph.get("/organization")["value"]
    # Two hours pass for the twin: the token msal still holds is expired there.
    twin.set_knobs(clock_offset=7200)
    assert graph.get("/organization")["value"][0]["id"] == twin.tenant_id
    assert me.access_token().reveal() != first  # refreshed with the refresh token


def test_expired_app_token_is_renewed(twin: EntraTwin, graph: GraphClient, tmp_path: Path) -> None:
    app = ensure_app(graph, "renewal-test", "https://localhost/psbridge")
    info = ensure_client_secret(graph, app, f"file:{tmp_path / 's.txt'}")
    signed = sign_in_client_secret(settings_of(twin), twin.tenant_id, app.app_id, info.secret_ref)
    first = signed.access_token().reveal()
    twin.set_knobs(clock_offset=7200)
    client = GraphClient(settings_of(twin), signed)
    with pytest.raises(GraphError) as e:  # no consent: a 403 after the renewal, not a 401
        client.get("/organization")
    assert e.value.status == 403
    assert signed.access_token().reveal() != first


class _ForgedTokens:
    """A token signed by someone else's key: Graph must refuse it, twice, and the client stop."""

    def __init__(self, tenant_id: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.tenant_id = tenant_id
        self.invalidated = 0

    def access_token(self):  # type: ignore[no-untyped-def]
        from psbridge.secrets import Secret

        now = int(dt.datetime.now(dt.UTC).timestamp())
        claims = {"aud": "https://graph.microsoft.com", "tid": self.tenant_id, "exp": now + 600,
                  "roles": ["Organization.Read.All"]}
        return Secret(jwt.encode(claims, self.key, algorithm="RS256"))

    def invalidate(self) -> None:
        self.invalidated += 1


def test_badly_signed_token_is_refused(twin: EntraTwin) -> None:
    forged = _ForgedTokens(twin.tenant_id)
    with pytest.raises(GraphError) as e:
        GraphClient(settings_of(twin), forged).get("/organization")
    assert (e.value.status, e.value.code) == (401, "InvalidAuthenticationToken")
    assert forged.invalidated == 1  # renewed once, then gave up
    assert e.value.request_id


def test_unknown_tenant_and_unreachable_authority(twin: EntraTwin, tmp_path: Path) -> None:
    settings = settings_of(twin)
    with pytest.raises(ValueError, match="nosuchtenant"):
        sign_in_device_code(settings, "nosuchtenant.onmicrosoft.com", on_code=lambda c: None,
                            cache_dir=tmp_path)
    # A closed loopback port stands for an unreachable authority: nothing leaves the machine.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = CloudSettings("dead", f"https://127.0.0.1:{port}", f"https://127.0.0.1:{port}",
                         "https://graph.microsoft.com", instance_discovery=False,
                         ca_bundle=str(twin.ca_bundle), timeout=5)
    with pytest.raises(Exception) as e:
        sign_in_device_code(dead, twin.tenant_id, on_code=lambda c: None, cache_dir=tmp_path)
    assert "127.0.0.1" in str(e.value) or "Connection" in type(e.value).__name__


def test_token_cache_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from psbridge.cloud.signin import cache_root

    monkeypatch.setenv("PSBRIDGE_TOKEN_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("PSBRIDGE_TOKEN_CACHE")
    assert "psbridge" in str(cache_root())
    assert os.fspath(cache_root(tmp_path / "x")) == os.fspath(tmp_path / "x")


def test_short_token_lifetime_means_fresh_tokens(twin: EntraTwin, tmp_path: Path) -> None:
    twin.set_knobs(token_lifetime=60)
    me = sign_in_device_code(settings_of(twin), twin.tenant_domain, on_code=lambda c: None,
                             cache_dir=tmp_path)
    first = me.access_token().reveal()
    claims = _claims(first)
    assert claims["exp"] - claims["iat"] == 60
    # msal renews a token with under five minutes left instead of handing it out.
    assert me.access_token().reveal() != first
