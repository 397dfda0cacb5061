"""s2s-health over the wire: a healthy organization is ok, a certificate ending in 10 days needs action, a
key credential removed from the Dynamics CRM service principal is broken, a failing mailbox needs action —
each with its reasons — and neither a run nor a plan changes anything in the lab's world or tenant.

The organization is first set up by the exchange-online-s2s runbook in the same lab.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labproc import world

from psbridge import evidence
from psbridge.lab import drift
from psbridge.lab.orchestrator import Lab
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.params import validate
from psbridge.runbook.runner import Runner, RunResult

SETUP = registry.load("exchange-online-s2s")
HEALTH = registry.load("s2s-health")
ORG = "contoso"
SERVICE_ACCOUNT = "LAB\\CRMAsyncService"  # lab.json's service_account: the async services run as it


@pytest.fixture(scope="module")
def env(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("health")
    state = root / "lab"
    for key in lab_keys.rglob("*.pem"):
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    saved = {k: os.environ.get(k) for k in ("PSBRIDGE_LAB_STATE", "PSBRIDGE_TOKEN_CACHE")}
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
    lab = Lab(state, servers=2, orgs=1, webapi="ad").start()
    try:
        setup = Runner(SETUP, demo_parameters(SETUP, state, ORG), records_root=root / "records").run()
        assert setup.ok, setup.table().to_string()
        yield {"lab": lab, "state": state, "records": root / "records", "setup": setup}
    finally:
        lab.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def health(env: dict[str, Any], mode: str = "apply", **extra: Any) -> RunResult:
    params = validate(HEALTH, {"customer": "demo", "organization": ORG, "lab": str(env["state"]),
                               "app_name": f"psbridge server-side sync ({ORG})", **extra})
    return Runner(HEALTH, params, records_root=env["records"], mode=mode).run()


def test_a_healthy_organization_is_ok_and_nothing_changes(env: dict[str, Any]) -> None:
    before = world(env["state"])
    result = health(env)
    assert result.ok, result.table().to_string()
    facts = result.facts
    assert facts["health_verdict"] == "ok", facts["health_reasons"]
    assert facts["health_reasons"] == []
    assert facts["thumbprint"] == env["setup"].facts["thumbprint"]
    assert 360 <= facts["days_to_certificate_expiry"] <= 366
    assert facts["days_to_end_of_support"] == facts["days_to_ews_end"] > 0
    assert facts["mailboxes_failing"] == []
    assert any("setup app" in n and "can be deleted" in n for n in facts["health_notes"])
    assert any("SharePoint" in n for n in facts["health_notes"])
    assert world(env["state"]) == before
    assert evidence.verify(result.record_dir) == []
    page = (result.record_dir / "00-health.html").read_text(encoding="utf-8")
    assert "contoso: <span" in page and "Every check is ok." in page and "2027-04-01" in page
    # Read on every async server, not left as a note: the ACL names the service account.
    rows = set(re.findall(r"<td>(CRM\d\d) LocalMachine\\My</td><td>service account key access</td>"
                          r"<td>([^<]*)</td><td>([^<]*)</td>", page))
    assert rows == {(s, f"{SERVICE_ACCOUNT}: may read", "ok") for s in ("CRM01", "CRM02")}
    assert not [n for n in facts["health_notes"] if "key" in n and "not read" in n]


def test_a_plan_changes_nothing_either(env: dict[str, Any]) -> None:
    before = world(env["state"])
    result = health(env, mode="plan")
    assert result.ok, result.table().to_string()
    assert result.facts["health_verdict"] == "ok"
    assert world(env["state"]) == before


def test_a_key_credential_removed_is_broken(env: dict[str, Any]) -> None:
    lab: Lab = env["lab"]
    assert lab.twin is not None
    removed = drift.remove_key_credentials(lab.twin.directory)
    try:
        before = world(env["state"])
        result = health(env)
        assert world(env["state"]) == before
    finally:
        drift.restore_key_credentials(lab.twin.directory, removed)
    assert result.ok, result.table().to_string()
    facts = result.facts
    assert facts["health_verdict"] == "broken"
    thumb = env["setup"].facts["thumbprint"]
    assert [r for r in facts["health_reasons"] if "does not trust the S2S certificate " + thumb in r
            and "AADSTS700027" in r]


def test_a_service_account_that_may_not_read_the_key_is_broken_on_that_server(env: dict[str, Any]) -> None:
    revoked = drift.revoke_key_read(env["state"], SERVICE_ACCOUNT, "CRM02")
    assert revoked == ["CRM02"]
    try:
        before = world(env["state"])
        result = health(env)
        assert world(env["state"]) == before
    finally:
        drift.grant_key_read(env["state"], SERVICE_ACCOUNT, revoked)
    assert result.ok, result.table().to_string()
    facts = result.facts
    assert facts["health_verdict"] == "broken"
    thumb = env["setup"].facts["thumbprint"]
    access = [r for r in facts["health_reasons"] if "private key" in r]
    assert len(access) == 1, facts["health_reasons"]
    assert access[0].startswith(f"CRM02: {SERVICE_ACCOUNT} ")
    assert thumb in access[0] and "Keyset does not exist" in access[0]
    assert "CertificateReconfiguration.ps1" in access[0]
    assert health(env).facts["health_verdict"] == "ok"  # granted again: the check reads the ACL anew


def test_a_key_acl_that_cannot_be_read_is_a_note_not_a_verdict(env: dict[str, Any]) -> None:
    lab: Lab = env["lab"]
    lab.set_faults("CRM01", fail_commands={"get-acl": "Attempted to perform an unauthorized operation."})
    try:
        facts = health(env).facts
    finally:
        lab.clear_faults("CRM01")
    assert facts["health_verdict"] == "ok", facts["health_reasons"]
    notes = [n for n in facts["health_notes"] if n.startswith("CRM01: whether")]
    assert len(notes) == 1 and "is not read" in notes[0] and "unauthorized operation" in notes[0], notes


def test_a_failing_mailbox_needs_action_with_the_servers_words(env: dict[str, Any]) -> None:
    alert = "The remote server returned an error: (401) Unauthorized."
    drift.fail_mailbox(env["state"], ORG, "Bob Brown", alert)
    facts = health(env).facts
    assert facts["health_verdict"] == "action needed"
    assert facts["health_reasons"] == [f"mailbox Bob Brown fails: {alert}"]
    assert facts["mailboxes_failing"] == ["Bob Brown <bob@psbridgelab.onmicrosoft.com>"]


def test_a_certificate_ending_in_10_days_needs_action(env: dict[str, Any]) -> None:
    lab: Lab = env["lab"]
    assert lab.twin is not None
    thumb = drift.certificate_expires_in(env["state"], lab.twin.directory, 10)
    facts = health(env).facts
    assert facts["thumbprint"] == thumb
    assert facts["days_to_certificate_expiry"] == 10
    assert facts["health_verdict"] == "action needed"
    reasons = facts["health_reasons"]
    cert = f"configuration database: the S2STokenIssuer certificate {thumb} expires in 10 days"
    assert any(r.startswith(cert) and "AlternativeS2STokenIssuer -updateCrm" in r for r in reasons), reasons
    assert any("Dynamics CRM service principal: the key credential " + thumb + " expires in 10 days" in r
               for r in reasons), reasons
