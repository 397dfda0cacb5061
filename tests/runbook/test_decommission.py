"""s2s-decommission over the wire, from an organization the exchange-online-s2s runbook set up in the lab:
refused without the confirmation before anything changes, a plan that says what each step would do and
changes nothing, then a decommission after which nothing of the integration is left — asserted from the
lab's world (configuration database, servers' stores, the organization's records) and its tenant — and a
second run that finds nothing to do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labproc import read_directory, read_world, world

from psbridge import evidence
from psbridge.lab.orchestrator import Lab
from psbridge.lab.world import World
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.params import validate
from psbridge.runbook.runner import Runner, RunResult

SETUP = registry.load("exchange-online-s2s")
BOOK = registry.load("s2s-decommission")
ORG = "contoso"
APP = f"psbridge server-side sync ({ORG})"
CRM_APP = "00000007-0000-0000-c000-000000000000"


@pytest.fixture(scope="module")
def env(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("decommission")
    state = root / "lab"
    for key in lab_keys.rglob("*.pem"):
        target = state / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    saved = {k: os.environ.get(k) for k in ("PSBRIDGE_LAB_STATE", "PSBRIDGE_TOKEN_CACHE")}
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(root / "msal")
    lab = Lab(state, servers=2, orgs=2, webapi="ad").start()
    try:
        setup = Runner(SETUP, demo_parameters(SETUP, state, ORG), records_root=root / "records").run()
        assert setup.ok, setup.table().to_string()
        yield {"lab": lab, "state": state, "records": root / "records", "setup": setup, "runs": {}}
    finally:
        lab.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(env: dict[str, Any], mode: str = "apply", only: str | None = None, **extra: Any) -> RunResult:
    given = {"customer": "demo", "organization": ORG, "lab": str(env["state"]), "app_name": APP, **extra}
    params = validate(BOOK, given)
    return Runner(BOOK, params, records_root=env["records"], mode=mode).run(only=only)


def changes(result: RunResult, step: str) -> list[str]:
    return next(s.changes for s in result.steps if s.step.id == step) or []


def test_it_is_refused_without_the_confirmation_before_anything_changes(env: dict[str, Any]) -> None:
    before = world(env["state"])
    for confirm in ("", "fabrikam"):
        result = run(env, confirm=confirm)
        assert not result.ok
        assert result.failed_step is not None and result.failed_step.step.id == "plan"
        said = result.failed_step.error or ""
        assert "Confirmation: the decommission of contoso is not confirmed: set confirm: contoso" in said
        assert "Nothing was changed" in said
        assert [s.status for s in result.steps[1:]] == ["not run"] * (len(BOOK.steps) - 1)
    assert world(env["state"]) == before


def test_the_plan_says_what_each_step_would_do_and_changes_nothing(env: dict[str, Any]) -> None:
    before = world(env["state"])
    result = run(env, mode="plan")
    assert result.ok, result.table().to_string()
    thumb = env["setup"].facts["thumbprint"]
    assert result.facts["thumbprints"] == [thumb] and result.facts["s2s_users"] == []
    mailboxes = changes(result, "mailboxes")
    off = "off server-side sync (email and appointments, contacts and tasks: none)"
    assert f"take mailbox Alice Adams {off}" in mailboxes
    assert mailboxes[-1].startswith("deactivate the email server profile 'Exchange Online (psbridge)'")
    assert changes(result, "tenant-id")[0].startswith("empty contoso S2STenantId (now ")
    assert changes(result, "certificate") == [
        f"remove the S2STokenIssuer certificate {thumb} from the configuration database "
        "(Remove-CrmCertificate)",
        f"remove {thumb} and its private key from CRM01 LocalMachine\\My",
        f"remove {thumb} and its private key from CRM02 LocalMachine\\My"]
    entra = changes(result, "entra")
    assert entra[0] == f"remove key credential {thumb} from the Dynamics CRM service principal"
    assert entra[1].startswith(f"delete the setup app registration {APP!r}")
    assert world(env["state"]) == before


def set_fabrikam_tenant_id(env: dict[str, Any], value: str | None) -> None:
    """Another organization of the deployment using server-to-server authentication (or not any more)."""
    with World.load(env["state"]).change() as data:
        next(o for o in data["organizations"] if o["name"] == "fabrikam")["settings"]["S2STenantId"] = value


def test_the_certificate_and_key_credential_stay_while_another_organization_uses_them(env: dict[str, Any]
                                                                                       ) -> None:
    tenant_id = env["setup"].facts["tenant_id"]
    set_fabrikam_tenant_id(env, tenant_id)
    try:
        assert run(env, confirm=ORG, only="plan").ok
        before = world(env["state"])
        shared = [run(env, confirm=ORG, only=step) for step in ("certificate", "entra")]
        after = world(env["state"])
    finally:
        set_fabrikam_tenant_id(env, None)
    for result in shared:
        assert result.ok, result.table().to_string()
    assert changes(shared[0], "certificate") == []
    app_id = env["setup"].facts["app_id"]
    assert changes(shared[1], "entra") == [
        f"deleted the setup app registration {APP!r} ({app_id}) and its service principal"]
    kept = (shared[0].record_dir / "30-certificate.html").read_text(encoding="utf-8")
    assert "stays in the configuration database and on the servers: server-to-server authentication is " \
        "still used by fabrikam" in kept
    tenant = read_directory(env["state"])
    crm_sp = next(s for s in tenant["servicePrincipals"] if s["appId"] == CRM_APP)
    thumb = env["setup"].facts["thumbprint"]
    assert [k for k in crm_sp["keyCredentials"] if str(k.get("customKeyIdentifier")).upper() == thumb]
    assert read_world(env["state"])["deployment"]["certificates"]
    assert before != after  # the app went; nothing else did


def test_the_decommission_leaves_nothing_of_the_integration(env: dict[str, Any]) -> None:
    result = run(env, confirm=ORG)
    env["runs"]["done"] = result
    assert result.ok, result.table().to_string()
    assert evidence.verify(result.record_dir) == []
    assert result.facts["integration_left"] == [] and result.facts["integration_kept"] == []
    thumb = env["setup"].facts["thumbprint"]
    data = read_world(env["state"])
    assert data["deployment"]["certificates"] == []
    assert all(thumb not in [c["thumbprint"] for c in s["store"]] for s in data["servers"])
    org = data["organizations"][0]
    assert not org["settings"]["S2STenantId"]
    records = org["crm"]["records"]
    profile = next(p for p in records["emailserverprofiles"] if p["name"] == "Exchange Online (psbridge)")
    assert profile["statecode"] == 1
    for m in records["mailboxes"]:
        assert (m["incomingemaildeliverymethod"], m["outgoingemaildeliverymethod"]) != (2, 2)
        if (m.get("emailserverprofile") or {}).get("id") == profile["emailserverprofileid"]:
            methods = (m["incomingemaildeliverymethod"], m["outgoingemaildeliverymethod"],
                       m["actdeliverymethod"])
            assert methods == (0, 0, 2)
    tenant = read_directory(env["state"])
    crm_sp = next(s for s in tenant["servicePrincipals"] if s["appId"] == CRM_APP)
    assert all(str(k.get("customKeyIdentifier") or "").upper() != thumb for k in crm_sp["keyCredentials"])
    assert not [a for a in tenant["applications"] if a["displayName"] == APP]
    assert not [s for s in tenant["servicePrincipals"] if s.get("displayName") == APP]
    final = (result.record_dir / "90-final-state.html").read_text(encoding="utf-8")
    assert "Nothing of the integration is left." in final


def test_a_second_decommission_finds_nothing_to_do(env: dict[str, Any]) -> None:
    assert "done" in env["runs"], "needs the decommission"
    before = world(env["state"])
    result = run(env, confirm=ORG)
    assert result.ok, result.table().to_string()
    assert all(not changes(result, s.id) for s in BOOK.steps)
    assert world(env["state"]) == before


def test_health_after_the_decommission_says_not_set_up(env: dict[str, Any]) -> None:
    assert "done" in env["runs"], "needs the decommission"
    health = registry.load("s2s-health")
    before = world(env["state"])
    params = validate(health, {"customer": "demo", "organization": ORG, "lab": str(env["state"]),
                               "app_name": APP})
    result = Runner(health, params, records_root=env["records"]).run()
    assert result.ok, result.table().to_string()
    facts = result.facts
    assert facts["health_verdict"] == "not set up", facts["health_reasons"]
    first = facts["health_reasons"][0]
    assert first.startswith(f"server-side sync with Exchange Online is not set up for {ORG}"), first
    assert "S2STokenIssuer certificate: none" in first and "S2STenantId: not set" in first, first
    assert facts["days_to_certificate_expiry"] is None and facts["thumbprint"] == ""
    assert world(env["state"]) == before
