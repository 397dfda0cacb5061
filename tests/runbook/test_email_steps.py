"""Steps 60 and 70 against an Active Directory deployment's Web API, over the wire: a plan that changes
nothing, every mailbox from nothing to "success", a re-run that changes nothing, a broken S2S chain
reported in the server's words, the approve-email privilege checked before anything changes, a Test &
Enable that outlives its timeout waited for (not scheduled twice) by the next run, the allow-list
confirmation recorded by preflight.

The claims (IFD) deployment runs the same steps in ``test_runbook_lab.py`` and the canary test.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from labproc import world

from psbridge import evidence
from psbridge.lab.orchestrator import Lab
from psbridge.lab.world import World
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.definition import Scope
from psbridge.runbook.runner import Runner, RunResult

BOOK = registry.load("exchange-online-s2s")
ORG = "contoso"
CRM_APP = "00000007-0000-0000-c000-000000000000"
PROFILE = "Exchange Online (psbridge)"


@pytest.fixture(scope="module")
def env(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("email-steps")
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
        yield {"lab": lab, "state": state, "records": root / "records", "runs": {}}
    finally:
        lab.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def knobs(env: dict[str, Any]) -> Iterator[Any]:
    lab: Lab = env["lab"]
    assert lab.web is not None
    yield lab.web
    lab.web.reset_knobs()


def params(env: dict[str, Any], **extra: Any) -> dict[str, Any]:
    p = demo_parameters(BOOK, env["state"], ORG)
    p.update(extra)
    return p


def run(env: dict[str, Any], mode: str = "apply", **kw: Any) -> RunResult:
    extra = kw.pop("params", {})
    return Runner(BOOK, params(env, **extra), records_root=env["records"], mode=mode).run(**kw)


def crm(env: dict[str, Any], org: str = ORG) -> dict[str, Any]:
    data = World.load(env["state"]).data
    found: dict[str, Any] = next(o["crm"] for o in data["organizations"] if o["name"] == org)
    return found


def changes(result: RunResult, step: str) -> list[str]:
    return next(s.changes for s in result.steps if s.step.id == step) or []


def test_the_email_steps_are_organization_steps_with_one_module_each() -> None:
    scopes = {s.id: s.scope for s in BOOK.steps}
    assert scopes["email-server-profile"] == scopes["mailboxes"] == Scope.ORGANIZATION
    assert [s.id for s in BOOK.steps][-3:] == ["email-server-profile", "mailboxes", "summary"]


def test_plan_says_what_steps_60_and_70_would_write_and_writes_nothing(env: dict[str, Any]) -> None:
    before = world(env["state"])
    result = run(env, mode="plan")
    assert result.ok, result.table().to_string()
    assert changes(result, "email-server-profile")[0].startswith(
        f"create the Exchange Online (Hybrid) email server profile {PROFILE!r}")
    planned = changes(result, "mailboxes")
    assert planned[0] == f"(the email server profile {PROFILE!r} is step 60's to create)"
    assert planned[1].startswith(f"point 4 mailbox(es) at {PROFILE!r} with server-side sync")
    assert "approve the email address of CRM Admin, Lab Operator, Alice Adams, Bob Brown" in planned
    assert world(env["state"]) == before


def test_from_nothing_to_every_mailbox_enabled(env: dict[str, Any]) -> None:
    result = run(env)
    env["runs"]["first"] = result
    assert result.ok, result.table().to_string()
    assert evidence.verify(result.record_dir) == []
    assert result.facts["web_api_sign_in"] == "active-directory"
    assert sorted(result.facts["mailboxes_enabled"]) == sorted(
        f"{u}@psbridgelab.onmicrosoft.com" for u in ("crmadmin", "operator", "alice", "bob"))
    assert result.facts["mailboxes_failed"] == []
    recs = crm(env)["records"]
    profile = next(p for p in recs["emailserverprofiles"] if p["name"] == PROFILE)
    keys = ("servertype", "incomingcredentialretrieval", "outgoingcredentialretrieval", "useautodiscover",
            "usedefaulttenantid")
    shape = tuple(profile[k] for k in keys)
    assert shape == (3, 2, 2, True, True)
    assert result.facts["email_server_profile_id"] == profile["emailserverprofileid"]
    org = recs["organizations"][0]
    assert org["defaultemailserverprofileid"]["id"] == profile["emailserverprofileid"]
    assert org["emailconnectionchannel"] == 0
    assert "<ACTDeliveryMethod>1</ACTDeliveryMethod>" in org["defaultemailsettings"]
    users = [m for m in recs["mailboxes"] if (m["regardingobjectid"] or {}).get("type") == "systemuser"]
    assert len(users) == 4
    for m in users:
        methods = (m["incomingemaildeliverymethod"], m["outgoingemaildeliverymethod"], m["actdeliverymethod"])
        assert methods == (2, 2, 1)
        assert (m["incomingemailstatus"], m["outgoingemailstatus"], m["actstatus"], m["mailboxstatus"]) == \
            (1, 1, 1, 1)
        assert m["emailrouteraccessapproval"] == 1
        assert m["emailserverprofile"]["id"] == profile["emailserverprofileid"]
    queue = next(m for m in recs["mailboxes"] if m["regardingobjectid"]["type"] == "queue")
    assert queue["mailboxstatus"] == 0  # not chosen: left alone
    shown = (result.record_dir / "70-mailboxes.html").read_text(encoding="utf-8")
    assert "4 mailboxes on profile" in shown and "Test &amp; Enable: 4 success, 0 failure" in shown
    preflight = (result.record_dir / "00-preflight.html").read_text(encoding="utf-8")
    assert "Active Directory (Windows authentication: Negotiate, NTLM)" in preflight
    assert "Test &amp; Enable WILL FAIL" in preflight and "April 2027" in preflight


def test_a_rerun_changes_nothing(env: dict[str, Any]) -> None:
    assert "first" in env["runs"], "needs the first run"
    before = world(env["state"])
    result = run(env, start="email-server-profile")
    assert result.ok, result.table().to_string()
    assert changes(result, "email-server-profile") == [] and changes(result, "mailboxes") == []
    assert world(env["state"]) == before


def test_a_broken_chain_fails_with_the_servers_message(env: dict[str, Any]) -> None:
    lab: Lab = env["lab"]
    assert lab.twin is not None
    with lab.twin.directory.change() as data:
        sp = next(s for s in data["servicePrincipals"] if s["appId"] == CRM_APP)
        kept, sp["keyCredentials"] = sp["keyCredentials"], []
    try:
        result = run(env, only="mailboxes", params={"mailboxes": ["queue:Support"]})
    finally:
        with lab.twin.directory.change() as data:
            next(s for s in data["servicePrincipals"] if s["appId"] == CRM_APP)["keyCredentials"] = kept
    assert not result.ok and result.failed_step is not None and result.failed_step.step.id == "mailboxes"
    said = result.failed_step.error or ""
    assert "Support: Test & Enable failed" in said and "AADSTS700027" in said
    assert "(401) Unauthorized" in said
    queue = next(m for m in crm(env)["records"]["mailboxes"] if m["regardingobjectid"]["type"] == "queue")
    assert (queue["mailboxstatus"], queue["incomingemailstatus"]) == (2, 2)
    assert evidence.read_manifest(result.record_dir)["status"] == "failed"
    # The chain repaired, the next run tests the failed mailbox again and it succeeds.
    again = run(env, only="mailboxes", params={"mailboxes": ["queue:Support"]})
    assert again.ok, again.table().to_string()
    assert changes(again, "mailboxes") == ["schedule Test & Enable for Support"]


def test_the_approve_privilege_is_checked_before_anything_changes(env: dict[str, Any]) -> None:
    with World.load(env["state"]).change() as data:
        org = next(o for o in data["organizations"] if o["name"] == ORG)
        box = next(m for m in org["crm"]["records"]["mailboxes"] if m["name"] == "Bob Brown")
        bob = next(u for u in org["crm"]["records"]["systemusers"] if u["fullname"] == "Bob Brown")
        box["emailrouteraccessapproval"] = bob["emailrouteraccessapproval"] = 2  # pending approval again
        box["mailboxstatus"] = 0
    before = world(env["state"])
    result = run(env, only="mailboxes", params={"mailboxes": ["LAB\\bob"], "crm_user": "LAB\\operator",
                                                "crm_password": "lab:accounts/operator"})
    assert not result.ok
    said = result.failed_step.error if result.failed_step else ""
    assert "LAB\\operator may not approve email addresses" in (said or "")
    assert "prvApproveRejectEmailAddress" in (said or "") and "Nothing was changed" in (said or "")
    assert world(env["state"]) == before
    assert run(env, only="mailboxes", params={"mailboxes": ["LAB\\bob"]}).ok


def test_a_test_that_outlives_the_timeout_is_waited_for_not_scheduled_again(env: dict[str, Any],
                                                                             knobs: Any) -> None:
    with World.load(env["state"]).change() as data:
        org = next(o for o in data["organizations"] if o["name"] == ORG)
        box = next(m for m in org["crm"]["records"]["mailboxes"] if m["name"] == "Alice Adams")
        box["mailboxstatus"] = 0
    knobs.set_knobs(test_delay=7)
    late = run(env, only="mailboxes", params={"mailboxes": ["LAB\\alice"], "test_timeout": 5})
    assert not late.ok
    assert late.failed_step is not None
    assert "Alice Adams: Test & Enable has not reported yet" in (late.failed_step.error or "")
    waited = run(env, only="mailboxes", params={"mailboxes": ["LAB\\alice"]})
    assert waited.ok, waited.table().to_string()
    assert changes(waited, "mailboxes") == []  # nothing scheduled again: it waited for the running test
    journal = (waited.record_dir / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert not [e for e in map(json.loads, journal) if e.get("event") == "intent"]


def test_preflight_records_the_allow_list_confirmation(env: dict[str, Any]) -> None:
    said = "J. Doe (Exchange Online administrator), 2026-11-30, Microsoft case 2611300040001234"
    result = run(env, only="preflight", params={"exchange_allow_list": said})
    assert result.ok, result.table().to_string()
    shown = (result.record_dir / "00-preflight.html").read_text(encoding="utf-8")
    assert "confirmed by the Exchange Online administrator: J. Doe" in shown and "WILL FAIL" not in shown
    assert evidence.read_manifest(result.record_dir)["parameters"]["exchange_allow_list"] == said
