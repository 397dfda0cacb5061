"""``psbridge batch`` over the wire against a fleet of two lab deployments (``lab up --deployments``),
run as a partner runs it: a process of its own, from an inventory file.

In order, on one fleet: ``--plan`` changes nothing; a batch where one org's failure stays its own
and a deployment-wide step failing blocks only that deployment's orgs, with the reason; the same
batch again resumes what failed and skips what is complete (saying so per org), and the lab's world
holds every change once (one certificate per deployment and server, one app per tenant); a third
run changes nothing; the batch record verifies, its page shows every org in headless Chromium, and
no secret value is in any batch file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pandas as pd
import pytest
import yaml

from psbridge import evidence, secrets
from psbridge.lab import faults
from psbridge.lab.config import lab_secret_store

pytestmark = pytest.mark.timeout(900)

DEPLOYMENTS = {"dep01": "acme", "dep02": "globex"}
ORGS = ["contoso", "fabrikam", "adventureworks"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("batch")
    state = root / "fleet"
    labproc.fleet_up(state, lab_keys, len(DEPLOYMENTS), len(ORGS))
    inventory = root / "fleet.yaml"
    rows = [{"customer": customer, "deployment": dep, "organization": org}
            for dep, customer in DEPLOYMENTS.items() for org in ORGS]
    # An org the lab does not have: its own failure, in the middle of a deployment that works.
    rows.insert(2, {"customer": "acme", "deployment": "dep01", "organization": "ghost"})
    inventory.write_text(yaml.safe_dump({
        "defaults": {"lab": str(state) + "/{deployment}",
                     "pfx_password": "lab:{customer}/{deployment}/pfx-password",
                     "client_secret": "lab:{customer}/{deployment}/client-secret",
                     "app_name": "psbridge batch ({customer})"},
        "orgs": rows}), encoding="utf-8")
    try:
        yield {"state": state, "root": root, "records": root / "records", "inventory": inventory}
    finally:
        labproc.lab_down(state)


Done = subprocess.CompletedProcess[bytes]


def _batch(fleet: dict[str, Any], *args: str) -> tuple[Done, Path, pd.DataFrame]:
    done = labproc.psbridge(fleet["state"], "batch", str(fleet["inventory"]), "--records",
                            str(fleet["records"]), "--parallel", "2", *args, timeout=600)
    batches = sorted((fleet["records"] / "batches").iterdir())
    table = pd.read_csv(batches[-1] / "summary.csv", dtype=str, keep_default_na=False)
    return done, batches[-1], table.set_index(table["customer"] + "/" + table["organization"])


def _worlds(fleet: dict[str, Any]) -> dict[str, dict[str, str]]:
    # Sign-ins are cached beside each lab deployment (msal/): a cache is not configuration.
    return {dep: {k: v for k, v in labproc.world(fleet["state"] / dep).items() if not k.startswith("msal/")}
            for dep in DEPLOYMENTS}


def _said(done: subprocess.CompletedProcess[bytes]) -> str:
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def test_plan_changes_nothing(fleet: dict[str, Any]) -> None:
    before = _worlds(fleet)
    done, _, table = _batch(fleet, "--plan")
    assert _worlds(fleet) == before
    assert done.returncode == 1, _said(done)  # the ghost org cannot be planned either
    assert set(table.loc[table.index != "acme/ghost", "status"]) == {"planned"}, table.to_string()
    assert table.loc["acme/ghost", "status"] == "failed"


def test_failures_isolated_and_blocked_by_the_deployment_step(fleet: dict[str, Any]) -> None:
    faults.set_faults(fleet["state"] / "dep02", "CRM01", fail_commands={
        "ConfigureCrmServerSideSync.ps1": "Failed to get the access token: service unavailable"})
    try:
        done, where, table = _batch(fleet)
    finally:
        faults.clear_faults(fleet["state"] / "dep02")
    assert done.returncode == 1, _said(done)
    for org in ORGS:
        assert table.loc[f"acme/{org}", "status"] == "complete", table.to_string()
    ghost = table.loc["acme/ghost"]
    assert ghost["status"] == "failed" and ghost["failed_step"] == "preflight", table.to_string()
    lead = table.loc["globex/contoso"]
    assert lead["status"] == "failed" and lead["failed_step"] == "configure-s2s"
    assert "service unavailable" in lead["reason"]
    for org in ORGS[1:]:
        member = table.loc[f"globex/{org}"]
        assert member["status"] == "blocked", table.to_string()
        assert member["blocked_by"] == "globex/contoso configure-s2s"
        assert "service unavailable" in member["reason"]
        assert member["record"] == ""  # nothing ran for it
    # The deployment's other orgs carried its steps from the lead's record, not ran them.
    member = json.loads((where / table.loc["acme/fabrikam", "record"] / "manifest.json").read_text())
    carried = {s["id"]: s["carried_from"] for s in member["steps"] if s["status"] == "carried"}
    lead_run = table.loc["acme/contoso", "run_id"]
    assert carried == dict.fromkeys(["certificate", "install-certificate", "entra-app", "configure-s2s"],
                                    f"acme/contoso/{lead_run}")


def test_rerun_resumes_the_failed_and_skips_the_complete(fleet: dict[str, Any]) -> None:
    done, _, table = _batch(fleet)
    assert done.returncode == 1, _said(done)  # the ghost again
    for org in ORGS:
        row = table.loc[f"acme/{org}"]
        assert row["status"] == "skipped" and row["action"].startswith("complete and verified"), row
    lead = table.loc["globex/contoso"]
    assert lead["status"] == "complete" and lead["action"].startswith("resumed at configure-s2s"), lead
    for org in ORGS[1:]:
        assert table.loc[f"globex/{org}", "status"] == "complete", table.to_string()
    assert table.loc["acme/ghost", "action"].startswith("resumed at preflight")
    assert "skipped" in _said(done) and "resumed at configure-s2s" in _said(done)
    # Every change once: one S2S certificate per server per deployment, one app per tenant.
    for dep in DEPLOYMENTS:
        world = labproc.read_world(fleet["state"] / dep)
        for server in world["servers"]:
            s2s = [c for c in server["store"] if "psbridge" in c["subject"]]
            assert len(s2s) == 1, (dep, server["name"], s2s)
        apps = [a for a in labproc.read_directory(fleet["state"] / dep)["applications"]
                if a["displayName"].startswith("psbridge batch")]
        assert len(apps) == 1, apps
        thumbprints = set(table.loc[[f"{DEPLOYMENTS[dep]}/{o}" for o in ORGS], "thumbprint"])
        assert len(thumbprints) == 1 and "" not in thumbprints
    assert len(set(table["tenant_id"]) - {""}) == 2


def test_third_run_changes_nothing_and_the_record_verifies(fleet: dict[str, Any]) -> None:
    before = _worlds(fleet)
    done, where, table = _batch(fleet, "--orgs", "*/[!g]*")  # all but the ghost
    assert done.returncode == 0, _said(done)
    assert set(table["status"]) == {"skipped"} and len(table) == 6
    assert _worlds(fleet) == before
    verified = labproc.psbridge(fleet["state"], "verify", str(where))
    assert verified.returncode == 0, _said(verified)
    assert b"intact batch, COMPLETE" in verified.stdout
    assert set(pd.read_parquet(where / "summary.parquet")["status"]) == {"skipped"}
    manifest = evidence.read_manifest(where)
    assert manifest["kind"] == "batch" and len(manifest["orgs"]) == 6
    # Tampering with an org's record is seen from the batch.
    org_record = where / table.iloc[0]["record"]
    page = next(org_record.glob("*.html"))
    original = page.read_bytes()
    page.write_bytes(original + b"<!-- edited -->")
    try:
        tampered = labproc.psbridge(fleet["state"], "verify", str(where))
        assert tampered.returncode == int(evidence.Verdict.TAMPERED), _said(tampered)
    finally:
        page.write_bytes(original)


def test_summary_page_shows_every_org_in_chromium(fleet: dict[str, Any]) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium on this machine")
    batches = sorted((fleet["records"] / "batches").iterdir())
    where = batches[-2]  # the rerun: completes, a resume, the ghost's failure
    page = where / "index.html"
    shot = fleet["root"] / "batch-summary.png"
    common = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([chromium, *common, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr
    for customer in DEPLOYMENTS.values():
        for org in ORGS:
            assert f"id=\"{customer}-{org}\"" in dom.stdout
    assert "id=\"acme-ghost\"" in dom.stdout and "class=\"failed\"" in dom.stdout
    subprocess.run([chromium, *common, f"--screenshot={shot}", "--window-size=1600,900", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 10_000
    # Links are relative and lead to each org's record and step pages.
    for href in [h.split('"')[0] for h in dom.stdout.split('href="')[1:]]:
        assert not href.startswith(("http:", "https:", "/")), href
        assert (where / href).exists(), href


def test_no_secret_value_in_any_batch_file(fleet: dict[str, Any]) -> None:
    values = []
    for dep, customer in DEPLOYMENTS.items():
        with lab_secret_store(fleet["state"] / dep):
            for name in ("pfx-password", "client-secret"):
                # The client secret is removed by the teardown.
                with contextlib.suppress(secrets.SecretError):
                    values.append(secrets.resolve(f"lab:{customer}/{dep}/{name}").reveal())
            values.append(secrets.resolve("lab:accounts/crmadmin").reveal())
    assert values
    for path in (fleet["records"] / "batches").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in values:
                assert value.encode() not in data, path


def test_orgs_without_their_lead_borrow_from_its_records(fleet: dict[str, Any]) -> None:
    lead_records = sorted((fleet["records"] / "acme" / "contoso").iterdir())
    done, _, table = _batch(fleet, "--orgs", "acme/fabrikam", "--only", "summary")
    assert done.returncode == 0, _said(done)
    assert list(table.index) == ["acme/fabrikam"]
    row = table.loc["acme/fabrikam"]
    assert row["status"] == "complete" and row["action"] == "ran only summary", row
    assert sorted((fleet["records"] / "acme" / "contoso").iterdir()) == lead_records  # the lead did not run
    # Its latest record ran one step, the rest carried: the org is done, the next batch skips it.
    done, _, table = _batch(fleet, "--orgs", "acme/fabrikam")
    assert table.loc["acme/fabrikam", "status"] == "skipped", table.to_string()
