"""A tenant's Graph gate in ``psbridge batch``, over the wire: three lab deployments in one tenant, Graph
steps bounded by ``--graph-concurrency``, and a Retry-After one org was given honoured by the others.

The deployments' twins all call their tenant by one domain; the inventory names it for every org,
so the batch takes them for one tenant, as a customer's several deployments in its one Entra ID
tenant are. The first batch sets every org up. The second runs the summary (a Graph step) of the
orgs that do not lead a deployment (their leads' records stand for them, so they all start at
once) while the first deployment's twin answers the first Graph request it sees with ``429`` and
``Retry-After``: the batch finishes, no Graph step of the tenant starts while the hold lasts, an org
of another deployment waited for it, and at most ``--graph-concurrency`` ran at once although the
deployments' locks let three. (The first deployment's orgs come first in the inventory, so one of
them is among the first to run, and other deployments' orgs are still to come when it is throttled.)
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pandas as pd
import pytest
import yaml

from psbridge.batch import graphgate
from psbridge.lab.entra.knobs import Knobs

pytestmark = pytest.mark.timeout(900)

DEPLOYMENTS, ORGS = 3, 4
LIMIT = 2
RETRY_AFTER = 8
# The worker reads a step's Retry-After reports every WATCH_INTERVAL and tells the scheduler: a
# step that started within that much of the answer started before the hold could be known.
KNOWN_WITHIN = 1.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("graph-gate")
    state = root / "fleet"
    names = [f"dep{i:02d}" for i in range(1, DEPLOYMENTS + 1)]
    labproc.fleet_up(state, lab_keys, DEPLOYMENTS, ORGS)
    labs = {dep: json.loads((state / dep / "lab.json").read_text())["entra"] for dep in names}
    domains = {lab["tenant_domain"] for lab in labs.values()}
    assert len(domains) == 1, domains
    inventory = yaml.safe_load((state / "inventory.yaml").read_text())
    inventory["defaults"]["tenant"] = domains.pop()
    (root / "inventory.yaml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    try:
        yield {"state": state, "records": root / "records", "inventory": root / "inventory.yaml",
               "knobs": [Path(lab["knobs_file"]) for lab in labs.values()], "orgs": inventory["orgs"]}
    finally:
        labproc.lab_down(state)


def _batch(fleet: dict[str, Any], *args: str) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    done = labproc.psbridge(fleet["state"], "batch", str(fleet["inventory"]),
                            "--records", str(fleet["records"]), "--parallel", str(ORGS),
                            "--graph-concurrency", str(LIMIT), *args, timeout=600)
    return done, sorted((fleet["records"] / "batches").iterdir())[-1]


def _gate(where: Path, prefix: str) -> list[dict[str, Any]]:
    return [h for h in json.loads((where / "locks.json").read_text()) if h["lock"].startswith(prefix)]


def _most_at_once(spans: list[dict[str, Any]]) -> int:
    edges = sorted([(h["acquired"], 1) for h in spans] + [(h["released"], -1) for h in spans])
    most = now = 0
    for _, step in edges:  # at one instant an end sorts before a start: a handover is not an overlap
        now += step
        most = max(most, now)
    return most


def test_graph_steps_bounded_per_tenant(fleet: dict[str, Any]) -> None:
    done, where = _batch(fleet)
    assert done.returncode == 0, done.stdout.decode("utf-8", "replace")
    leases = _gate(where, graphgate.SEMAPHORE)
    assert len({h["lock"] for h in leases}) == 1, leases  # one tenant
    # Each lead's entra-app, configure-s2s and summary; each other org's summary.
    assert len(leases) == DEPLOYMENTS * (3 + ORGS - 1), leases
    assert 1 <= _most_at_once(leases) <= LIMIT
    assert json.loads((where / "manifest.json").read_text())["graph_concurrency"] == LIMIT


def test_a_retry_after_holds_the_tenants_other_graph_steps(fleet: dict[str, Any]) -> None:
    leads = {o["deployment"]: o["organization"] for o in reversed(fleet["orgs"])}
    assert len(set(leads.values())) == 1  # the labs name their orgs alike: one pattern leaves the leads out
    lead = next(iter(leads.values()))
    assert all(o["organization"][0] != lead[0] for o in fleet["orgs"] if o["organization"] != lead)
    Knobs(fleet["knobs"][0].parent).set(throttle=1, retry_after=RETRY_AFTER)
    try:
        done, where = _batch(fleet, "--orgs", f"*/[!{lead[0]}]*", "--only", "summary")
    finally:
        for path in fleet["knobs"]:
            Knobs(path.parent).reset()
    said = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, said
    table = pd.read_csv(where / "summary.csv", dtype=str, keep_default_na=False)
    members = DEPLOYMENTS * (ORGS - 1)
    assert set(table["status"]) == {"complete"} and len(table) == members, table.to_string()

    gate = json.dumps(_gate(where, "psbridge-graph"), indent=1)
    holds = _gate(where, graphgate.HOLD)
    assert len(holds) == 1, gate  # the twin's one throttled request
    assert holds[0]["org"].startswith("fleet-dep01/"), gate
    for hold in holds:
        assert hold["released"] - hold["acquired"] == pytest.approx(RETRY_AFTER)
    leases = _gate(where, graphgate.SEMAPHORE)
    assert len(leases) == members, gate
    assert _most_at_once(leases) == LIMIT, gate  # three deployments' locks free, two let in
    for lease in leases:
        for hold in holds:
            during = hold["acquired"] + KNOWN_WITHIN <= lease["acquired"] < hold["released"]
            assert not during, (lease, hold, gate)
    # Another deployment's org waited for the hold, until it passed.
    waited = _gate(where, graphgate.WAITED)
    assert waited and not any(w["org"].startswith("fleet-dep01/") for w in waited), gate
    for wait in waited:
        passed = [h for h in holds if h["acquired"] <= wait["acquired"] < h["released"]]
        assert passed and wait["released"] >= max(h["released"] for h in passed), (wait, gate)
    # A throttled org's record says how long Graph asked it to wait, and when.
    hold = holds[0]
    row = table[table["customer"] + "/" + table["organization"] == hold["org"]].iloc[0]
    manifest = json.loads((where / row["record"] / "manifest.json").read_text())
    summary = next(s for s in manifest["steps"] if s["id"] == "summary")
    assert summary["timings_s"]["graph_retry_after"] == RETRY_AFTER
    assert summary["timings_s"]["graph_retry_after_at"] == pytest.approx(hold["acquired"], abs=0.01)
