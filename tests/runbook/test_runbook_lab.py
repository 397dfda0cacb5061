"""The whole runbook against the lab, over the wire: plan, demo run, canary, re-run, plain papermill,
a failing step and its resume, verify.

One lab for this module (its own state directory), used in order: the plan runs on the untouched
world, then the full run, then everything that needs a completed run.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from labproc import world
from typer.testing import CliRunner

from psbridge import evidence
from psbridge import secrets as sec
from psbridge.cli import app
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.kernel import KERNEL_NAME
from psbridge.runbook.runner import Runner, RunResult
from psbridge.runbook.steps.install import certificate_state

ROOT = Path(__file__).resolve().parents[2]
BOOK = registry.load("exchange-online-s2s")
ORG = "contoso"


@pytest.fixture(scope="module")
def lab_env(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A lab of this module's own (it changes the world), keys copied from the session's."""
    from psbridge.runbook import demolab

    root = tmp_path_factory.mktemp("runbook-lab")
    state = root / "lab"
    for key in lab_keys.rglob("*.pem"):
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    saved = {k: os.environ.get(k) for k in ("PSBRIDGE_LAB_STATE", "PSBRIDGE_TOKEN_CACHE")}
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
    lab = demolab.start(state)
    try:
        yield {"lab": lab, "state": state, "records": root / "records", "root": root, "runs": {}}
    finally:
        lab.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def params(env: dict[str, Any]) -> dict[str, Any]:
    return demo_parameters(BOOK, env["state"], ORG)


def p_app(env: dict[str, Any]) -> str:
    return str(params(env)["app_name"])


def directory(env: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(env["state"].rglob("entra.json")).read_text(encoding="utf-8"))
    return data


def run(env: dict[str, Any], mode: str = "apply", **kw: Any) -> RunResult:
    return Runner(BOOK, params(env), records_root=env["records"], mode=mode).run(**kw)


def test_plan_says_what_would_change_and_changes_nothing(lab_env: dict[str, Any]) -> None:
    before = world(lab_env["state"])
    result = run(lab_env, mode="plan")
    assert result.ok, result.table().to_string()
    planned = {s.step.id: s.changes for s in result.steps}
    assert planned["certificate"] and planned["certificate"][0].startswith("generate a self-signed")
    assert any("install the certificate on" in c for c in planned["install-certificate"] or [])
    assert planned["entra-app"] and "create app registration" in planned["entra-app"][0]
    assert planned["configure-s2s"] and "ConfigureCrmServerSideSync.ps1" in planned["configure-s2s"][0]
    assert planned["configure-s2s"][1] == (f"remove from {p_app(lab_env)!r}: the client secret and consent "
                                           "step 3 adds")
    assert world(lab_env["state"]) == before
    assert evidence.read_manifest(result.record_dir)["mode"] == "plan"


def test_demo_run_reaches_a_verified_record_and_no_secret_is_written(
        lab_env: dict[str, Any], capfd: pytest.CaptureFixture[str]) -> None:
    p = params(lab_env)
    canary = f"canary-pfx-{pysecrets.token_hex(8)}"
    sec.store(p["pfx_password"], canary)
    # In two parts (--to, then --from), to read the client secret the twin issued before step 4's
    # teardown deletes it: it is a canary too.
    part = Runner(BOOK, p, records_root=lab_env["records"]).run(until="entra-app")
    assert part.ok, part.table().to_string()
    steps = len(BOOK.steps)
    assert [s.status for s in part.steps] == ["succeeded"] * 4 + ["not run"] * (steps - 4)
    client_secret = sec.resolve(p["client_secret"]).reveal()
    result = Runner(BOOK, p, records_root=lab_env["records"]).run(start="configure-s2s")
    lab_env["runs"]["first"] = result
    assert result.ok, result.table().to_string()
    assert [s.status for s in result.steps] == ["carried"] * 4 + ["succeeded"] * (steps - 4)
    for done in (part, result):
        assert evidence.verify(done.record_dir) == []
    facts = result.facts
    assert len(facts["thumbprint"]) == 40 and facts["s2s_configured"] is True
    assert facts["client_secret_ref"] == p["client_secret"]
    assert facts["s2s_tenant_id"] == facts["tenant_id"]
    names = sorted(x.name for x in result.record_dir.iterdir() if x.name != "kernels.log")
    assert names == sorted(["journal.jsonl", "manifest.json", "run.log", "index.html"]
                           + [f"{s.stem}.{ext}" for s in BOOK.steps[4:] for ext in ("ipynb", "html")])

    # Teardown: S2S works without the setup access, so the secret (stored value too) and consent went.
    assert facts["setup_access_left"] == []
    assert any(c.startswith("removed client secret ") for c in result.steps[4].changes)
    assert f"deleted the stored client secret at {p['client_secret']}" in result.steps[4].changes
    tenant = directory(lab_env)
    app = next(a for a in tenant["applications"] if a["displayName"] == p["app_name"])
    sp = next(x for x in tenant["servicePrincipals"] if x["appId"] == app["appId"])
    assert app["passwordCredentials"] == []
    assert [a for a in tenant["appRoleAssignments"] if a["principalId"] == sp["id"]] == []
    assert [g for g in tenant["oauth2PermissionGrants"] if g["clientId"] == sp["id"]] == []
    with pytest.raises(sec.SecretError):
        sec.resolve(p["client_secret"])
    # The world, read again over the wire: every server holds the certificate, CRM trusts it.
    with Deployment.from_params(ORG, lab=str(lab_env["state"])) as dep:
        assert certificate_state(dep, facts["thumbprint"]).complete
        assert facts["installed_on"] == dep.servers and len(dep.servers) >= 2

    # Canary: the PFX password, the client secret the twin issued, the lab admin's password.
    values = [canary, client_secret, sec.resolve("lab:accounts/crmadmin").reveal()]
    assert all(len(v) >= 8 for v in values)
    out, err = capfd.readouterr()
    haystacks = {"stdout": out.encode(), "stderr": err.encode()}
    for f in lab_env["records"].rglob("*"):
        if f.is_file():
            haystacks[str(f)] = f.read_bytes()
    for where, data in haystacks.items():
        for v in values:
            assert v.encode() not in data, f"a secret value is in {where}"
    manifest = evidence.read_manifest(result.record_dir)
    assert manifest["parameters"]["pfx_password"] == p["pfx_password"]
    assert set(manifest["secret_parameters"]) == {"winrm_password", "pfx_password", "client_secret",
                                                  "crm_password", "adfs_client_secret"}


