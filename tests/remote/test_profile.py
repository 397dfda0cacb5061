"""Connection profiles: unsafe combinations are refused before any connection."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from psbridge.remote import ConnectionProfile, ProfileError


def profile(**kw: object) -> ConnectionProfile:
    base: dict[str, object] = {
        "host": "crm01.contoso.local", "user": "CONTOSO\\admin", "password": "env:CRM_PW",
    }
    base.update(kw)
    return ConnectionProfile(**base)


def test_defaults_are_https_with_validation() -> None:
    p = profile()
    assert p.endpoint == "https://crm01.contoso.local:5986/wsman"
    assert p.cert_validation is True
    assert p.security_notes == []
    assert p.wsman_kwargs(None)["cert_validation"] is True


def test_http_uses_5985_and_forces_message_encryption() -> None:
    p = profile(scheme="http", auth="ntlm")
    assert p.effective_port == 5985
    assert p.wsman_kwargs(None)["encryption"] == "always"


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"scheme": "http", "auth": "basic"}, "clear text"),
        ({"scheme": "http", "auth": "credssp"}, "CredSSP"),
        ({"scheme": "http", "message_encryption": False}, "message encryption"),
        ({"cert_validation": False, "ca_bundle": "ca.pem"}, "choose one"),
        ({"password": None}, "both user and password"),
        ({"port": 0}, "port"),
        ({"host": ""}, "host"),
    ],
)
def test_refused_combinations(kw: dict[str, object], words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        profile(**kw)


def test_basic_and_credssp_allowed_over_https() -> None:
    assert profile(auth="basic").auth == "basic"
    assert profile(auth="credssp").auth == "credssp"


def test_a_password_value_is_refused_without_repeating_it() -> None:
    with pytest.raises(ProfileError) as e:
        profile(password="Tr0ub4dor&3")
    assert "Tr0ub4dor" not in str(e.value)
    assert "secret reference" in str(e.value)


def test_turning_validation_off_is_explicit_and_recorded(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="psbridge.remote.profile"):
        p = profile(cert_validation=False)
    assert "certificate validation is OFF" in caplog.text
    assert p.security_notes and "OFF" in p.security_notes[0]
    assert p.describe()["security_notes"] == p.security_notes
    assert p.wsman_kwargs(None)["cert_validation"] is False


def test_ca_bundle_is_passed_as_verify_path() -> None:
    p = profile(ca_bundle=Path("/tmp/ca.pem"))
    assert p.wsman_kwargs(None)["cert_validation"] == str(Path("/tmp/ca.pem"))


def test_describe_holds_the_reference_not_a_value() -> None:
    d = profile().describe()
    assert d["password"] == "env:CRM_PW"


def test_from_lab_json(tmp_path: Path) -> None:
    lab = {
        "servers": [
            {
                "name": "CRM01",
                "endpoints": [
                    {"scheme": "http", "host": "127.0.0.1", "port": 45985, "path": "/wsman"},
                    {"scheme": "https", "host": "127.0.0.1", "port": 45986, "path": "/wsman"},
                ],
            }
        ],
        "accounts": [{"name": "crmadmin", "user": "LAB\\crmadmin"}],
        "ca_bundle": str(tmp_path / "ca.pem"),
    }
    (tmp_path / "lab.json").write_text(json.dumps(lab))
    p = ConnectionProfile.from_lab(tmp_path, server="crm01")
    assert (p.scheme, p.port, p.auth, p.user, p.password) == ("http", 45985, "ntlm", "LAB\\crmadmin",
                                                            "lab:accounts/crmadmin")
    s = ConnectionProfile.from_lab(tmp_path / "lab.json", scheme="https")
    assert s.ca_bundle == tmp_path / "ca.pem" and s.server == "CRM01"
    with pytest.raises(ProfileError, match="no server"):
        ConnectionProfile.from_lab(lab, server="CRM09")
    with pytest.raises(ProfileError, match="no account"):
        ConnectionProfile.from_lab(lab, account="nobody")
    with pytest.raises(ProfileError, match="not running"):
        ConnectionProfile.from_lab({**lab, "ready": False, "state_dir": str(tmp_path)})
    with pytest.raises(ProfileError, match="no lab description"):
        ConnectionProfile.from_lab(tmp_path / "missing")
