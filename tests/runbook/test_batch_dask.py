"""``psbridge batch --cluster``: a real Dask LocalCluster of separate worker processes on loopback.

- A worker killed (SIGKILL) while it runs a deployment's lead: Dask starts that org's work again
  on a worker, the org resumes from its interrupted record, every org completes, and the lab's
  world holds each change once.
- Two batches at once on one cluster, whose inventories call the same lab deployment by different
  names and customers: the deployment's lock (``distributed.Lock``, named by its servers) keeps
  their deployment-wide steps from ever overlapping.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.timeout(900)

distributed = pytest.importorskip("distributed")

DEPLOYMENTS = ["dep01", "dep02"]
ORGS = ["contoso", "fabrikam"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dask")
    state = root / "fleet"
    labproc.fleet_up(state, lab_keys, len(DEPLOYMENTS), len(ORGS))
    try:
        yield {"state": state, "root": root, "records": root / "records"}
    finally:
        labproc.lab_down(state)


@pytest.fixture(scope="module")
def cluster(fleet: dict[str, Any]) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    # The workers' environment: the one a partner's worker would have (no test's PSBRIDGE_*).
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(labproc.clean_env(fleet["state"]))
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=":0", memory_limit=0) as local, Client(local) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _inventory(fleet: dict[str, Any], name: str, rows: list[dict[str, str]]) -> Path:
    path = fleet["root"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "defaults": {"lab": str(fleet["state"]) + "/{deployment}",
                     "pfx_password": "lab:shared/{deployment}/pfx-password",
                     "client_secret": "lab:shared/{deployment}/client-secret",
                     "app_name": "psbridge dask ({deployment})"},
        "orgs": rows}), encoding="utf-8")
    return path


def _start(fleet: dict[str, Any], inventory: Path, address: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([labproc.PSBRIDGE, "batch", str(inventory), "--records", str(fleet["records"]),
                             "--cluster", address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=labproc.clean_env(fleet["state"]))


def _batch_dirs(fleet: dict[str, Any]) -> list[Path]:
    base = fleet["records"] / "batches"
    return sorted(base.iterdir()) if base.is_dir() else []


def test_a_worker_killed_mid_batch(fleet: dict[str, Any], cluster: Any) -> None:
    inventory = _inventory(fleet, "kill", [{"customer": f"kill-{dep}", "deployment": dep, "organization": org}
                                           for dep in DEPLOYMENTS for org in ORGS])
    proc = _start(fleet, inventory, cluster.scheduler.address)
    victim = victim_dir = None
    deadline = time.monotonic() + 300
    # Wait for a lead to be inside its state-changing steps, then kill the worker running it.
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for journal in fleet["records"].glob("kill-*/*/*/journal.jsonl"):
            events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
            if any(e.get("event") == "step-start" and e.get("step") == "install-certificate" for e in events):
                victim_dir = journal.parent.parent
                victim = f"{victim_dir.parent.name}/{victim_dir.name}"
                break
        time.sleep(0.2)
    if victim is None:
        proc.kill()
        said = proc.communicate()[0].decode("utf-8", "replace")
        pytest.fail(f"no lead reached install-certificate:\n{said}")
    processing = cluster.processing()
    address = next(a for a, keys in processing.items() if any(str(k).endswith(victim) for k in keys))
    pid = cluster.run(os.getpid, workers=[address])[address]
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    said = out.decode("utf-8", "replace")
    assert proc.returncode == 0, said
    table = pd.read_csv(_batch_dirs(fleet)[-1] / "summary.csv", dtype=str, keep_default_na=False)
    assert set(table["status"]) == {"complete"}, table.to_string()
    killed = table[table["customer"] + "/" + table["organization"] == victim]
    assert any(row.startswith("resumed") for row in killed["action"]), table.to_string()
    assert victim_dir is not None
    records = sorted(p for p in victim_dir.iterdir() if p.is_dir())
    states = [json.loads((r / "manifest.json").read_text())["status"] for r in records]
    assert states == ["interrupted", "complete"], states
    labproc.assert_each_change_once(fleet["state"], list(DEPLOYMENTS), "psbridge dask")
    verified = labproc.psbridge(fleet["state"], "verify", str(_batch_dirs(fleet)[-1]))
    assert verified.returncode == 0, verified.stdout


def test_two_batches_never_change_one_deployment_at_once(fleet: dict[str, Any], cluster: Any) -> None:
    # The same lab deployment, named differently by two partners' inventories, a lead in each.
    first = _inventory(fleet, "one", [{"customer": "one", "deployment": "east", "organization": "contoso"}])
    second = _inventory(fleet, "two", [{"customer": "two", "deployment": "west", "organization": "fabrikam"}])
    for path, _dep in ((first, "east"), (second, "west")):
        data = yaml.safe_load(path.read_text())
        data["defaults"]["lab"] = str(fleet["state"] / "dep01")
        data["defaults"]["pfx_password"] = "lab:shared/dep01/pfx-password"
        data["defaults"]["client_secret"] = "lab:shared/dep01/client-secret"
        data["defaults"]["app_name"] = "psbridge dask (dep01)"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
    before = set(_batch_dirs(fleet))
    procs = [_start(fleet, p, cluster.scheduler.address) for p in (first, second)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out.decode("utf-8", "replace")
    made = [d for d in _batch_dirs(fleet) if d not in before]
    assert len(made) == 2
    held = [h for d in made for h in json.loads((d / "locks.json").read_text())]
    deployment = [h for h in held if h["lock"].startswith("psbridge-deployment:")]
    assert {h["org"] for h in deployment} == {"one/contoso", "two/fabrikam"}
    assert len({h["lock"] for h in deployment}) == 1  # one lock: one deployment
    spans = sorted((h["acquired"], h["released"], h["org"]) for h in deployment)
    for (_, end, org), (start, _, other) in itertools.pairwise(spans):
        assert end <= start, f"{org} and {other} held the deployment at once"


def test_the_batch_killed_then_run_again(fleet: dict[str, Any], lab_keys: Path) -> None:
    """SIGKILL of ``psbridge batch`` and everything it started, in the lead's deployment-wide steps;
    the same command again finishes every org, each change once."""
    state = fleet["root"] / "killed-fleet"
    labproc.fleet_up(state, lab_keys, 1, len(ORGS))
    records = fleet["root"] / "killed-records"
    try:
        command = [labproc.PSBRIDGE, "batch", str(state / "inventory.yaml"), "--records", str(records)]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=labproc.clean_env(state), start_new_session=True)
        deadline, seen = time.monotonic() + 300, False
        while not seen and time.monotonic() < deadline and proc.poll() is None:
            for journal in records.glob("*/contoso/*/journal.jsonl"):
                seen = '"step": "entra-app"' in journal.read_text()
            time.sleep(0.1)
        assert seen, "the lead never reached entra-app"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(2)  # the kernels notice their parent is gone
        again = labproc.psbridge(state, "batch", str(state / "inventory.yaml"), "--records", str(records),
                                 timeout=600)
        assert again.returncode == 0, again.stdout.decode("utf-8", "replace")
        table = pd.read_csv(sorted((records / "batches").iterdir())[-1] / "summary.csv", dtype=str,
                            keep_default_na=False)
        assert set(table["status"]) == {"complete"}, table.to_string()
        lead = table[table["organization"] == "contoso"].iloc[0]
        assert lead["action"].startswith("resumed at entra-app"), lead["action"]
        labproc.assert_each_change_once(state, ["dep01"])
    finally:
        labproc.lab_down(state)