def test_second_run_changes_nothing_and_says_so(lab_env: dict[str, Any]) -> None:
    assert "first" in lab_env["runs"], "needs the demo run"
    before = world(lab_env["state"])
    result = run(lab_env)
    assert result.ok, result.table().to_string()
    for s in result.steps:
        assert s.changes == [], (s.step.id, s.changes)
        said = "checked (read-only step)" if s.step.read_only else "already done: nothing changed"
        assert s.summary() == said
    assert world(lab_env["state"]) == before
    assert result.facts["thumbprint"] == lab_env["runs"]["first"].facts["thumbprint"]


@pytest.mark.parametrize("step", BOOK.steps, ids=[s.id for s in BOOK.steps])
def test_every_step_runs_from_plain_papermill_with_a_params_file(lab_env: dict[str, Any], step: Any) -> None:
    """The papermill CLI, nothing of psbridge's runner: the stored notebook, a parameter file, the
    kernel the notebook names. After the demo run there is nothing left to change."""
    assert "first" in lab_env["runs"], "needs the demo run"
    params_file = lab_env["root"] / "params.yaml"
    params_file.write_text(yaml.safe_dump(params(lab_env)), encoding="utf-8")
    out = lab_env["root"] / f"{Path(step.notebook).stem}.out.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "papermill", str(BOOK.notebook_dir / step.notebook), str(out),
         "-f", str(params_file), "--no-progress-bar"],
        capture_output=True, text=True, timeout=240, env=dict(os.environ), cwd=lab_env["root"],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import nbformat

    from psbridge.runbook.facts import read_facts

    executed = nbformat.read(out, as_version=4)
    assert executed.metadata["papermill"]["parameters"], "papermill injected no parameters"
    got = read_facts(executed)
    assert got["changes"] == [], got["changes"]
    if step.id == "tenant-id":
        assert got["s2s_tenant_id"] == lab_env["runs"]["first"].facts["tenant_id"]


def test_notebooks_run_as_stored_like_in_jupyterlab(lab_env: dict[str, Any]) -> None:
    """Opened in JupyterLab and run top to bottom: no injected parameters, the defaults target the
    running lab (PSBRIDGE_LAB_STATE) and each step finds what it needs itself."""
    assert "first" in lab_env["runs"], "needs the demo run"
    import nbformat
    from nbclient import NotebookClient

    from psbridge.runbook.facts import read_facts

    before = world(lab_env["state"])
    got = {}
    for stem in ("00-preflight", "50-tenant-id", "90-summary"):
        nb = nbformat.read(BOOK.notebook_dir / f"{stem}.ipynb", as_version=4)
        NotebookClient(nb, timeout=240, kernel_name=KERNEL_NAME,
                       resources={"metadata": {"path": str(BOOK.notebook_dir)}}).execute()
        got[stem] = read_facts(nb)
        assert got[stem]["changes"] == [], stem
    assert got["00-preflight"]["organization_id"] == lab_env["runs"]["first"].facts["organization_id"]
    assert got["50-tenant-id"]["s2s_tenant_id"] == lab_env["runs"]["first"].facts["tenant_id"]
    final = next(o for c in nb.cells if "final_state" in c.source for o in c.outputs if "data" in o)
    assert "False" not in final["data"]["text/plain"], final["data"]["text/plain"]
    assert world(lab_env["state"]) == before


