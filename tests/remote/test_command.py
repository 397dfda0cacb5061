"""Commands are data: what is displayed, what counts as read-only, and server paths."""

from __future__ import annotations

from pathlib import PureWindowsPath

import pytest

from psbridge.errors import ParameterError
from psbridge.remote import Cmd, SecureString, ValidationError, server_path
from psbridge.remote.command import as_statements
from psbridge.remote.transfer import chunk_size_for
from psbridge.secrets import MASK, Secret


def test_keyword_parameters_keep_order_and_none_is_left_out() -> None:
    c = Cmd("Set-CrmAdvancedSetting", ID="x", configurationEntityName="Organization", setting=None,
            Force=True)
    assert [k for k, _ in c.params] == ["ID", "configurationEntityName", "Force"]
    assert c.display() == "Set-CrmAdvancedSetting -ID 'x' -configurationEntityName 'Organization' -Force"


def test_display_masks_secrets_and_quotes_text() -> None:
    c = Cmd("X.ps1", password=Secret("pw"), key=SecureString(Secret("k")), name="O'Brien")
    shown = c.display()
    assert "pw" not in shown.replace("-password", "") and shown.count(MASK) == 2
    assert "'O''Brien'" in shown


def test_read_only_by_verb() -> None:
    assert Cmd("Get-CrmOrganization").read_only
    assert (Cmd("Get-Command", Name="a") | Cmd("Select-Object", ExpandProperty="Parameters")).read_only
    assert not Cmd("Set-CrmAdvancedSetting").read_only
    assert not Cmd("C:\\Tools\\Get-Thing.ps1").read_only
    assert not (Cmd("Get-CrmCertificate") | Cmd("Remove-CrmCertificate")).read_only


def test_statements() -> None:
    assert len(as_statements("Get-Date", {})) == 1
    assert len(as_statements([Cmd("A-B"), Cmd("C-D") | Cmd("E-F")], {})) == 2
    with pytest.raises(TypeError):
        as_statements(Cmd("A-B"), {"x": 1})
    with pytest.raises(ParameterError, match="nothing to run"):
        as_statements([], {})


@pytest.mark.parametrize(
    "good", ["C:\\Program Files\\Microsoft Dynamics CRM\\Tools\\x.ps1", "\\\\fs01\\share\\a.pfx",
             "D:\\tmp\\$(calc) ;`'ü.pfx"]
)
def test_server_path_accepts_absolute_windows_paths(good: str) -> None:
    assert server_path(good) == PureWindowsPath(good)


@pytest.mark.parametrize(
    ("bad", "words"),
    [("", "required"), ("tools\\x.ps1", "absolute"), ("/tmp/x.pfx", "absolute"), ("C:x.pfx", "absolute"),
     ("C:\\a\nb.pfx", "not allow"), ("C:\\a\\b.pfx:stream", "not allow"), ('C:\\"a".pfx', "not allow")],
)
def test_server_path_refuses(bad: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        server_path(bad, "pfx_path")


def test_chunks_fit_the_envelope() -> None:
    size = chunk_size_for(383_000)
    assert size % 3 == 0
    assert size * 4 // 3 + 8 * 1024 <= 383_000
    assert chunk_size_for(100) == 4096
