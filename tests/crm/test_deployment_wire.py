"""Steps 2, 4 and 5 end to end on a fresh two-server lab with its Entra twin.

One test on purpose: it walks the procedure in order (a later step needs an earlier one) and
checks idempotence and the refusals that depend on what the earlier steps installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crmkit import HOSTILE, entra_app, lab_dict

from psbridge import crm
from psbridge.crm.certificates import normalize_subject
from psbridge.remote import ScriptFailed, Session, ValidationError

Opener = Callable[..., list[Session]]
PfxMaker = Callable[..., tuple[Path, str]]


def test_procedure_on_two_servers(
    fresh_lab: Any, open_sessions: Opener, pfx: PfxMaker, tmp_path: Path
) -> None:
    lab = fresh_lab
    info = lab_dict(lab)
    account = info.get("service_account", "LAB\\crmasync")
    org = info["organizations"][0]["name"]
    s1, s2 = open_sessions(lab, "CRM01", "CRM02")
    # A comma in the subject: Windows quotes it, RFC 4514 escapes it; both must match.
    path, ref = pfx(subject=f"crm-s2s, {uuid.uuid4().hex[:8]}.lab.local")

    # Step 2: on both servers, -updateCrm once; the PFX password (hostile characters) must open the PFX.
    hostile_folder = "C:\\Windows\\Temp\\psbridge $(x);`'ü"
    done = crm.certificate_reconfiguration([s1, s2], path, ref, account, upload_folder=hostile_folder)
    assert [o.server for o in done.servers] == ["CRM01", "CRM02"]
    assert [o.changed for o in done.servers] == [True, True]
    assert [o.update_crm for o in done.servers] == [True, False]
    for s in (s1, s2):
        here = crm.store_certificates(s, thumbprint=done.thumbprint)
        assert len(here) == 1 and here[0].has_private_key
        assert normalize_subject(here[0].subject) == normalize_subject(done.subject)
        assert s.invoke("Test-Path", Path=f"{hostile_folder}\\{done.thumbprint}.pfx").output == [False]
        assert any(e.event == "remove" for e in s.journal)
    recorded = crm.crm_certificates(s1, "S2STokenIssuer")
    assert [c.thumbprint for c in recorded] == [done.thumbprint]
    assert done.changed and done.to_frame().shape[0] == 2
    assert "CRM02: changed" in str(done) and "<table" in done._repr_html_()

    # Rerun: nothing changes and the record says so.
    again = crm.certificate_reconfiguration([s1, s2], path, ref, account)
    assert not again.changed
    assert all("already" in o.detail for o in again.servers)

    # Another certificate with the same subject would break the script: refused before upload.
    twin_path, twin_ref = pfx(subject=normalize_subject(done.subject)[0][1], fresh_key=True)
    with pytest.raises(ValidationError, match="Private key not found"):
        crm.certificate_reconfiguration([s1, s2], twin_path, twin_ref, account)

    # Step 4 without admin consent: the script's Graph call is denied; its words come back.
    tenant_id, unconsented, secret_ref = entra_app(lab, tmp_path / "a", consent=False)
    with pytest.raises(ScriptFailed) as e:
        crm.configure_server_side_sync(s1, path, ref, org, tenant_id, unconsented, secret_ref)
    assert e.value.exit_code == 1 and "Process Failed." in e.value.messages
    assert crm.get_advanced_setting(s1, "Organization", crm.S2S_TENANT_ID,
                                    crm.get_organization(s1, org).id) in (None, "")

    # Step 4 with a consented app: the tenant id lands on the organization.
    tenant_id, app_id, secret_ref = entra_app(lab, tmp_path / "b")
    configured = crm.configure_server_side_sync(
        s1, path, ref, org, lab.twin.tenant_domain, app_id, secret_ref
    )
    assert configured.tenant_id.lower() == tenant_id.lower()
    assert configured.result.exit_code == 0
    assert any("Process succeeded." in m for m in configured.result.messages())
    assert configured.facts()["thumbprint"] == done.thumbprint
    principal = crm.get_advanced_setting(s1, "ServerSettings", "S2SDefaultAuthorizationServerPrincipalId")
    assert str(principal) == "00000001-0000-0000-c000-000000000000"

    # Step 5: already done by the script; setting it again changes nothing.
    assert crm.set_tenant_id(s1, org, tenant_id) is False

    # Nothing secret in what the sessions recorded.
    for s in (s1, s2):
        text = s.journal_frame().to_string() + str(configured.result)
        assert HOSTILE not in text
