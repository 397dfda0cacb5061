"""Input validation: every refusal names the input and says what is wrong, before any server call."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from crmkit import make_pfx

from psbridge.crm import validation as v
from psbridge.crm.inputs import secret
from psbridge.remote import ValidationError
from psbridge.secrets import Secret


def test_guid_forms() -> None:
    g = uuid.uuid4()
    assert v.guid(str(g).upper(), "x") == g
    assert v.guid("{" + str(g) + "}", "x") == g
    assert v.guid(g, "x") == g
    for bad in ["", "contoso", str(g)[:-1], str(g) + "0", "zzzzzzzz-0000-0000-0000-000000000000"]:
        with pytest.raises(ValidationError, match=r"client_id: .* is not a GUID"):
            v.guid(bad, "client_id")


def test_tenant_is_guid_or_domain() -> None:
    g = uuid.uuid4()
    assert v.tenant(str(g).upper()) == str(g)
    assert v.tenant("Contoso.onmicrosoft.com") == "contoso.onmicrosoft.com"
    for bad in ["contoso", "contoso..com", "-x.com", "1.2.3.4", "a b.com", ""]:
        with pytest.raises(ValidationError, match=r"tenant: .*neither a tenant GUID nor a domain"):
            v.tenant(bad)


def test_organization_name() -> None:
    assert v.organization_name(" contoso_2 ") == "contoso_2"
    with pytest.raises(ValidationError, match="required"):
        v.organization_name("")
    for bad in ["Contoso Ltd", "2contoso", "con-toso", "x'; Remove-Item C:\\ -Recurse"]:
        with pytest.raises(ValidationError, match="unique name"):
            v.organization_name(bad)


def test_certificate_type() -> None:
    assert v.certificate_type("s2stokenissuer") == "S2STokenIssuer"
    assert v.certificate_type("AlternativeS2STokenIssuer") == "AlternativeS2STokenIssuer"
    with pytest.raises(ValidationError, match="certificate_type: 'TrustedIssuer' is not"):
        v.certificate_type("TrustedIssuer")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("CONTOSO\\svc-crm-async", "CONTOSO\\svc-crm-async"), ("svc@contoso.com", "svc@contoso.com"),
     ("network service", "Network Service"), ("NT AUTHORITY\\NETWORK SERVICE", "Network Service")],
)
def test_service_account_forms(given: str, canonical: str) -> None:
    assert v.service_account(given) == canonical


@pytest.mark.parametrize(
    ("bad", "words"),
    [("svc-crm", "names no domain"), ("\\svc", "NetBIOS"), ("CONTOSO\\", "no user name"),
     ("CONTOSO\\a-very-long-service-account", "logon name"), ("CONTOSO\\a;b", "logon name"),
     ("TOO-LONG-NETBIOS-NAME\\svc", "NetBIOS"), ("svc@contoso", "domain name"), ("@contoso.com", "user name"),
     ("Local System", "names no domain")],
)
def test_service_account_refused(bad: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as e:
        v.service_account(bad)
    assert e.value.field == "service_account"
    assert "DOMAIN\\user" in str(e.value)


def test_pfx_server_path() -> None:
    assert str(v.pfx_server_path("C:\\certs\\s2s.PFX")) == "C:\\certs\\s2s.PFX"
    with pytest.raises(ValidationError, match=r"does not end in .pfx"):
        v.pfx_server_path("C:\\certs\\s2s.cer")
    with pytest.raises(ValidationError, match="absolute"):
        v.pfx_server_path("certs\\s2s.pfx")


def test_pfx_opens_and_is_described(tmp_path: Path) -> None:
    p = make_pfx(tmp_path / "s2s.pfx", "Pfx-pw1", subject="crm-s2s, test")
    info = v.inspect_pfx(p, Secret("Pfx-pw1"))
    assert info.subject == 'CN="crm-s2s, test"'
    assert len(info.thumbprint) == 40 and info.thumbprint.isupper()
    assert info.self_signed and info.key_size == 2048
    assert v.thumbprint_of(info.der) == info.thumbprint


def test_pfx_refusals(tmp_path: Path) -> None:
    good = make_pfx(tmp_path / "s2s.pfx", "right")
    with pytest.raises(ValidationError, match="does not open with the given password") as e:
        v.inspect_pfx(good, Secret("wrong"))
    assert "wrong" not in str(e.value).replace("does not open", "")
    with pytest.raises(ValidationError, match="does not exist"):
        v.inspect_pfx(tmp_path / "missing.pfx", Secret("x"))
    with pytest.raises(ValidationError, match=r"does not end in .pfx"):
        v.inspect_pfx(tmp_path / "s2s.cer", Secret("x"))
    expired = make_pfx(tmp_path / "old.pfx", "pw", days=-1, start_days_ago=30)
    with pytest.raises(ValidationError, match="expired on"):
        v.inspect_pfx(expired, Secret("pw"))
    future = make_pfx(tmp_path / "future.pfx", "pw", start_days_ago=-5)
    with pytest.raises(ValidationError, match="not valid before"):
        v.inspect_pfx(future, Secret("pw"))
    ec_pfx = make_pfx(tmp_path / "ec.pfx", "pw", ec_key=True)
    with pytest.raises(ValidationError, match="needs an RSA key"):
        v.inspect_pfx(ec_pfx, Secret("pw"))
    (tmp_path / "junk.pfx").write_bytes(b"not a pfx")
    with pytest.raises(ValidationError, match="or is not a PFX"):
        v.inspect_pfx(tmp_path / "junk.pfx", Secret("pw"))


def test_secrets_are_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSB_TEST_SECRET", "s3cret")
    assert secret("env:PSB_TEST_SECRET", "client_secret").reveal() == "s3cret"
    s = Secret("x")
    assert secret(s, "client_secret") is s
    with pytest.raises(ValidationError, match="client_secret: give a secret reference") as e:
        secret("s3cret-value", "client_secret")
    assert "s3cret-value" not in str(e.value)
    with pytest.raises(ValidationError, match=r"client_secret: .*PSB_TEST_MISSING"):
        secret("env:PSB_TEST_MISSING", "client_secret")


def test_subjects_compare_as_distinguished_names() -> None:
    from psbridge.crm.certificates import normalize_subject as n

    windows, rfc4514 = n('CN="crm-s2s, test", O=Contoso'), n("CN=crm-s2s\\, test,O=Contoso")
    assert windows == rfc4514 == n("cn=CRM-S2S\\, Test ,  o=contoso")
    assert n('CN="say ""hi"""') == (("CN", 'say "hi"'),)
    assert n("CN=a") != n("CN=b") and n("CN=a, O=b") != n("CN=a")
