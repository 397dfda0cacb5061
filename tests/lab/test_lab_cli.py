"""``psbridge lab up|down|status|fault`` in a subprocess, with a lab serving in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan
from typer.testing import CliRunner

from psbridge.lab.background import pid_alive
from psbridge.lab.cli import app
from psbridge.lab.config import LabConfig
from psbridge.remote.session import new_wsman

TENANT = "5e0c8a7b-3d2f-4b1a-8e9c-7a6b5c4d3e2f"
TIMEOUT = 120
OUTPUTS: list[str] = []  # everything the commands printed, for the canary at the end


def psbridge_lab(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PSBRIDGE_LAB_STATE"}
    env["COLUMNS"] = "200"
    done = subprocess.run([sys.executable, "-m", "psbridge.lab", *args, "--state", str(state)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)
    OUTPUTS.extend((done.stdout, done.stderr))
    return done


def in_process(state: Path, *args: str) -> tuple[int, str]:
    """The same commands in this process, talking to the lab serving in the background."""
    result = CliRunner().invoke(app, [*args, "--state", str(state)], env={"COLUMNS": "200"})
    OUTPUTS.append(result.output)
    return result.exit_code, result.output


def wsman(config: LabConfig, server: str = "CRM01") -> WSMan:
    ep, admin = config.endpoint(server, "http"), config.account("crmadmin")
    return new_wsman(ep.host, port=ep.port, path="wsman", ssl=False, auth="ntlm", encryption="always",
                     username=admin.user, password=config.password("crmadmin").reveal())


def run(pool: RunspacePool, cmdlet: str, **params: str) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell").add_statement()
    ps.add_cmdlet(cmdlet)
    for k, v in params.items():
        ps.add_parameter(k, v)
    ps.invoke()
    return ps


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("cli-lab")
    up = psbridge_lab(where, "up", "--servers", "2", "--orgs", "2", "--legacy-servers", "1")
    assert up.returncode == 0, up.stdout + up.stderr
    yield where
    psbridge_lab(where, "down")


def test_up_writes_lab_json_and_serves_in_the_background(state: Path) -> None:
    raw = json.loads((state / "lab.json").read_text(encoding="utf-8"))
    assert raw["ready"] is True and raw["version"] == 1 and raw["domain"] == "LAB"
    assert raw["pid"] != os.getpid() and pid_alive(raw["pid"])
    assert raw["state_dir"] == str(state.resolve())
    assert raw["tools_folder"] == "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
    generations = [(s["name"], s["script_generation"]) for s in raw["servers"]]
    assert generations == [("CRM01", "current"), ("CRM02", "legacy")]
    for server in raw["servers"]:
        assert sorted(e["scheme"] for e in server["endpoints"]) == ["http", "https"]
        for e in server["endpoints"]:
            assert e["host"] == "127.0.0.1" and e["path"] == "/wsman" and e["port"] > 0
    secrets_json = json.loads((state / "secrets.json").read_text(encoding="utf-8"))
    for account in raw["accounts"]:
        assert account["user"] == f"LAB\\{account['name']}"
        assert "password" not in account  # only its reference: lab.json holds no secret value
        assert len(secrets_json[account["password_ref"].removeprefix("lab:")]) >= 16
    assert [o["name"] for o in raw["organizations"]] == ["contoso", "fabrikam"]
    assert Path(raw["ca_bundle"]).is_file() and raw["entra"]["login_url"].startswith("https://127.0.0.1:")
    with RunspacePool(wsman(LabConfig.model_validate(raw), "CRM02")) as pool:
        ps = run(pool, "Get-CrmOrganization")
        assert ps.state == PSInvocationState.COMPLETED
        assert [o.adapted_properties["UniqueName"] for o in ps.output] == ["contoso", "fabrikam"]


def test_up_again_says_it_is_already_running(state: Path) -> None:
    pid = LabConfig.load(state).pid
    again = psbridge_lab(state, "up")
    assert again.returncode == 0
    assert f"already running for {state.resolve()} (pid {pid})" in again.stdout
    assert LabConfig.load(state).pid == pid


def test_fault_from_the_cli_reaches_the_running_server(state: Path) -> None:
    config = LabConfig.load(state)
    set_ = psbridge_lab(state, "fault", "crm01", "--fail-command",
                        "Get-CrmOrganization=SQL Server is unavailable")
    assert set_.returncode == 0 and "get-crmorganization fails: SQL Server is unavailable" in set_.stdout
    assert in_process(state, "fault", "CRM01", "--delay", "0")[0] == 0  # a knob at its default merges away
    with RunspacePool(wsman(config)) as pool:
        ps = run(pool, "Get-CrmOrganization")
        assert ps.had_errors and "SQL Server is unavailable" in str(ps.streams.error[0])
        code, status = in_process(state, "status")
        assert code == 0 and "SQL Server is unavailable" in status
        code, cleared = in_process(state, "fault", "CRM01", "--clear")
        assert code == 0 and "CRM01: no faults" in cleared
        assert run(pool, "Get-CrmOrganization").state == PSInvocationState.COMPLETED
    code, unknown = in_process(state, "fault", "CRM09", "--deny-auth")
    assert code == 2 and "servers: CRM01, CRM02" in unknown
    code, bad = in_process(state, "fault", "CRM01", "--fail-command", "no-equals-sign")
    assert code == 2 and "NAME=MESSAGE" in bad


def test_status_prints_the_world_as_tables(state: Path) -> None:
    out = psbridge_lab(state, "status")
    assert out.returncode == 0, out.stderr
    pid = LabConfig.load(state).pid
    assert f"running (pid {pid})" in out.stdout
    assert LabConfig.load(state).endpoint("CRM02", "https").url in out.stdout
    for title in ("servers", "organizations", "configuration-database", "certificate-stores",
                  "crm-certificates", "entra app registrations", "faults"):
        assert title in out.stdout
    assert "S2SDefaultAuthorizationServerPrincipalId" in out.stdout and "fabrikam" in out.stdout


def test_down_then_up_keeps_world_and_passwords(state: Path) -> None:
    # Runs last in this module: it restarts the module's lab.
    before = LabConfig.load(state)
    with RunspacePool(wsman(before)) as pool:
        org_id = str(run(pool, "Get-CrmOrganization", Name="contoso").output[0].adapted_properties["Id"])
        assert run(pool, "Set-CrmAdvancedSetting", ID=org_id, configurationEntityName="Organization",
                   setting="S2STenantId", value=TENANT).state == PSInvocationState.COMPLETED
    down = psbridge_lab(state, "down")
    assert down.returncode == 0 and f"lab stopped (pid {before.pid})" in down.stdout
    assert before.pid is not None and not pid_alive(before.pid)
    assert LabConfig.load(state).ready is False
    assert "not running" in in_process(state, "status")[1]
    assert "no lab is running" in in_process(state, "down")[1]
    up = psbridge_lab(state, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "already held a world, kept as it is: 2 servers (1 legacy), 2 organizations" in up.stdout
    after = LabConfig.load(state)
    assert after.ready and after.pid != before.pid
    # A new process, the same URLs: the ports of the last run are taken again when free.
    urls = [[e.url for s in c.servers for e in s.endpoints] for c in (before, after)]
    assert urls[0] == urls[1]
    assert after.entra == before.entra
    assert [after.password(a.name) for a in after.accounts] == \
        [before.password(a.name) for a in before.accounts]
    # The world's generations, not the (default) flags of the second `up`.
    assert [s.script_generation for s in after.servers] == ["current", "legacy"]
    with RunspacePool(wsman(after, "CRM02")) as pool:
        ps = run(pool, "Get-CrmAdvancedSetting", ID=org_id, configurationEntityName="Organization",
                 setting="S2STenantId")
        assert TENANT in str(ps.output)


def test_status_of_a_state_dir_without_a_lab(tmp_path: Path) -> None:
    code, out = in_process(tmp_path, "status")
    assert code == 1 and "psbridge lab up" in out


def test_no_password_in_anything_the_commands_printed_or_logged(state: Path) -> None:
    config = LabConfig.load(state)
    passwords = [config.password(a.name).reveal() for a in config.accounts]
    assert passwords and all(len(p) >= 16 for p in passwords)
    assert OUTPUTS and any("lab:accounts/crmadmin" in out for out in OUTPUTS)
    for text in [*OUTPUTS, (state / "lab.log").read_text(encoding="utf-8")]:
        for password in passwords:
            assert password not in text
