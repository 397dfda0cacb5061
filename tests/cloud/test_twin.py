"""The Entra/Graph twin itself: persistence, discovery, enforcement, the script's Graph calls."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from psbridge.cloud import CloudSettings, GraphClient, SignIn, TenantLookupError, tenant_id_from_discovery
from psbridge.errors import LabSettingError, ParameterError
from psbridge.lab.ca import LabCA
from psbridge.lab.entra import EntraTwin, start_twin

CRM = "00000007-0000-0000-c000-000000000000"


def test_describe_names_what_lab_json_records(twin: EntraTwin) -> None:
    d = twin.describe()
    assert d["login_url"] == twin.login_url and d["graph_url"] == twin.graph_url
    assert d["tenant_domain"] == "psbridgelab.onmicrosoft.com"
    assert d["admin_user"] == "admin@psbridgelab.onmicrosoft.com"
    assert d["device_code_approval"] == "auto" and d["token_lifetime"] == 3600
    json.dumps(d)


def test_state_survives_a_restart(tmp_path: Path, lab_ca: LabCA) -> None:
    from psbridge.cloud import sign_in_device_code

    first = start_twin(tmp_path / "state", lab_ca)
    me = sign_in_device_code(CloudSettings.from_lab(first.describe()), first.tenant_id,
                             on_code=lambda c: None, cache_dir=tmp_path / "cache")
    token = me.access_token()
    GraphClient(CloudSettings.from_lab(first.describe()), me).post("/applications", {"displayName": "kept"})
    tenant = first.tenant_id
    first.stop()
    again = start_twin(tmp_path / "state", lab_ca)
    try:
        settings = CloudSettings.from_lab(again.describe())
        assert again.tenant_id == tenant
        assert tenant_id_from_discovery(settings, "psbridgelab.onmicrosoft.com") == tenant
        # Same signing key: a token from before the restart is still good at the new Graph port.
        r = requests.get(f"{again.graph_url}/v1.0/applications", verify=str(lab_ca.bundle_path), timeout=10,
                         headers={"Authorization": f"Bearer {token.reveal()}"})
        assert [a["displayName"] for a in r.json()["value"]] == ["kept"]
    finally:
        again.stop()


@pytest.mark.parametrize("case", [str.lower, str.title])  # Grant_Type, Client_Id: as the official script
def test_unknown_client_is_refused_as_entra_does(twin: EntraTwin, case: Callable[[str], str]) -> None:
    form = {"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x",
            "scope": "https://graph.microsoft.com/.default"}
    r = requests.post(f"{twin.login_url}/{twin.tenant_id}/oauth2/v2.0/token", verify=str(twin.ca_bundle),
                      timeout=10, data={case(k): v for k, v in form.items()})
    assert r.status_code == 400 and "AADSTS700016" in r.json()["error_description"]


def test_discovery_by_domain_and_unknown_domain(twin: EntraTwin, settings: CloudSettings) -> None:
    assert tenant_id_from_discovery(settings, twin.tenant_domain) == twin.tenant_id
    with pytest.raises(TenantLookupError, match="AADSTS90002"):
        tenant_id_from_discovery(settings, "unknown.onmicrosoft.com")
    with pytest.raises(ParameterError, match="not a domain name"):
        tenant_id_from_discovery(settings, "../etc")
    keys = requests.get(f"{twin.login_url}/{twin.tenant_id}/discovery/v2.0/keys", verify=str(twin.ca_bundle),
                        timeout=10).json()
    assert keys["keys"][0]["kty"] == "RSA"


def test_graph_without_a_token(twin: EntraTwin) -> None:
    r = requests.get(f"{twin.graph_url}/v1.0/organization", verify=str(twin.ca_bundle), timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert r.headers["request-id"] == r.json()["error"]["innerError"]["request-id"]


def test_knobs_file_written_by_another_process_is_honoured(twin: EntraTwin, admin: SignIn) -> None:
    twin.knobs.path.write_text(json.dumps({"throttle": 1, "retry_after": 4}), encoding="utf-8")
    sleeps: list[float] = []
    GraphClient(CloudSettings.from_lab(twin.describe()), admin, sleep=sleeps.append).get("/organization")
    assert sleeps == [4.0]
    with pytest.raises(LabSettingError, match="unknown twin knob"):
        twin.set_knobs(explode=True)


def _cert(days: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CN=crm-s2s")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=2))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_crm_service_principal_key_credentials_as_graph_shows_them(twin: EntraTwin,
                                                                   graph: GraphClient) -> None:
    sp = graph.get_all("/servicePrincipals", {"$filter": f"appId eq '{CRM}'"})[0]
    der = _cert(30)
    graph.patch(f"/servicePrincipals/{sp['id']}", {
        "keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify",
                            "key": base64.b64encode(der).decode()}],
        "servicePrincipalNames": [*sp["servicePrincipalNames"], CRM],
    })
    listed = graph.get_all("/servicePrincipals", {"$filter": f"appId eq '{CRM}'"})[0]
    cred = listed["keyCredentials"][0]
    assert cred["key"] is None  # only a single object read with $select returns the key
    thumb = x509.load_der_x509_certificate(der).fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert cred["customKeyIdentifier"] == thumb
    single = graph.get(f"/servicePrincipals/{sp['id']}", {"$select": "keyCredentials"})
    assert base64.b64decode(single["keyCredentials"][0]["key"]) == der
    # Read-modify-write: the existing entry sent back without its key is kept, a new one added.
    graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": [
        {"keyId": cred["keyId"], "type": cred["type"], "usage": cred["usage"]},
        {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(_cert(60)).decode()},
    ]})
    assert len(graph.get(f"/servicePrincipals(appId='{CRM}')")["keyCredentials"]) == 2
    # The identifier as PowerShell scripts send it (base64 of the hash) reads back as the thumbprint.
    der3 = _cert(90)
    thumb3 = x509.load_der_x509_certificate(der3).fingerprint(hashes.SHA1())  # noqa: S303
    graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": [
        {"type": "AsymmetricX509Cert", "usage": "Verify", "key": base64.b64encode(der3).decode(),
         "customKeyIdentifier": base64.b64encode(thumb3).decode()}]})
    from psbridge.cloud import read_crm_service_principal

    assert read_crm_service_principal(graph).has_certificate(thumb3.hex())
    from psbridge.cloud.graph import GraphError

    with pytest.raises(GraphError, match="key"):
        graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": [
            {"type": "AsymmetricX509Cert", "usage": "Verify", "key": "bm90IGEgY2VydA=="}]})
    graph.patch(f"/servicePrincipals/{sp['id']}", {"keyCredentials": []})


def test_status_tables_show_what_changed(twin: EntraTwin, graph: GraphClient, tmp_path: Path) -> None:
    from psbridge.cloud import ensure_app, ensure_client_secret, grant_admin_consent
    from psbridge.lab.entra.status import status_tables

    app = ensure_app(graph, "status-app", "https://localhost/psbridge")
    ensure_client_secret(graph, app, f"file:{tmp_path / 's'}")
    grant_admin_consent(graph, app)
    tables = status_tables(twin.state_dir)
    apps = tables["entra app registrations"]
    assert apps.loc[apps.displayName == "status-app", "clientSecrets"].item() == 1
    consents = tables["entra consents"]
    assert set(consents.loc[consents.client == "status-app", "permission"]) == {
        "Application.ReadWrite.All", "Organization.Read.All", "User.Read"}
    assert status_tables(tmp_path / "nothing") == {}
