"""Every way the official scripts report failure, seen through the bridge.

The bridge's own checks stop most of these before a script runs; here the scripts are also run
directly (``Session.run_script``) so that each failure mode is seen as the script reports it:
"Process Failed.", ``exit 1``, a completed pipeline, and the script's own words in
:class:`ScriptFailed`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crmkit import HOSTILE, entra_app, lab_dict, make_pfx

from psbridge import crm
from psbridge.remote import ScriptFailed, SecureString, Session
from psbridge.secrets import Secret

Opener = Callable[..., list[Session]]
SYNC = crm.script_path(crm.CONFIGURE_SERVER_SIDE_SYNC)
RECONFIGURE = crm.script_path(crm.CERTIFICATE_RECONFIGURATION)
REMOTE_PFX = "C:\\Windows\\Temp\\psbridge-tests\\direct.pfx"


def sync_directly(s: Session, pfx: Path, password: str, **overrides: Any) -> ScriptFailed:
    params: dict[str, Any] = {"privateKeyPassword": SecureString(Secret(password)), **overrides}
    with s.uploaded(pfx, REMOTE_PFX) as receipt, pytest.raises(ScriptFailed) as e:
        s.run_script(SYNC, pfxFilePath=str(receipt.path), **params)
    failure = e.value
    assert failure.exit_code == 1 and failure.result.state == "Completed"
    assert "Process Failed." in failure.messages and failure.reason != "the script gave no reason"
    return failure


def test_server_side_sync_failure_modes(fresh_lab: Any, open_sessions: Opener, tmp_path: Path) -> None:
    lab = fresh_lab
    (s,) = open_sessions(lab, "CRM01")
    org = lab_dict(lab)["organizations"][0]["name"]
    tenant_id, app_id, secret_ref = entra_app(lab, tmp_path / "cache")
    good = make_pfx(tmp_path / "good.pfx", HOSTILE)
    base = {"organizationName": org, "microsoftEntraIdTenantIdOrDomainName": tenant_id, "ClientID": app_id,
            "ClientSecret": Secret("not the secret " + HOSTILE)}

    # A wrong client secret: the script's sign-in is refused.
    wrong = sync_directly(s, good, HOSTILE, **base)
    assert "invalid client secret" in wrong.reason.lower()
    assert "not the secret" not in str(wrong)

    # An expired certificate: the script refuses it after opening the PFX.
    from psbridge.secrets import resolve

    base["ClientSecret"] = resolve(secret_ref)
    expired = make_pfx(tmp_path / "old.pfx", HOSTILE, days=-1, start_days_ago=30, fresh_key=True)
    failure = sync_directly(s, expired, HOSTILE, **base)
    assert "expired" in failure.reason.lower()

    # A wrong PFX password.
    failure = sync_directly(s, good, "wrong " + HOSTILE, **base)
    assert "password is not correct" in failure.reason

    # An organization that does not exist.
    failure = sync_directly(s, good, HOSTILE, **{**base, "organizationName": "nosuchorg"})
    assert "nosuchorg" in failure.reason

    # Nothing of this reached the organization.
    org_id = crm.get_organization(s, org).id
    assert crm.get_advanced_setting(s, "Organization", crm.S2S_TENANT_ID, org_id) in (None, "")

    # The same procedure through the operation, with the hostile PFX password, succeeds.
    path = make_pfx(tmp_path / "ok.pfx", HOSTILE)
    from psbridge.secrets import store

    store("lab:tests/failure-modes-pfx", HOSTILE)
    done = crm.configure_server_side_sync(
        s, path, "lab:tests/failure-modes-pfx", org, tenant_id, app_id, secret_ref
    )
    assert done.tenant_id == tenant_id and done.result.exit_code == 0


def test_server_side_sync_without_the_cloud(lab_factory: Any, open_sessions: Opener, tmp_path: Path) -> None:
    lab = lab_factory(servers=1, orgs=1, cloud=False)
    (s,) = open_sessions(lab, "CRM01")
    path = make_pfx(tmp_path / "s2s.pfx", "pw")
    from psbridge.secrets import store

    store("lab:tests/nocloud-pfx", "pw")
    store("lab:tests/nocloud-secret", "some secret")
    org = lab_dict(lab)["organizations"][0]["name"]
    with pytest.raises(ScriptFailed) as e:
        crm.configure_server_side_sync(s, path, "lab:tests/nocloud-pfx", org, "contoso.onmicrosoft.com",
                                       str(uuid.uuid4()), "lab:tests/nocloud-secret")
    assert e.value.exit_code == 1
    assert not any(ev.event == "configured" for ev in s.journal)
    assert any(ev.event == "remove" for ev in s.journal)  # the PFX did not stay on the server


def test_duplicate_subject_makes_the_script_fail(
    fresh_lab: Any, open_sessions: Opener, tmp_path: Path
) -> None:
    """What the bridge's uniqueness check prevents: the script's own "Private key not found"."""
    (s,) = open_sessions(fresh_lab, "CRM01")
    account = lab_dict(fresh_lab).get("service_account", "LAB\\CRMAsyncService")
    first = make_pfx(tmp_path / "a.pfx", "pw", subject="dup.lab.local")
    second = make_pfx(tmp_path / "b.pfx", "pw", subject="dup.lab.local", fresh_key=True)
    for pfx, should_fail in ((first, False), (second, True)):
        with s.uploaded(pfx, REMOTE_PFX) as receipt:
            if should_fail:
                with pytest.raises(ScriptFailed, match="Private key not found") as e:
                    s.run_script(RECONFIGURE, certificateFile=str(receipt.path), password=Secret("pw"),
                                 certificateType="S2STokenIssuer", serviceAccount=account)
                assert e.value.exit_code == 1
            else:
                ok = s.run_script(RECONFIGURE, certificateFile=str(receipt.path), password=Secret("pw"),
                                  certificateType="S2STokenIssuer", serviceAccount=account, updateCrm=True)
                assert ok.exit_code == 0 and "Process succeeded." in ok.messages()