def test_wrong_pfx_password_stops_the_run_with_a_record_then_resume(lab_env: dict[str, Any]) -> None:
    assert "first" in lab_env["runs"], "needs the demo run"
    p = params(lab_env)
    right = sec.resolve(p["pfx_password"])
    before = world(lab_env["state"])
    sec.store(p["pfx_password"], "not-the-pfx-password")
    try:
        failed = run(lab_env, start="install-certificate")
    finally:
        sec.store(p["pfx_password"], right)
    assert not failed.ok
    assert failed.failed_step is not None and failed.failed_step.step.id == "install-certificate"
    assert "wrong password" in (failed.failed_step.error or "")
    later = len(BOOK.steps) - 3
    assert [s.status for s in failed.steps] == ["carried", "carried", "failed"] + ["not run"] * later
    manifest = evidence.read_manifest(failed.record_dir)
    assert manifest["status"] == "failed"
    assert manifest["failure"].startswith("step install-certificate failed")
    assert evidence.verify(failed.record_dir) == []
    assert (failed.record_dir / "20-install-certificate.html").exists()
    assert not (failed.record_dir / "30-entra-app.ipynb").exists()
    after = world(lab_env["state"])
    assert {k: v for k, v in after.items() if k != "secrets.json"} == \
        {k: v for k, v in before.items() if k != "secrets.json"}

    # Fixed: the failed step runs again from the same facts (the runner's tests resume whole runs).
    resumed = run(lab_env, only="install-certificate")
    assert resumed.ok, resumed.table().to_string()
    assert [s.status for s in resumed.steps][:3] == ["carried", "carried", "succeeded"]
    assert resumed.steps[0].carried_from is not None
    assert resumed.steps[2].changes == []


def test_verify_command_catches_one_changed_byte(lab_env: dict[str, Any]) -> None:
    first = lab_env["runs"].get("first")
    assert first is not None, "needs the demo run"
    cli = CliRunner()
    ok = cli.invoke(app, ["verify", str(first.record_dir)])
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    target = first.record_dir / "40-configure-s2s.ipynb"
    data = bytearray(target.read_bytes())
    i = data.index(b"ConfigureCrmServerSideSync")
    data[i] ^= 0x20
    target.write_bytes(bytes(data))
    bad = cli.invoke(app, ["verify", str(first.record_dir)])
    assert bad.exit_code == 1
    assert "changed: 40-configure-s2s.ipynb" in bad.output


def test_parameter_file_errors_are_all_listed_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    given = {"customer": "x", "organisation": "contoso", "pfx_password": "Secr3t!",
             "client_secret": "env:ONLY_READABLE", "certificate_days": 0}
    bad.write_text(json.dumps(given), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(bad), "--records", str(tmp_path / "none")])
    assert result.exit_code == 2
    for part in ("organisation: unknown parameter (did you mean organization?)", "organization: required",
                 "pfx_password: not a secret reference", "client_secret: a step writes this secret",
                 "certificate_days: 0 is below the minimum 1"):
        assert part in " ".join(result.output.split()), result.output
    assert "Secr3t!" not in result.output
    assert not (tmp_path / "none").exists()


def test_a_server_refusing_a_change_stops_the_step_with_its_words_then_drift_is_repaired(
        lab_env: dict[str, Any]) -> None:
    """Someone changed S2STenantId by hand; CRM01 refuses the fix once (fault), then takes it."""
    first = lab_env["runs"].get("first")
    assert first is not None, "needs the demo run"
    from psbridge.crm import get_organization, set_advanced_setting

    lab = lab_env["lab"]
    with Deployment.from_params(ORG, lab=str(lab_env["state"])) as dep:
        session = dep.session(dep.deployment_server)
        org = get_organization(session, ORG)
        drifted = "00000000-0000-0000-0000-0000000000aa"
        set_advanced_setting(session, "Organization", "S2STenantId", drifted, org.id)
    refusal = "The configuration database is read-only."
    lab.set_faults("CRM01", fail_commands={"set-crmadvancedsetting": refusal})
    try:
        failed = run(lab_env, only="tenant-id")
    finally:
        lab.clear_faults("CRM01")
    assert not failed.ok and failed.failed_step is not None and failed.failed_step.step.id == "tenant-id"
    assert refusal in (failed.failed_step.error or "")
    assert evidence.verify(failed.record_dir) == []

    repaired = run(lab_env, only="tenant-id")
    assert repaired.ok, repaired.table().to_string()
    assert repaired.steps[5].changes == [f"set {ORG} S2STenantId to {first.facts['tenant_id']}"]
    assert repaired.facts["s2s_tenant_id"] == first.facts["tenant_id"]
