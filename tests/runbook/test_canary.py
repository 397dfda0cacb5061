"""The canary test: the whole runbook with secret values nobody could mistake, then a search for them.

As the README says a consultant works: the lab started by ``psbridge lab up`` in a process of its
own, ``psbridge run`` from a parameter file in another. The lab's account passwords (the one the
runbook signs in with and the one it never uses), the PFX password and the client secret the twin
issues are canaries. The runbook signs in to the organization's Web API with that account's
password too: over Windows authentication (an Active Directory deployment), or sent to AD FS with a
confidential client whose secret is one more canary (an Internet-facing deployment). Afterwards
every file of the record, the run's captured output, every file the lab wrote during the run (its
secret store aside: it holds them by design) and the token cache are searched for each canary in
every form the redactor knows (:mod:`psbridge.secretforms`: escaped for Python, JSON, HTML, URLs;
UTF-16LE; base64; hex).
"""

from __future__ import annotations

import os
import secrets as pysecrets
from collections.abc import Iterator
from pathlib import Path

import labproc
import pytest

from psbridge import secrets as sec
from psbridge.secretforms import forms

# Quotes, backslashes, $ and non-ASCII (issue 10's first canary) ...
QUOTED = "q'u\"o\\te$(x)é"
# ... and every character class a value could break an escaping with.
EVERY_CLASS = "'\"\\$`;&|<>%+#=,*?[]{}()~^!@ ü€中😀"


# Each canary class against one deployment of the Web API: AD FS's username/password sign-in, and
# Windows authentication.
@pytest.fixture(params=[(QUOTED, "ifd"), (EVERY_CLASS, "ad")],
                ids=["quotes-backslash-dollar-non-ascii-adfs", "every-class-ntlm"])
def canaries(request: pytest.FixtureRequest) -> dict[str, str]:
    tail, deployment = request.param
    made = {name: f"canary-{name}-{pysecrets.token_hex(4)}-{tail}"
            for name in ("winrm", "operator", "pfx")}
    if deployment == "ifd":
        made["adfs-client-secret"] = f"canary-adfs-client-{pysecrets.token_hex(4)}-{tail}"
    return {**made, "_deployment": deployment}


@pytest.fixture
def lab_in_another_process(tmp_path: Path, lab_keys: Path, canaries: dict[str, str]) -> Iterator[Path]:
    state = tmp_path / "lab"
    state.mkdir()
    # The lab makes its accounts' passwords once a state directory and keeps them in its store:
    # put the canaries there first, and `lab up` uses them.
    before = os.environ.get("PSBRIDGE_LAB_STATE")
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    try:
        sec.store("lab:accounts/crmadmin", canaries["winrm"])
        sec.store("lab:accounts/operator", canaries["operator"])
        sec.store("lab:canary-ltd/contoso/pfx-password", canaries["pfx"])
        if "adfs-client-secret" in canaries:
            sec.store("lab:adfs/client-secret", canaries["adfs-client-secret"])
    finally:
        if before is None:
            os.environ.pop("PSBRIDGE_LAB_STATE", None)
        else:
            os.environ["PSBRIDGE_LAB_STATE"] = before
    labproc.lab_up(state, lab_keys, "--webapi", canaries["_deployment"])
    try:
        yield state
    finally:
        labproc.lab_down(state)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_no_canary_anywhere_after_a_whole_run(tmp_path: Path, lab_in_another_process: Path,
                                              canaries: dict[str, str]) -> None:
    state = lab_in_another_process
    records = tmp_path / "records"
    deployment = canaries.pop("_deployment")
    params = labproc.params_file(tmp_path / "canary.yaml", {
        "customer": "canary-ltd", "organization": "contoso", "lab": str(state),
        "winrm_password": "lab:accounts/crmadmin",
        "pfx_password": "lab:canary-ltd/contoso/pfx-password",
        "client_secret": "lab:canary-ltd/contoso/client-secret",
        "app_name": "psbridge canary", "cloud": "lab",
        # The Web API's sign-in takes the same account's password: to AD FS (a confidential
        # client, its secret a canary too) or over Windows authentication.
        "crm_password": "lab:accounts/crmadmin",
        **({"crm_sign_in": "password", "adfs_client_secret": "lab:adfs/client-secret"}
           if deployment == "ifd" else {}),
    })
    started = {p: p.stat().st_mtime_ns for p in _files(state)}
    outputs = []
    # In two parts, to read the client secret the twin issued before step 4's teardown deletes it.
    first = labproc.psbridge(state, "run", str(params), "--records", str(records), "--to", "entra-app")
    outputs += [first.stdout, first.stderr]
    assert first.returncode == 0, (first.stdout + first.stderr).decode()
    os.environ["PSBRIDGE_LAB_STATE"] = str(state)
    canaries["client-secret"] = sec.resolve("lab:canary-ltd/contoso/client-secret").reveal()
    rest = labproc.psbridge(state, "run", str(params), "--records", str(records), "--from", "configure-s2s")
    outputs += [rest.stdout, rest.stderr]
    assert rest.returncode == 0, (rest.stdout + rest.stderr).decode()
    record = sorted((records / "canary-ltd" / "contoso").iterdir())[-1]
    verify = labproc.psbridge(state, "verify", str(record))
    outputs += [verify.stdout, verify.stderr]
    assert verify.returncode == 0, verify.stdout.decode()
    # The Web API was signed in to and used: every mailbox enabled.
    assert "Test &amp; Enable: 4 success, 0 failure" in (record / "70-mailboxes.html").read_text("utf-8")

    searched: dict[str, bytes] = {f"output {i}": out for i, out in enumerate(outputs)}
    for p in _files(records):
        searched[str(p)] = p.read_bytes()
    written = [p for p in _files(state)
               if p.name != "secrets.json" and started.get(p) != p.stat().st_mtime_ns]
    assert any(p.name == "world.json" for p in written) and any(p.name == "entra.json" for p in written)
    for p in written:
        searched[str(p)] = p.read_bytes()
    cache = state.parent / "msal"
    assert _files(cache), "the sign-in left no token cache to search"
    for p in _files(cache):
        searched[str(p)] = p.read_bytes()
    assert len(searched) > 20
    leaks = []
    for name, canary in canaries.items():
        patterns = {f.encode("utf-8") for f in forms(canary)} | {canary.encode("utf-16-le")}
        for where, data in searched.items():
            for pattern in patterns:
                if pattern in data:
                    leaks.append(f"{name} in {where} as {pattern[:40]!r}")
                    break
    assert not leaks, "\n".join(leaks)
    # The record says where the secrets live, by reference.
    manifest = (record / "manifest.json").read_text("utf-8")
    assert "lab:canary-ltd/contoso/pfx-password" in manifest and "lab:accounts/crmadmin" in manifest
