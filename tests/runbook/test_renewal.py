"""s2s-renew-certificate over the wire, as a consultant runs it (``psbridge run`` in a process of its own,
against a lab serving from another): a plan that changes nothing; a renewal from start to end; and renewals
killed with SIGKILL mid-way — during the install on the second server, right after the new key credential
was added, right after the switch's alternative entry left the configuration database — then resumed
(``--resume``) with nothing doubled or lost, read from the lab's world and tenant.

Each renewal starts from the one before it: one deployment, one organization, set up first by the
exchange-online-s2s runbook.
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
ORG = "contoso"
SERVICE_ACCOUNT = "LAB\\CRMAsyncService"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("renewal")
    state = root / "lab"
    labproc.lab_up(state, lab_keys, "--orgs", "1", "--webapi", "ad")
    try:
        setup = labproc.params_file(root / "setup.yaml", {
            "customer": "renew", "organization": ORG, "lab": str(state),
            "pfx_password": f"lab:renew/{ORG}/pfx-password",
            "client_secret": f"lab:renew/{ORG}/client-secret",
            "app_name": f"psbridge renew {ORG}"})
        done = labproc.psbridge(state, "run", str(setup), "--records", str(root / "records"))
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        renew = labproc.params_file(root / "renew.yaml", {
            "customer": "renew", "organization": ORG, "lab": str(state),
            "new_pfx_password": f"lab:renew/{ORG}/pfx-password-renewal"})
        yield {"state": state, "root": root, "records": root / "records", "params": renew}
    finally:
        labproc.lab_down(state)


def _run(env: dict[str, Any], *args: str, **extra: str) -> Any:
    return labproc.psbridge(env["state"], "run", str(env["params"]), "--runbook", "s2s-renew-certificate",
                            "--records", str(env["records"]), *args, **extra)


def _sha1(key: str) -> str:
    return hashlib.sha1(base64.b64decode(key)).hexdigest().upper()  # noqa: S324 - a thumbprint is SHA-1


def _issuer(state: Path) -> str:
    world = labproc.read_world(state)
    issuers = [c for c in world["deployment"]["certificates"] if c["certificate_type"] == "S2STokenIssuer"]
    assert len(issuers) == 1
    return str(issuers[0]["thumbprint"])


def _renewed(env: dict[str, Any], old: str) -> str:
    """The world after a renewal: the new certificate everywhere once, the old one nowhere."""
    world = labproc.read_world(env["state"])
    s2s = world["deployment"]["certificates"]
    assert [c["certificate_type"] for c in s2s] == ["S2STokenIssuer"], s2s  # no alternative entry left
    new = str(s2s[0]["thumbprint"])
    assert new != old
    for server in world["servers"]:
        thumbs = [c["thumbprint"] for c in server["store"]]
        assert thumbs.count(new) == 1 and old not in thumbs, (server["name"], thumbs)
        entry = next(c for c in server["store"] if c["thumbprint"] == new)
        assert entry["has_private_key"] and SERVICE_ACCOUNT in entry["key_readers"]
        uploads = env["state"] / "servers" / server["name"] / "files" / "C" / "Windows" / "Temp" / "psbridge"
        assert not uploads.exists() or not list(uploads.iterdir())
    directory = labproc.read_directory(env["state"])
    crm_sp = next(s for s in directory["servicePrincipals"] if s["appId"] == DYNAMICS_CRM)
    trusted = [_sha1(k["key"]) for k in crm_sp["keyCredentials"] if k.get("key")]
    assert trusted.count(new) == 1 and old not in trusted, trusted
    org = next(o for o in world["organizations"] if o["name"] == ORG)
    boxes = [m for m in org["crm"]["records"]["mailboxes"] if m.get("emailserverprofile")]
    assert boxes and all(m["mailboxstatus"] == 1 and not m["testemailconfigurationscheduled"] for m in boxes)
    return new


def test_a_plan_changes_nothing(env: dict[str, Any]) -> None:
    before = labproc.world(env["state"])
    done = labproc.psbridge(env["state"], "plan", str(env["params"]), "--runbook", "s2s-renew-certificate",
                            "--records", str(env["records"]))
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert b"AlternativeS2STokenIssuer" in done.stdout
    assert labproc.world(env["state"]) == before


def test_a_renewal_from_start_to_end(env: dict[str, Any]) -> None:
    old = _issuer(env["state"])
    done = _run(env)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    _renewed(env, old)
    again = _run(env, "--from", "install-alternative")
    assert again.returncode == 0, again.stdout.decode()
    assert b"already done" in again.stdout or b"nothing changed" in again.stdout


@pytest.mark.parametrize("point", ["certificate-reconfiguration@CRM02:after",
                                   "PATCH /servicePrincipals/{id}:after",
                                   "remove-crm-certificate@CRM01:after"])
def test_killed_mid_way_then_resumed_nothing_doubled_or_lost(env: dict[str, Any], point: str) -> None:
    old = _issuer(env["state"])
    killed = _run(env, **{ENV_CRASH_AT: point, ENV_CRASH_PARENT: "1"})
    assert killed.returncode == -9, f"the run was not killed at {point}:\n{killed.stdout.decode()}"
    resumed = _run(env, "--resume")
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    assert b"had been interrupted" in resumed.stdout
    records = sorted(p for p in (env["records"] / "renew" / ORG).iterdir() if p.is_dir())
    manifest = json.loads((records[-2] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "interrupted"
    flying = [c["action"] for c in manifest["changes"] if c["outcome"] == "in flight"]
    assert flying == [point.rsplit(":", 1)[0].split("@")[0]], manifest["changes"]
    _renewed(env, old)
