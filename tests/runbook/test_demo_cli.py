"""``psbridge demo``, the README's main command: lab up, whole runbook, a verified record; run again, it
says it reuses the lab."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psbridge import evidence
from psbridge.cli import app


def test_demo_reaches_a_verified_record(lab_keys: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "lab"
    for key in lab_keys.rglob("*.pem"):  # the session's keys: no new RSA keys to make
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    # demo points these at its lab; monkeypatch puts them back for the tests after this one.
    monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(state))
    monkeypatch.setenv("PSBRIDGE_TOKEN_CACHE", str(tmp_path / "msal"))
    result = CliRunner().invoke(app, ["demo", "--state", str(state), "--records", str(tmp_path / "records")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Lab up: CRM servers CRM01, CRM02" in text and "Verified: every file matches manifest.json" in text
    records = list((tmp_path / "records" / "demo" / "contoso").iterdir())
    assert len(records) == 1 and evidence.verify(records[0]) == []
    assert evidence.read_manifest(records[0])["status"] == "complete"
    assert "ready" in (state / "lab.json").read_text(encoding="utf-8")
    assert "Reusing the lab" not in text and (records[0] / "index.html").exists()

    # Again on the same state: the demo says it reuses that lab, and every step finds its work done.
    again = CliRunner().invoke(app, ["demo", "--state", str(state), "--records", str(tmp_path / "records")],
                               env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    said = " ".join(again.output.split())
    assert "Reusing the lab an earlier demo left in" in said and "psbridge demo --fresh" in said, said
    assert said.count("already done: nothing changed") >= 3, said
