"""The fleet's health board over the wire: ``psbridge batch`` of s2s-health, as a partner runs it (a
process of its own, from the inventory the setup used), over two lab deployments that drifted.

The fleet is set up first by a batch of exchange-online-s2s from the same inventory. Then the lab ages it:
acme's (dep01) S2S certificate ends in 10 days, and acme/fabrikam has a mailbox failing besides; every
mailbox of globex/fabrikam (dep02) fails; globex/contoso is left alone. The health batch's summary has
each org's verdict, reasons and days left, typed in the Parquet file; its page, opened in headless
Chromium with the network blocked, shows every org with its verdict, the most urgent certificate first,
the counts per verdict, and sorts the days as numbers; the record verifies and the world is unchanged.

The labs run in this process (``Lab``), not as ``lab up`` processes: the drift knobs change the Entra
twin's live directory, which only its own process holds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pandas as pd
import pytest
import yaml

from psbridge.lab import drift
from psbridge.lab.orchestrator import Lab

pytestmark = pytest.mark.timeout(900)

DEPLOYMENTS = {"dep01": "acme", "dep02": "globex"}
ORGS = ["contoso", "fabrikam"]
ALERT = "The remote server returned an error: (401) Unauthorized."


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("board")
    labs: dict[str, Lab] = {}
    try:
        for dep in DEPLOYMENTS:
            state = root / "fleet" / dep
            for key in lab_keys.rglob("*.pem"):
                target = state / key.relative_to(lab_keys)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(key, target)
            labs[dep] = Lab(state, servers=1, orgs=len(ORGS), webapi="ad").start()
        inventory = root / "fleet.yaml"
        # The setup's inventory, kept for the lifecycle: health leaves out what only the setup takes.
        inventory.write_text(yaml.safe_dump({
            "defaults": {"lab": str(root / "fleet") + "/{deployment}",
                         "pfx_password": "lab:{customer}/{deployment}/pfx-password",
                         "client_secret": "lab:{customer}/{deployment}/client-secret",
                         "app_name": "psbridge batch ({customer})"},
            "orgs": [{"customer": customer, "deployment": dep, "organization": org}
                     for dep, customer in DEPLOYMENTS.items() for org in ORGS]}), encoding="utf-8")
        env = {"root": root, "state": root / "fleet", "records": root / "records", "inventory": inventory,
               "labs": labs}
        done, _, table = _batch(env, "--runbook", "exchange-online-s2s")
        assert done.returncode == 0, _said(done)
        assert set(table["status"]) == {"complete"}, table.to_string()
        yield env
    finally:
        for lab in labs.values():
            lab.stop()


Done = labproc.subprocess.CompletedProcess[bytes]


def _said(done: Done) -> str:
    return (done.stdout + done.stderr).decode("utf-8", "replace")


def _batch(env: dict[str, Any], *args: str) -> tuple[Done, Path, pd.DataFrame]:
    done = labproc.psbridge(env["state"], "batch", str(env["inventory"]), "--records", str(env["records"]),
                            "--parallel", "2", *args, timeout=600)
    batches = sorted((env["records"] / "batches").iterdir())
    table = pd.read_csv(batches[-1] / "summary.csv", dtype=str, keep_default_na=False)
    return done, batches[-1], table.set_index(table["customer"] + "/" + table["organization"])


def _worlds(env: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {dep: {k: v for k, v in labproc.world(env["state"] / dep).items() if not k.startswith("msal/")}
            for dep in DEPLOYMENTS}


@pytest.fixture(scope="module")
def board(fleet: dict[str, Any]) -> dict[str, Any]:
    """The health batch over the drifted fleet: its output, record folder and summary."""
    acme, globex = fleet["labs"]["dep01"], fleet["labs"]["dep02"]
    assert acme.twin is not None
    thumb = drift.certificate_expires_in(acme.state_dir, acme.twin.directory, 10)
    drift.fail_mailbox(acme.state_dir, "fabrikam", "Bob Brown", ALERT)
    org = next(o for o in labproc.read_world(globex.state_dir)["organizations"] if o["name"] == "fabrikam")
    for box in org["crm"]["records"]["mailboxes"]:
        drift.fail_mailbox(globex.state_dir, "fabrikam", box["name"], ALERT)
    before = _worlds(fleet)
    done, where, table = _batch(fleet, "--runbook", "s2s-health")
    return {"done": done, "where": where, "table": table, "thumb": thumb, "before": before,
            "after": _worlds(fleet)}


def test_the_summary_has_each_orgs_verdict_and_reasons(board: dict[str, Any]) -> None:
    done, table = board["done"], board["table"]
    assert done.returncode == 0, _said(done)
    said = _said(done)
    assert "ignored, parameters of other runbooks" in said and "pfx_password" in said, said
    # The terminal's summary has the verdict and the days left too.
    assert "verdict" in said and "days_to_certificate_expiry" in said and "broken" in said, said
    assert set(table["status"]) == {"complete"}, table.to_string()
    verdicts = table["verdict"].to_dict()
    assert verdicts == {"acme/contoso": "action needed", "acme/fabrikam": "action needed",
                        "globex/contoso": "ok", "globex/fabrikam": "broken"}, table.to_string()
    for org in ORGS:
        row = table.loc[f"acme/{org}"]
        assert row["days_to_certificate_expiry"] == "10" and row["thumbprint"] == board["thumb"]
        assert f"the S2STokenIssuer certificate {board['thumb']} expires in 10 days" in row["reasons"]
    assert table.loc["acme/fabrikam", "mailboxes_failing"].startswith("Bob Brown")
    assert f"mailbox Bob Brown fails: {ALERT}" in table.loc["acme/fabrikam", "reasons"]
    assert table.loc["acme/contoso", "mailboxes_failing"] == ""
    ok = table.loc["globex/contoso"]
    assert ok["reasons"] == "" and 360 <= int(ok["days_to_certificate_expiry"]) <= 366
    assert "fails" in table.loc["globex/fabrikam", "reasons"]
    assert len(set(table["days_to_ews_end"])) == 1 and int(table.iloc[0]["days_to_ews_end"]) > 0


def test_the_parquet_summary_is_typed(board: dict[str, Any]) -> None:
    table = pd.read_parquet(board["where"] / "summary.parquet")
    for col in ("days_to_certificate_expiry", "days_to_end_of_support", "days_to_ews_end"):
        assert str(table[col].dtype) == "Int64", (col, table[col].dtype)
    assert str(table["verdict"].dtype) == "string" and str(table["reasons"].dtype) == "string"
    assert sorted(table["days_to_certificate_expiry"].dropna())[:2] == [10, 10]


def test_the_health_batch_changed_nothing_and_its_record_verifies(board: dict[str, Any],
                                                                  fleet: dict[str, Any]) -> None:
    assert board["after"] == board["before"]
    verified = labproc.psbridge(fleet["state"], "verify", str(board["where"]))
    assert verified.returncode == 0, _said(verified)
    assert b"intact batch, COMPLETE" in verified.stdout
    # The inventory as validated names what health left out.
    kept = yaml.safe_load((board["where"] / "inventory.yaml").read_text(encoding="utf-8"))
    assert set(kept["ignored"]) == {"pfx_password", "client_secret"}
    assert all("pfx_password" not in o["parameters"] for o in kept["orgs"])


def test_a_second_health_batch_reads_again(board: dict[str, Any], fleet: dict[str, Any]) -> None:
    # A reading is of now: the earlier complete health records are not a reason to skip.
    globex = fleet["labs"]["dep02"]
    assert globex.twin is not None
    removed = drift.remove_key_credentials(globex.twin.directory)
    try:
        done, _, table = _batch(fleet, "--runbook", "s2s-health", "--orgs", "globex/*")
    finally:
        drift.restore_key_credentials(globex.twin.directory, removed)
    assert done.returncode == 0, _said(done)
    assert set(table["status"]) == {"complete"} and set(table["verdict"]) == {"broken"}, table.to_string()
    assert all(a.startswith("ran") for a in table["action"])
    assert "does not trust the S2S certificate" in table.loc["globex/contoso", "reasons"]


def test_the_board_in_chromium(board: dict[str, Any]) -> None:
    from browser import chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = board["where"] / "index.html"
    rows = "Array.from(document.querySelectorAll('tbody tr'))"
    order = f"{rows}.map(function(r){{ return r.id; }})"
    days = ("Array.from(document.querySelectorAll('th')).findIndex(function(h){ "
            "return h.textContent === 'days_to_certificate_expiry'; })")
    with chromium(executable, width=1800, height=1500) as browser:
        opened = browser.open(page.as_uri(), ("tbody tr", "td.v-ok", "td.v-action-needed", "td.v-broken"))
        assert opened.requests == [page.as_uri()], opened.requests  # offline: nothing else is loaded
        assert opened.complaints == [], opened.complaints
        assert opened.elements == {"tbody tr": 4, "td.v-ok": 1, "td.v-action-needed": 2, "td.v-broken": 1}
        for verdict in ("ok", "action needed", "broken"):
            assert f"\t{verdict}\t" in opened.text, opened.text
        # The most urgent certificate first: acme's two (10 days), then globex's, in inventory order.
        urgent_first = ["acme-contoso", "acme-fabrikam", "globex-contoso", "globex-fabrikam"]
        assert browser.evaluate(order) == urgent_first
        counts = browser.evaluate("document.getElementById('board-counts').innerText")
        assert "action needed: 2" in counts and "ok: 1" in counts and "broken: 1" in counts, counts
        shots = Path(os.environ.get("PSBRIDGE_TEST_SCREENSHOTS") or board["where"])
        shots.mkdir(parents=True, exist_ok=True)
        (shots / "fleet-board.png").write_bytes(opened.screenshot)
        # Opened sorted ascending by the days: a click turns it (equal days keep their order).
        browser.evaluate(f"document.querySelectorAll('th')[{days}].click()")
        assert browser.evaluate(order) == urgent_first[2:] + urgent_first[:2]
