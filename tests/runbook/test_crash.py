"""Crash safety: a run killed with SIGKILL at each state-changing point of steps 10, 20, 30 and 40.

The runner and its kernel die together (``PSBRIDGE_TEST_CRASH_AT`` names the point; the kernel
kills its parent, the runner, then itself), right after the change and before its outcome is on
disk — the moment that leaves the most to reconcile — or just before the change. Then
``psbridge run --resume`` and, from the lab's own world and tenant:

- nothing is doubled: one certificate of this org in each server's store, one app registration,
  one key credential for the certificate on the Dynamics CRM service principal, no client secret
  left after the teardown;
- no PFX is left in any server's upload folder;
- the killed run's record is *interrupted* (``psbridge verify`` exit code 4) and names what was done
  and what was in flight; the resumed one is complete (exit code 0).

One lab in another process for the module (as ``psbridge lab up`` runs it), one organization a
crash point, so the points do not disturb each other.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pytest

from psbridge.intents import ENV_CRASH_AT, ENV_CRASH_PARENT

DYNAMICS_CRM = "00000007-0000-0000-c000-000000000000"
# (org, crash point, the step a first run goes to before the run that is killed)
POINTS = [
    ("contoso", "store-secret@lab:crash/contoso/pfx-password:after", None),
    ("fabrikam", "write-pfx:after", None),
    ("adventureworks", "upload@CRM01:after", None),
    ("northwind", "certificate-reconfiguration@CRM01:after", None),
    ("tailspin", "POST /applications:after", None),
    ("wingtip", "POST /applications/{id}/addPassword:after", None),
    ("litware", "POST /servicePrincipals/{id}/appRoleAssignments:before", None),
    ("proseware", "upload@CRM01:after", "entra-app"),
    ("org09", "configure-server-side-sync:after", "entra-app"),
    ("org10", "POST /applications/{id}/removePassword:after", "entra-app"),
]


@pytest.fixture(scope="module")
def crash_lab(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("crash")
    state = root / "lab"
    labproc.lab_up(state, lab_keys, "--orgs", str(len(POINTS)))
    try:
        yield {"state": state, "root": root, "records": root / "records"}
    finally:
        labproc.lab_down(state)


def _params(env: dict[str, Path], org: str) -> Path:
    return labproc.params_file(env["root"] / f"{org}.yaml", {
        "customer": "crash", "organization": org, "lab": str(env["state"]),
        "pfx_password": f"lab:crash/{org}/pfx-password", "client_secret": f"lab:crash/{org}/client-secret",
        "app_name": f"psbridge crash {org}",
    })


def _run(env: dict[str, Path], params: Path, *args: str, **extra: str) -> Any:
    return labproc.psbridge(env["state"], "run", str(params), "--records", str(env["records"]), *args,
                            **extra)


def _records(env: dict[str, Path], org: str) -> list[Path]:
    base = env["records"] / "crash" / org
    return sorted(p for p in base.iterdir() if p.is_dir())


def _sha1(key: str) -> str:
    return hashlib.sha1(base64.b64decode(key)).hexdigest().upper()  # noqa: S324 - a thumbprint is SHA-1


def _thumbprint(record: Path) -> str:
    manifest = json.loads((record / "manifest.json").read_text(encoding="utf-8"))
    for step in manifest["steps"]:
        if step["id"] == "certificate":
            return str(step["facts"]["thumbprint"])
    raise AssertionError("no thumbprint in the record")


@pytest.mark.parametrize(("org", "point", "first"), POINTS, ids=[f"{o}-{p}" for o, p, _ in POINTS])
def test_killed_at_a_change_then_resumed_does_nothing_twice(crash_lab: dict[str, Path], org: str, point: str,
                                                            first: str | None) -> None:
    env = crash_lab
    params = _params(env, org)
    if first:
        done = _run(env, params, "--to", first)
        assert done.returncode == 0, done.stdout.decode()
    killed = _run(env, params, *(("--from", "configure-s2s") if first else ()),
                  **{ENV_CRASH_AT: point, ENV_CRASH_PARENT: "1"})
    assert killed.returncode == -9, f"the run was not killed at {point}:\n{killed.stdout.decode()}"
    interrupted = _records(env, org)[-1]
    assert not (interrupted / "manifest.json").exists()
    said = labproc.psbridge(env["state"], "verify", str(interrupted))
    assert said.returncode == 4 and b"INTERRUPTED" in said.stdout, said.stdout.decode()

    resumed = _run(env, params, "--resume")
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert b"had been interrupted" in resumed.stdout
    *_, killed_record, last = _records(env, org)
    assert killed_record == interrupted
    # The killed run's record is honest now: interrupted, with what was done and what was in flight.
    said = labproc.psbridge(env["state"], "verify", str(interrupted))
    assert said.returncode == 4, said.stdout.decode()
    manifest = json.loads((interrupted / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "interrupted" and manifest["interrupted_step"]
    action = point.rsplit(":", 1)[0].split("@")[0]
    flying = [c for c in manifest["changes"] if c["outcome"] == "in flight"]
    assert [c["action"] for c in flying] == [action], manifest["changes"]
    assert labproc.psbridge(env["state"], "verify", str(last)).returncode == 0

    # From the world: nothing doubled, nothing left behind.
    thumb = _thumbprint(last)
    world = labproc.read_world(env["state"])
    for server in world["servers"]:
        mine = [c for c in server["store"] if f" {org} " in c["subject"]]
        assert [c["thumbprint"] for c in mine] == [thumb], (server["name"], mine)
        uploads = env["state"] / "servers" / server["name"] / "files" / "C" / "Windows" / "Temp" / "psbridge"
        assert not uploads.exists() or not list(uploads.iterdir()), list(uploads.iterdir())
    directory = labproc.read_directory(env["state"])
    apps = [a for a in directory["applications"] if a["displayName"] == f"psbridge crash {org}"]
    assert len(apps) == 1 and apps[0]["passwordCredentials"] == [], apps
    crm_sp = next(s for s in directory["servicePrincipals"] if s["appId"] == DYNAMICS_CRM)
    trusted = [k for k in crm_sp["keyCredentials"] if k.get("key") and _sha1(k["key"]) == thumb]
    assert len(trusted) == 1, crm_sp["keyCredentials"]
