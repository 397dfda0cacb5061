"""Secret references: parsing, resolution, storage, masking, redaction."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from psbridge import secrets
from psbridge.secrets import MASK, Secret, SecretError, SecretRef

CANARY = "canary-7f3e9c1a-not-for-output"


def test_parse_known_schemes() -> None:
    assert SecretRef.parse("env:PFX_PASSWORD") == SecretRef("env", "PFX_PASSWORD")
    assert str(SecretRef.parse("keyring:psbridge/contoso-app")) == "keyring:psbridge/contoso-app"
    assert SecretRef.parse("lab:accounts/crmadmin").locator == "accounts/crmadmin"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("plaintext-password", "not a secret reference"),
        ("vault:x", "unknown secret scheme 'vault:'"),
        ("env:1BAD", "not a valid environment variable name"),
        ("keyring:noslash", "keyring:SERVICE/NAME"),
        ("lab:has space", "letters, digits"),
    ],
)
def test_parse_errors_name_the_problem_not_the_value(text: str, fragment: str) -> None:
    with pytest.raises(SecretError) as e:
        SecretRef.parse(text)
    assert fragment in str(e.value)
    if text == "plaintext-password":
        assert "plaintext-password" not in str(e.value)


def test_secret_text_forms_are_masked() -> None:
    s = Secret(CANARY, "env:X")
    for text in (str(s), repr(s), f"{s}", f"{s!r}", s._repr_html_(), "%s" % s):  # noqa: UP031
        assert CANARY not in text
        assert MASK in text
    assert s.reveal() == CANARY
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_env_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSB_TEST_SECRET", CANARY)
    assert secrets.resolve("env:PSB_TEST_SECRET").reveal() == CANARY
    monkeypatch.delenv("PSB_TEST_SECRET")
    with pytest.raises(SecretError, match="PSB_TEST_SECRET is not set"):
        secrets.resolve("env:PSB_TEST_SECRET")
    with pytest.raises(SecretError, match="cannot be written"):
        secrets.store("env:PSB_TEST_SECRET", "x")


def test_file_store_round_trip(tmp_path: Path) -> None:
    ref = f"file:{tmp_path / 'sub' / 'pfx-password'}"
    secrets.store(ref, CANARY)
    assert secrets.resolve(ref).reveal() == CANARY
    secrets.delete(ref)
    with pytest.raises(SecretError, match="not found"):
        secrets.resolve(ref)


def test_lab_store_follows_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(tmp_path))
    secrets.store("lab:apps/contoso", CANARY)
    assert (tmp_path / "secrets.json").exists()
    assert secrets.resolve("lab:apps/contoso") == Secret(CANARY)
    secrets.delete("lab:apps/contoso")
    with pytest.raises(SecretError, match="no secret 'lab:apps/contoso'"):
        secrets.resolve("lab:apps/contoso")


def test_redact_scrubs_every_value_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSB_TEST_SECRET", CANARY)
    secrets.resolve("env:PSB_TEST_SECRET")
    text = f"Traceback: login failed for password={CANARY}!"
    assert secrets.redact(text) == f"Traceback: login failed for password={MASK}!"


def test_is_reference() -> None:
    assert secrets.is_reference("env:A")
    assert not secrets.is_reference("hunter2")
    assert not secrets.is_reference(42)
