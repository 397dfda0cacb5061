"""``psbridge demo --batch`` as the README gives it, in a process of its own, on the smallest fleet it
takes (one deployment, one organization): exit 0, and the batch record it made verifies."""

from __future__ import annotations

import shutil
from pathlib import Path

import labproc
import pytest

pytestmark = pytest.mark.timeout(600)


def test_demo_batch_reaches_a_verified_batch_record(lab_keys: Path, tmp_path: Path) -> None:
    state, records = tmp_path / "fleet", tmp_path / "records"
    for key in lab_keys.rglob("*.pem"):  # the session's keys: no new RSA keys to make
        target = state / "dep01" / key.relative_to(lab_keys)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(key, target)
    try:
        done = labproc.psbridge(state, "demo", "--batch", "--state", str(state), "--records", str(records),
                                "--deployments", "1", "--orgs", "1", timeout=500)
    finally:
        labproc.psbridge(state, "lab", "down", "--state", str(state))  # when the demo could not stop it
    said = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, said + done.stderr.decode("utf-8", "replace")
    assert "Verified" in said
    batches = list((records / "batches").iterdir())
    assert len(batches) == 1
    verified = labproc.psbridge(state, "verify", str(batches[0]))
    assert verified.returncode == 0, verified.stdout.decode("utf-8", "replace")
    assert b"intact batch, COMPLETE" in verified.stdout
