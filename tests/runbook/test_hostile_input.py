"""Hostile input: every parameter, given every value that has broken a tool like this one.

Each value is either refused before anything runs — exit code 2, every problem listed, no
traceback, no record made, the lab's world byte-identical — or, where the parameter is free text
(an app's display name, the reason for replacing a certificate), carried verbatim to where it
belongs: the display name arrives in Entra ID exactly as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import labproc
import pytest
import yaml
from typer.testing import CliRunner

from psbridge.cli import app
from psbridge.lab.orchestrator import Lab
from psbridge.runbook import definition, registry
from psbridge.runbook.params import ParamsError, validate
from psbridge.runbook.runner import RunError, Runner

ROOT = Path(__file__).resolve().parents[2]
BOOK = registry.load("exchange-online-s2s")

HOSTILE = {
    "quotes": "a'b\"c",
    "semicolon": "a;b",
    "subexpression": "$(Remove-Item C:\\ -Recurse)",
    "backticks": "a`nb`0c",
    "newline": "a\nb",
    "NUL": "a\x00b",
    "RLO": "abc\u202etxt.exe",
    "300 characters": "a" * 300,
    "windows traversal": "..\\..\\Windows\\System32",
    "posix traversal": "../../etc/passwd",
}
# Free text, where any of these may stand (quoted by whoever uses it, never parsed) — and the
# mailbox query, which is an OData filter the consultant writes and the server parses.
FREE_TEXT = {"app_name", "replace_certificate", "profile_name", "exchange_allow_list", "mailbox_filter"}


def _base(lab: Lab) -> dict[str, Any]:
    return {"customer": "hostile", "organization": "contoso", "lab": str(lab.state_dir),
            "pfx_password": "lab:hostile/contoso/pfx-password",
            "client_secret": "lab:hostile/contoso/client-secret"}


def _given(spec: definition.ParameterSpec, value: str) -> Any:
    return [value] if spec.type == "list" else value


def test_every_parameter_refuses_what_the_far_side_would_not_take(lab: Lab, tmp_path: Path) -> None:
    before = labproc.world(lab.state_dir)
    records = tmp_path / "records"
    accepted = []
    for name, spec in BOOK.parameters.items():
        for label, value in HOSTILE.items():
            given = {**_base(lab), name: _given(spec, value)}
            try:
                validate(BOOK, given)
            except ParamsError:
                pass
            else:
                accepted.append((name, label))
                continue
            path = tmp_path / "p.yaml"
            path.write_text(yaml.safe_dump(given, allow_unicode=True), encoding="utf-8")
            result = CliRunner().invoke(app, ["plan", str(path), "--records", str(records)],
                                        env={"COLUMNS": "200"})
            said = result.output
            assert result.exit_code == 2, (name, label, said)
            assert "problem(s)" in said and name in said, (name, label, said)
            assert "Traceback" not in said, (name, label, said)
            assert result.exception is None or isinstance(result.exception, SystemExit), (name, label)
            # Control characters reach the terminal escaped, never raw.
            assert "\x00" not in said and "\u202e" not in said, (name, label)
            if spec.secret:
                assert value not in said, (name, label)  # a value given for a secret may be the secret
    assert {n for n, _ in accepted} <= FREE_TEXT, accepted
    assert not records.exists()  # nothing ran, no record folder was made
    assert labproc.world(lab.state_dir) == before


def test_no_record_can_land_outside_the_records_root(tmp_path: Path) -> None:
    book = BOOK
    for customer, org in (("..", "contoso"), ("c", "../../x"), ("c/../..", "o"), ("c", "o\\..\\..")):
        with pytest.raises(ParamsError):
            validate(book, {"customer": customer, "organization": org, "pfx_password": "lab:a/b",
                            "client_secret": "lab:a/c"})
    # Even past the schema (a caller building parameters by hand), the runner refuses.
    params = {"customer": "..", "organization": "..", "pfx_password": "lab:a/b", "client_secret": "lab:a/c"}
    with pytest.raises(RunError, match="outside"):
        Runner(book, {**{k: s.default for k, s in book.parameters.items()}, **params},
               records_root=tmp_path / "records")
    assert not any((tmp_path).glob("*/manifest.json"))


def test_free_text_arrives_verbatim(fresh_lab: Lab, tmp_path: Path) -> None:
    kinds = ("quotes", "semicolon", "subexpression", "backticks", "windows traversal", "posix traversal")
    name = "psbridge " + "".join(HOSTILE[k] for k in kinds)
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(tmp_path / "msal")
    try:
        params = validate(BOOK, {**_base(fresh_lab), "app_name": name})
        result = Runner(BOOK, params, records_root=tmp_path / "records").run(until="entra-app")
    finally:
        os.environ.pop("PSBRIDGE_TOKEN_CACHE", None)
    assert result.ok, result.table().to_string()
    apps = [a["displayName"] for a in labproc.read_directory(fresh_lab.state_dir)["applications"]]
    assert apps == [name]
    assert result.record_dir.resolve().is_relative_to((tmp_path / "records").resolve())
