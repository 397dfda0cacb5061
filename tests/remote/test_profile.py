"""Connection profiles: unsafe combinations are refused before any connection."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

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
        "accounts": [{"name": "crmadmin", "user": "LAB\\crmadmin", "password_ref": "lab:accounts/crmadmin"}],
        "ca_bundle": str(tmp_path / "ca.pem"), "state_dir": str(tmp_path), "ready": True,
        "service_account": "LAB\\CRMAsyncService", "tools_folder": "C:\\Tools",
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
    with pytest.raises(ProfileError, match="not a lab description"):
        ConnectionProfile.from_lab({"servers": lab["servers"]})
    with pytest.raises(ProfileError, match="no lab description"):
        ConnectionProfile.from_lab(tmp_path / "missing")


# --- the invariants hold by every route pydantic offers ------------------------------------------

PASSWORD = "Tr0ub4dor&3 'q' \\ $x"
BASE: dict[str, object] = {"host": "crm01.contoso.local", "user": "CONTOSO\\admin", "password": "env:CRM_PW"}
UNSAFE = [
    ({"scheme": "http", "auth": "basic"}, "clear text"),
    ({"scheme": "http", "auth": "credssp"}, "CredSSP"),
    ({"scheme": "http", "auth": "ntlm", "message_encryption": False}, "message encryption"),
    ({"password": PASSWORD}, "secret reference"),  # a password where its reference belongs
]


def _json(values: dict[str, object]) -> str:
    return json.dumps(values)


def _deprecated(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return call()
    return run


def _routes(changes: dict[str, object]) -> dict[str, Callable[[], object]]:
    """Every public way to get a ConnectionProfile holding ``changes`` (on top of a safe one)."""
    values = {**BASE, **changes}
    safe = ConnectionProfile(**BASE)
    as_strings = {k: str(v).lower() if isinstance(v, bool) else v for k, v in values.items()}
    return {
        "constructor": lambda: ConnectionProfile(**values),
        "model_validate": lambda: ConnectionProfile.model_validate(values),
        "model_validate from attributes": lambda: ConnectionProfile.model_validate(
            SimpleNamespace(**values), from_attributes=True),
        "model_validate_json": lambda: ConnectionProfile.model_validate_json(_json(values)),
        "model_validate_strings": lambda: ConnectionProfile.model_validate_strings(as_strings),
        "model_construct": lambda: ConnectionProfile.model_construct(**values),
        "model_construct with fields set": lambda: ConnectionProfile.model_construct(set(values), **values),
        "model_copy(update=)": lambda: safe.model_copy(update=changes),
        "model_copy(update=, deep=True)": lambda: safe.model_copy(update=changes, deep=True),
        "__replace__ (copy.replace)": lambda: safe.__replace__(**changes),
        "copy(update=) (deprecated)": _deprecated(lambda: safe.copy(update=changes)),
        "construct (deprecated)": _deprecated(lambda: ConnectionProfile.construct(**values)),
        "parse_obj (deprecated)": _deprecated(lambda: ConnectionProfile.parse_obj(values)),
        "parse_raw (deprecated)": _deprecated(lambda: ConnectionProfile.parse_raw(_json(values))),
        "validate (deprecated)": _deprecated(lambda: ConnectionProfile.validate(values)),
        "unpickling": lambda: pickle.loads(pickle.dumps(_altered(safe, changes))),  # noqa: S301 - our own bytes
        "model_validate of an altered instance": lambda: ConnectionProfile.model_validate(
            _altered(safe, changes)),
    }


def _altered(profile: ConnectionProfile, changes: dict[str, object]) -> ConnectionProfile:
    """A profile changed behind pydantic's back (what no route may then accept)."""
    altered = copy.copy(profile)
    object.__setattr__(altered, "__dict__", {**altered.__dict__, **changes})
    return altered


@pytest.mark.parametrize(("changes", "words"), UNSAFE, ids=["basic-http", "credssp-http", "unencrypted-http",
                                                            "password-value"])
@pytest.mark.parametrize("route", sorted(_routes({})))
def test_no_route_makes_an_unsafe_profile(route: str, changes: dict[str, object], words: str) -> None:
    make = _routes(changes)[route]
    with pytest.raises(ProfileError, match=words) as e:
        make()
    assert PASSWORD not in str(e.value) and "Tr0ub4dor" not in repr(e.value)
    # Nothing chained either: pydantic's ValidationError holds the input, password included.
    assert e.value.__cause__ is None and e.value.__context__ is None


@pytest.mark.parametrize("route", sorted(_routes({})))
def test_every_route_still_makes_a_safe_profile(route: str) -> None:
    made = _routes({"scheme": "http", "auth": "ntlm"})[route]()
    assert isinstance(made, ConnectionProfile)
    assert (made.scheme, made.auth, made.message_encryption) == ("http", "ntlm", True)
    assert made.password == "env:CRM_PW"


def test_a_copy_keeps_which_fields_were_given_and_checks_unknown_ones() -> None:
    p = ConnectionProfile(**BASE)
    assert p.model_copy(update={"port": 5990}).model_fields_set == {"host", "user", "password", "port"}
    assert ConnectionProfile.model_construct({"host"}, **BASE).model_fields_set == {"host"}
    with pytest.raises(ProfileError, match="nope: Extra inputs are not permitted"):
        p.model_copy(update={"nope": 1})
    with pytest.raises(ProfileError, match="port"):
        p.model_copy(update={"port": 0})


def test_a_profile_cannot_be_changed_in_place_and_the_refusal_repeats_no_value() -> None:
    p = ConnectionProfile(**BASE)
    with pytest.raises(ProfileError, match="cannot be changed") as e:
        p.password = PASSWORD  # type: ignore[misc]
    assert PASSWORD not in str(e.value)
    with pytest.raises(ProfileError, match="cannot be changed"):
        del p.scheme
    assert p.password == "env:CRM_PW" and p.scheme == "https"


def test_inputs_that_are_no_profile_at_all_are_profile_errors() -> None:
    with pytest.raises(ProfileError, match="valid dictionary"):
        ConnectionProfile.model_validate(None)
    with pytest.raises(ProfileError, match="Invalid JSON"):
        ConnectionProfile.model_validate_json("{" + PASSWORD)
    with pytest.raises(ProfileError, match="port") as e:
        ConnectionProfile.model_validate({**BASE, "port": "not a port " + PASSWORD})
    assert PASSWORD not in str(e.value)


def test_as_a_field_or_through_a_type_adapter_the_same_checks_run() -> None:
    # There pydantic's contract holds: the outer validation raises its ValidationError,
    # carrying this class's words; the input stays out of it for the TypeAdapter.
    adapter = TypeAdapter(ConnectionProfile)
    with pytest.raises(ValidationError, match="clear text") as e:
        adapter.validate_python({**BASE, "scheme": "http", "auth": "basic", "user": PASSWORD})
    assert PASSWORD not in str(e.value)
    with pytest.raises(ValidationError, match="clear text"):
        adapter.validate_python(_altered(ConnectionProfile(**BASE), {"scheme": "http", "auth": "basic"}))

    class Holder(BaseModel):
        profile: ConnectionProfile

    with pytest.raises(ValidationError, match="CredSSP"):
        Holder(profile={**BASE, "scheme": "http", "auth": "credssp"})  # type: ignore[arg-type]
    assert Holder(profile=ConnectionProfile(**BASE)).profile.scheme == "https"


def test_validation_off_is_logged_by_every_route(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="psbridge.remote.profile"):
        ConnectionProfile.model_validate_json(_json({**BASE, "cert_validation": False}))
    assert "certificate validation is OFF" in caplog.text
