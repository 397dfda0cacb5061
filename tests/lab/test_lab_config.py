"""lab.json's model, and the CLI's answers when there is no lab to start or to talk to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from psbridge import secrets
from psbridge.files import claim
from psbridge.lab import background
from psbridge.lab.cli import app
from psbridge.lab.config import LabConfig, LabConfigError
from psbridge.lab.orchestrator import LabError

PASSWORD = "Lab-Pa55 'quoted' $(x)"


def described(tmp_path: Path) -> LabConfig:
    return LabConfig.model_validate({
        "version": 1, "state_dir": str(tmp_path), "ready": True, "pid": 4242, "ca_bundle": "ca/ca.pem",
        "accounts": [{"name": "crmadmin", "user": "LAB\\crmadmin", "password": PASSWORD,
                      "password_ref": "lab:accounts/crmadmin", "roles": ["LocalAdministrator"]}],
        "service_account": "LAB\\CRMAsyncService", "tools_folder": "C:\\Tools",
        "servers": [{"name": "CRM01", "roles": ["Deployment Tools"], "script_generation": "current",
                     "endpoints": [{"scheme": "http", "host": "::1", "port": 5985, "path": "/wsman"}]}],
        "organizations": [{"name": "contoso", "friendly_name": "Contoso",
                           "id": "0f0e0d0c-0000-4000-8000-000000000001"}],
        "future_field": {"kept": True},
    })


def test_round_trip_lookups_and_no_password_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = described(tmp_path)
    monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(tmp_path))
    secrets.store("lab:accounts/crmadmin", PASSWORD)
    monkeypatch.delenv("PSBRIDGE_LAB_STATE")
    path = config.save()
    # A password of an older lab.json is dropped on load and never written again.
    assert PASSWORD not in path.read_text(encoding="utf-8")
    assert path == tmp_path / "lab.json" and not list(tmp_path.glob("*.tmp"))
    loaded = LabConfig.load(tmp_path)
    assert loaded == config == LabConfig.load(path)
    assert loaded.model_dump()["future_field"] == {"kept": True}  # a newer writer's fields survive
    assert loaded.endpoint("crm01", "HTTP").url == "http://[::1]:5985/wsman"
    assert loaded.password("LAB\\CRMADMIN").reveal() == PASSWORD  # from this lab's store, wherever we are
    assert loaded.organization("0F0E0D0C-0000-4000-8000-000000000001").name == "contoso"
    for text in (repr(loaded), str(loaded), repr(loaded.accounts[0]), str(loaded.accounts[0])):
        assert PASSWORD not in text
    with pytest.raises(LabConfigError, match="no https endpoint"):
        loaded.endpoint("CRM01", "https")
    with pytest.raises(LabConfigError, match=r"no account 'root' \(accounts: crmadmin\)"):
        loaded.account("root")
    with pytest.raises(LabConfigError, match="no organization 'tailspin'"):
        loaded.organization("tailspin")


def test_load_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(LabConfigError, match="psbridge lab up"):
        LabConfig.load(tmp_path)
    (tmp_path / "lab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LabConfigError, match="is not a lab description"):
        LabConfig.load(tmp_path)
    (tmp_path / "lab.json").write_text(json.dumps({"version": 7}), encoding="utf-8")
    with pytest.raises(LabConfigError, match="version 7"):
        LabConfig.load(tmp_path / "lab.json")


def cli(*args: str) -> tuple[int, str]:
    # `serve` points PSBRIDGE_LAB_STATE at its state dir: the runner puts the old value back.
    env = {"COLUMNS": "200", "PSBRIDGE_LAB_STATE": os.environ.get("PSBRIDGE_LAB_STATE")}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_up_refuses_a_shape_it_cannot_build(tmp_path: Path) -> None:
    code, out = cli("up", "--state", str(tmp_path), "--servers", "1", "--legacy-servers", "2")
    assert code == 2 and "--legacy-servers cannot exceed --servers" in out
    assert not (tmp_path / "lab.json").exists()


def test_up_reports_a_lab_process_that_fails_to_start(tmp_path: Path) -> None:
    (tmp_path / "world.json").write_text("{broken", encoding="utf-8")
    code, out = cli("up", "--state", str(tmp_path), "--timeout", "120")
    assert code == 1
    assert "exited with code 1 before it was ready" in out and "is not a lab world" in out
    assert not (tmp_path / "lab.json").exists()


def test_down_and_fault_without_a_lab(tmp_path: Path) -> None:
    code, out = cli("down", "--state", str(tmp_path))
    assert code == 0 and "no lab is running" in out
    code, out = cli("fault", "CRM01", "--state", str(tmp_path), "--deny-auth")
    assert code == 1 and "no lab world at" in out and "psbridge lab up" in out


def test_a_second_lab_process_for_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    held = claim(tmp_path / "lab.lock")  # as the serving process holds it, with its pid beside
    (tmp_path / "lab.pid").write_text(str(os.getpid()), encoding="ascii")
    try:
        code, out = cli("serve", "--state", str(tmp_path))
    finally:
        held.release()
    assert code == 1 and f"already running for {tmp_path.resolve()} (pid {os.getpid()})" in out
    assert not (tmp_path / "lab.json").exists()


def test_a_lab_pid_file_without_the_lock_claims_nothing(tmp_path: Path) -> None:
    # What a killed server leaves: its pid (here a live one) but no lock, which died with it.
    (tmp_path / "lab.pid").write_text(str(os.getpid()), encoding="ascii")
    (tmp_path / "lab.lock").write_text(str(os.getpid()), encoding="ascii")
    claimed = background._claim(tmp_path)
    try:
        assert (tmp_path / "lab.pid").read_text(encoding="ascii") == str(os.getpid())
        with pytest.raises(LabError, match=f"already running for .* \\(pid {os.getpid()}\\)"):
            background._claim(tmp_path)  # a second claim fails in the holding process too
    finally:
        claimed.close()
    assert not (tmp_path / "lab.pid").exists()
