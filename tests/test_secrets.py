"""Secret references: parsing, resolution, storage, masking, redaction."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from psbridge import secrets
from psbridge.secretforms import forms
from psbridge.secrets import MASK, Secret, SecretError, SecretRef

CANARY = "canary-7f3e9c1a-not-for-output"


def test_parse_known_schemes() -> None:
    assert SecretRef.parse("env:PFX_PASSWORD") == SecretRef("env", "PFX_PASSWORD")
    assert str(SecretRef.parse("keyring:psbridge/contoso-app")) == "keyring:psbridge/contoso-app"
    assert SecretRef.parse("lab:accounts/crmadmin").locator == "accounts/crmadmin"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("plaintext-password-hunter2", "not a secret reference"),
        ("vault:x-hunter2", "scheme is none of env:, file:, keyring:, lab:"),
        ("env:1BAD-hunter2", "names an environment variable"),
        ("keyring:noslash-hunter2", "keyring:SERVICE/NAME"),
        ("lab:has space-hunter2", "letters, digits"),
    ],
)
def test_parse_errors_name_the_problem_not_the_value(text: str, fragment: str) -> None:
    # What was written may be the secret itself, scheme-like prefix included: none of it is repeated.
    with pytest.raises(SecretError) as e:
        SecretRef.parse(text)
    assert fragment in str(e.value)
    for part in filter(None, (text, text.partition(":")[2], "hunter2", "vault")):
        assert part not in str(e.value)


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


HOSTILE = "Pa'ss\"wo\\rd $(x) `y` é€\u202e\x00;\nend"


def _leaks() -> list[tuple[str, str]]:
    """``HOSTILE`` as each way of writing text out would carry it (name, text)."""
    import base64
    import html
    import json
    import urllib.parse

    import nbformat
    import pandas as pd

    v = HOSTILE
    frame = pd.DataFrame([{"password": v}])
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": frame.to_html(), "text/plain": repr(frame)})]))
    return [
        ("raw", f"said {v} there"),
        ("repr", repr(f"in a longer {v} string")),
        ("repr of a dict", repr({"k": v, "other": "it's"})),
        ("str of a list", str([v])),
        ("json", json.dumps({"v": v})),
        ("json ascii-only off", json.dumps({"v": v}, ensure_ascii=False)),
        ("html", f"<td>{html.escape(v)}</td>"),
        ("DataFrame html in a notebook file", nbformat.writes(nb)),
        ("url", "https://x/?p=" + urllib.parse.quote(v, safe="")),
        ("url form", "p=" + urllib.parse.quote_plus(v)),
        ("utf-16le as text", v.encode("utf-16-le").decode("latin-1")),
        ("hex", v.encode().hex()),
        ("HEX utf-16", v.encode("utf-16-le").hex().upper()),
        ("base64 aligned", base64.b64encode(v.encode()).decode()),
        ("base64 inside more", base64.b64encode(b"xy" + v.encode() + b"tail").decode()),
        ("base64 of utf-16 inside more",
         base64.b64encode(("a" + v + "bc").encode("utf-16-le")).decode()),
    ]


@pytest.mark.parametrize(("how", "text"), _leaks(), ids=[n for n, _ in _leaks()])
def test_redact_covers_the_forms_a_value_takes(how: str, text: str) -> None:
    import base64

    secrets.remember([HOSTILE])
    clean = secrets.redact(text)
    assert MASK in clean, how
    # Nothing recognisable is left: no long piece of the value, in any of its forms.
    for form in forms(HOSTILE):
        assert form not in clean, (how, form)
    for piece in ("wo\\rd", "$(x) `y`", "é€"):
        assert piece not in clean
    if how.startswith("base64"):
        assert base64.b64encode(HOSTILE.encode()).decode()[4:20] not in clean


def test_redact_leaves_other_text_alone() -> None:
    secrets.remember(["s3cr3t-value-1"])
    text = "thumbprint 811BD1CEFB2ACDFF49F64E2EF738AF34F6FE5278, app psbridge (contoso), lab:demo/x"
    assert secrets.redact(text) == text


def test_is_reference() -> None:
    assert secrets.is_reference("env:A")
    assert not secrets.is_reference("hunter2")
    assert not secrets.is_reference(42)
