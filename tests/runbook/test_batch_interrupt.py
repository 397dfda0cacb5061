"""Ctrl-C in ``psbridge batch``, over the wire: a terminal's SIGINT to the batch's process group while
the leads run their deployment-wide steps.

The batch stops cleanly (exit code 3, its record says interrupted), every org's record is honest
(complete and intact, or interrupted: never a record that claims more than it did), nothing it
started is left running (workers, zygotes, kernels), and the same command again finishes every
org with each change once in the lab's world.
"""

from __future__ import annotations

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
import psutil
import pytest

from psbridge import evidence

pytestmark = pytest.mark.timeout(900)

DEPLOYMENTS, ORGS = 2, 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ctrl-c")
    state = root / "fleet"
    labproc.fleet_up(state, lab_keys, DEPLOYMENTS, ORGS)
    try:
        yield {"state": state, "records": root / "records", "inventory": state / "inventory.yaml"}
    finally:
        labproc.lab_down(state)


def _started_by(proc: subprocess.Popen[bytes], seen: dict[int, psutil.Process]) -> None:
    """Every process below the batch now (workers, zygotes, kernels), kept by pid and start time."""
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            seen.setdefault(child.pid, child)
    except psutil.NoSuchProcess:
        pass


def _alive(seen: dict[int, psutil.Process]) -> list[str]:
    left = []
    for p in seen.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # is_running checks the start time too
                left.append(f"{p.pid} {' '.join(p.cmdline())[:200]}")
        except psutil.NoSuchProcess:
            pass
    return left


def _steps_started(records: Path) -> list[str]:
    journals = records.glob("*/*/*/journal.jsonl")
    return [line for j in journals for line in j.read_text().splitlines() if '"step": "entra-app"' in line]


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(fleet: dict[str, Any]) -> None:
    command = [labproc.PSBRIDGE, "batch", str(fleet["inventory"]), "--records", str(fleet["records"]),
               "--parallel", "4"]
    # A session of its own, so that SIGINT goes to its process group as a terminal's Ctrl-C does.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=labproc.clean_env(fleet["state"]), start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.monotonic() + 300
        while not _steps_started(fleet["records"]) and time.monotonic() < deadline and proc.poll() is None:
            _started_by(proc, seen)
            time.sleep(0.1)
        assert _steps_started(fleet["records"]), "no lead reached entra-app"
        _started_by(proc, seen)
        assert any("zygote" in " ".join(p.cmdline()) for p in seen.values() if p.is_running()), \
            [" ".join(p.cmdline())[:120] for p in seen.values()]
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    said = out.decode("utf-8", "replace")
    assert proc.returncode == 3, said
    assert "run the same command again" in said

    deadline = time.monotonic() + 30
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(seen), _alive(seen)

    where = sorted((fleet["records"] / "batches").iterdir())[-1]
    batch = evidence.read_manifest(where)
    assert batch["status"] == "interrupted"
    table = pd.read_csv(where / "summary.csv", dtype=str, keep_default_na=False)
    assert set(table["status"]) <= {"interrupted", "complete"}, table.to_string()
    assert "interrupted" in set(table["status"])
    linked = 0
    for row in table.to_dict("records"):
        org = fleet["records"] / row["customer"] / row["organization"]
        # The record this batch's run of the org left (the runner writes an interrupted one on Ctrl-C).
        ran = [r for r in (sorted(org.iterdir()) if org.is_dir() else [])
               if (r / "manifest.json").is_file()
               and (evidence.read_manifest(r).get("batch") or {}).get("id") == batch["batch_id"]]
        if not ran:
            assert row["status"] == "interrupted" and not row["record"], row  # it never started
            continue
        linked += 1
        assert (where / row["record"]).resolve() == ran[-1].resolve(), row
        found = evidence.inspect(where / row["record"])
        if row["status"] == "complete":
            assert found.verdict == evidence.Verdict.COMPLETE, (row, found)
        else:
            assert found.verdict == evidence.Verdict.INTERRUPTED, (row, found)
            manifest = found.manifest or {}
            assert manifest.get("status") != "complete", row
            assert any(s.get("status") != "succeeded" for s in manifest.get("steps", [])), manifest
            cut = {s["id"] for s in manifest["steps"] if s["status"] == "interrupted"}
            assert row["failed_step"] in cut, row
    assert linked, table.to_string()  # the leads were running: their records are named
    # The interrupted batch's record verifies, orgs without a record of their own included.
    from psbridge.batch import record as batch_record

    assert batch_record.verify(where) == []

    again = labproc.psbridge(fleet["state"], *command[1:], timeout=600)
    assert again.returncode == 0, again.stdout.decode("utf-8", "replace")
    where = sorted((fleet["records"] / "batches").iterdir())[-1]
    table = pd.read_csv(where / "summary.csv", dtype=str, keep_default_na=False)
    assert set(table["status"]) <= {"complete", "skipped"}, table.to_string()
    assert len(table) == DEPLOYMENTS * ORGS
    assert evidence.read_manifest(where)["status"] == "complete"
    labproc.assert_each_change_once(fleet["state"], [f"dep{i:02d}" for i in range(1, DEPLOYMENTS + 1)])
    verified = labproc.psbridge(fleet["state"], "verify", str(where))
    assert verified.returncode == 0, json.dumps(verified.stdout.decode("utf-8", "replace"))
