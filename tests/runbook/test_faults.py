"""Faults in the middle of a run: a connection that drops during the upload or the install, sign-in
refused half-way, a storm of 429s from Graph, the official script failing.

Each ends with a clear message (the server's own words where it gave any; a dropped connection
called a dropped connection), an honest record (failed, verifiable, naming the step), nothing left
on a server — and a next run that finishes the job without doing anything twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from psbridge import crm, evidence
from psbridge import secrets as sec
from psbridge.certs import generate_self_signed
from psbridge.lab.orchestrator import Lab
from psbridge.remote.errors import BridgeError, ConnectionLost, TransferError
from psbridge.remote.profile import ConnectionProfile
from psbridge.remote.session import Session
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.runner import Runner, RunResult

ROOT = Path(__file__).resolve().parents[2]
BOOK = registry.load("exchange-online-s2s")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[None]:
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(tmp_path / "msal")
    try:
        yield
    finally:
        os.environ.pop("PSBRIDGE_TOKEN_CACHE", None)


def _run(lab: Lab, records: Path, **kw: Any) -> RunResult:
    return Runner(BOOK, demo_parameters(BOOK, lab.state_dir, "contoso"), records_root=records).run(**kw)


def _uploads(lab: Lab) -> list[Path]:
    found = []
    for server in lab.config.servers:
        folder = lab.state_dir / "servers" / server.name / "files" / "C" / "Windows" / "Temp" / "psbridge"
        found += list(folder.iterdir()) if folder.exists() else []
    return found


def _store(lab: Lab, server: str) -> list[str]:
    import json

    world = json.loads((lab.state_dir / "world.json").read_text(encoding="utf-8"))
    return [c["thumbprint"] for s in world["servers"] if s["name"] == server for c in s["store"]]


def test_a_connection_dropped_during_upload_or_install_is_named_and_cleaned_up(
        lab_factory: Callable[..., Lab], tmp_path: Path) -> None:
    """CertificateReconfiguration with the connection dropped after N requests, for every N of a run.

    Wherever it falls: a read is re-sent once; a change is never re-sent and the error says the
    connection dropped (not a sign-in failure); the PFX is removed over a new session either way.
    """
    pfx = tmp_path / "s2s.pfx"
    generate_self_signed("contoso", sec.Secret("pfx-pass-1"), days=30).write(pfx)
    seen: dict[str, int] = {}
    lab = lab_factory(servers=1, orgs=1)
    account = ConnectionProfile.from_lab(lab.config, server="CRM01")
    for n in range(1, 60, 2):
        lab.clear_faults()
        with Session(account) as s:
            for thumb in _store(lab, "CRM01"):  # back to a store without the certificate
                s.invoke("Remove-Item", LiteralPath=f"Cert:\\LocalMachine\\My\\{thumb}", DeleteKey=True)
        lab.set_faults("CRM01", drop_after=n)
        with Session(account) as s:
            try:
                crm.certificate_reconfiguration(s, pfx, sec.Secret("pfx-pass-1"), "LAB\\CRMAsyncService")
                seen["succeeded"] = seen.get("succeeded", 0) + 1
            except (TransferError, ConnectionLost) as e:
                assert "dropped" in str(e) and "credentials" not in str(e), (n, str(e))
                seen[type(e).__name__] = seen.get(type(e).__name__, 0) + 1
            except BridgeError as e:
                pytest.fail(f"drop after {n}: {type(e).__name__}: {e}")
        assert _uploads(lab) == [], f"drop after {n} left {_uploads(lab)}"
    # The sweep covered drops during the upload and during the install, and runs that recovered.
    assert seen.get("TransferError") and seen.get("ConnectionLost") and seen.get("succeeded"), seen


def test_sign_in_refused_mid_run_fails_clearly_and_the_next_run_finishes(
        fresh_lab: Lab, tmp_path: Path, cache: None) -> None:
    records = tmp_path / "records"
    assert _run(fresh_lab, records, until="certificate").ok
    fresh_lab.set_faults("CRM02", deny_auth=True)
    failed = _run(fresh_lab, records, start="install-certificate")
    assert not failed.ok and failed.failed_step is not None
    assert failed.failed_step.step.id == "install-certificate"
    assert "refused the credentials of LAB\\crmadmin" in (failed.failed_step.error or "")
    assert evidence.inspect(failed.record_dir).verdict == evidence.Verdict.FAILED
    assert _uploads(fresh_lab) == []
    fresh_lab.clear_faults()
    done = _run(fresh_lab, records, resume=True)
    assert done.ok, done.table().to_string()
    assert [s.status for s in done.steps][:3] == ["carried", "carried", "succeeded"]
    thumb = done.facts["thumbprint"]
    assert _store(fresh_lab, "CRM01").count(thumb) == 1 and _store(fresh_lab, "CRM02").count(thumb) == 1


def test_a_storm_of_429s_is_ridden_out_honouring_retry_after(
        fresh_lab: Lab, tmp_path: Path, cache: None) -> None:
    records = tmp_path / "records"
    assert fresh_lab.twin is not None
    assert _run(fresh_lab, records, until="install-certificate").ok
    fresh_lab.twin.knobs.set(throttle=8, retry_after=1)
    done = _run(fresh_lab, records, start="entra-app", until="entra-app")
    assert done.ok, done.table().to_string()
    assert fresh_lab.twin.knobs.get("throttle") == 0  # every 429 was met, and waited out
    # One that would outlast the retry budget fails at once, with Graph's own code.
    fresh_lab.twin.knobs.set(throttle=50, retry_after=600)
    failed = _run(fresh_lab, records, start="configure-s2s", until="configure-s2s")
    assert not failed.ok and failed.failed_step is not None
    assert "TooManyRequests" in (failed.failed_step.error or ""), failed.failed_step.error
    assert evidence.inspect(failed.record_dir).verdict == evidence.Verdict.FAILED


def test_a_failing_script_says_the_setup_access_is_still_there(
        fresh_lab: Lab, tmp_path: Path, cache: None) -> None:
    records = tmp_path / "records"
    assert fresh_lab.twin is not None
    assert _run(fresh_lab, records, until="entra-app").ok
    # Graph unavailable for the script's requests (the runbook's own read of state comes first).
    fresh_lab.set_faults("CRM01", fail_commands={
        "ConfigureCrmServerSideSync.ps1": "Failed to get the access token: service unavailable"})
    failed = _run(fresh_lab, records, start="configure-s2s")
    assert not failed.ok and failed.failed_step is not None and failed.failed_step.step.id == "configure-s2s"
    said = failed.failed_step.error or ""
    assert "service unavailable" in said and "still in place" in said and "next run" in said, said
    assert _uploads(fresh_lab) == []
    fresh_lab.clear_faults()
    done = _run(fresh_lab, records, resume=True)
    assert done.ok, done.table().to_string()
    assert done.facts["setup_access_left"] == []
