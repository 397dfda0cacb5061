"""Server paths with wildcard characters, against servers that read ``-Path`` as PowerShell does.

The official ConfigureCrmServerSideSync.ps1 checks its ``-pfxFilePath`` with ``Test-Path -Path``
and ``Get-Item``: a ``[`` in the path is a wildcard there, so the script would report a PFX that
is there as missing. psbridge must refuse such an upload folder before it changes anything,
and its own commands must take paths literally.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from crmkit import entra_app, lab_dict

from psbridge import crm
from psbridge.remote import Session, ValidationError

Opener = Callable[..., list[Session]]
PfxMaker = Callable[..., tuple[Path, str]]


def test_an_upload_folder_the_official_script_cannot_read_is_refused_first(
    fresh_lab: Any, open_sessions: Opener, pfx: PfxMaker, tmp_path: Path
) -> None:
    lab = fresh_lab
    org = lab_dict(lab)["organizations"][0]["name"]
    [s1] = open_sessions(lab, "CRM01")
    path, ref = pfx()
    tenant_id, app_id, secret_ref = entra_app(lab, tmp_path / "app")
    folder = "C:\\Windows\\Temp\\psbridge [2026]"
    with pytest.raises(ValidationError, match=r"upload_folder.*'\['") as e:
        crm.configure_server_side_sync(s1, path, ref, org, tenant_id, app_id, secret_ref,
                                       upload_folder=folder)
    assert "Test-Path -Path" in str(e.value)
    # Nothing was sent: no upload, no script run.
    assert not any(entry.event in ("upload", "script") for entry in s1.journal)
    assert s1.invoke("Test-Path", LiteralPath=folder).output == [False]


def test_psbridge_finds_the_scripts_in_a_tools_folder_with_brackets(
    fresh_lab: Any, open_sessions: Opener
) -> None:
    # Test-Path -Path would read "[9]" as a wildcard and report the scripts missing.
    lab = fresh_lab
    [s1] = open_sessions(lab, "CRM01")
    tools = "C:\\Program Files\\Microsoft Dynamics CRM [9]\\Tools"
    for name in (crm.scripts.CERTIFICATE_RECONFIGURATION, crm.scripts.CONFIGURE_SERVER_SIDE_SYNC):
        s1.invoke("New-Item", ItemType="Directory", Path=tools, Force=True)
        s1.invoke("Set-Content", LiteralPath=f"{tools}\\{name}", Value="# script")
    report = crm.check_prerequisites(s1, tools_folder=tools)
    present = [c for c in report.checks if c.name.endswith("present")]
    assert len(present) == 2 and all(c.ok for c in present), [c.detail for c in present]
