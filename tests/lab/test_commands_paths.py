"""``-Path`` is a wildcard pattern, ``-LiteralPath`` is not: the provider cmdlets as 5.1 has them.

A file named ``s2s[1].pfx`` is what makes the difference visible: ``-Path`` reads ``[1]`` as a
character set and looks for ``s2s1.pfx``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from commands_kit import Recorder, cmd, prop, run

from psbridge.lab.commands.wildcards import has_wildcards, matches, unescape
from psbridge.lab.world import World

FOLDER = "C:\\Temp\\w"
BRACKETS = f"{FOLDER}\\s2s[1].pfx"


@pytest.fixture
def ctx(tmp_path: Path) -> Recorder:
    World.seed(tmp_path / "lab", servers=1, orgs=1)
    c = Recorder(tmp_path / "lab")
    run(c, cmd("New-Item", ItemType="Directory", Path=FOLDER, Force=True))
    run(c, cmd("Set-Content", LiteralPath=BRACKETS, Value="x"))
    run(c, cmd("Set-Content", LiteralPath=f"{FOLDER}\\notes.txt", Value="n"))
    return c


def test_wildcard_patterns() -> None:
    assert matches("s2s[1].pfx", "S2S1.PFX") and not matches("s2s[1].pfx", "s2s[1].pfx")
    assert matches("s2s`[1`].pfx", "s2s[1].pfx") and matches("*.p?x", "a.pfx")
    assert matches("[a-c]x", "bx") and not matches("[a-c]x", "dx") and not matches("a[", "a[")
    assert has_wildcards("a]b") and not has_wildcards("a`[b") and not has_wildcards("it's")
    assert unescape("s2s`[1`].pfx") == "s2s[1].pfx" and unescape("it`'s") == "it`'s"
    assert unescape("a``b") == "a`b"


def test_test_path(ctx: Recorder) -> None:
    assert run(ctx, cmd("Test-Path", Path=BRACKETS)).output == [False]
    assert run(ctx, cmd("Test-Path", LiteralPath=BRACKETS)).output == [True]
    assert run(ctx, cmd("Test-Path", Path=f"{FOLDER}\\s2s`[1`].pfx")).output == [True]
    assert run(ctx, cmd("Test-Path", Path=f"{FOLDER}\\*.pfx", PathType="Leaf")).output == [True]
    assert run(ctx, cmd("Test-Path", Path="C:\\Te*\\w\\notes.*")).output == [True]  # any segment
    assert run(ctx, cmd("Test-Path", Path=f"{FOLDER}\\*.cer")).output == [False]


def test_get_item_and_child_item(ctx: Recorder) -> None:
    [item] = run(ctx, cmd("Get-Item", Path=f"{FOLDER}\\*.pfx")).output
    assert prop(item, "Name") == "s2s[1].pfx"
    assert run(ctx, cmd("Get-Item", Path=f"{FOLDER}\\*.cer")).output == [] and not ctx.errors
    run(ctx, cmd("Get-Item", Path=BRACKETS))  # the pattern matches nothing: no output, no error
    assert ctx.output == [] and not ctx.errors
    [literal] = run(ctx, cmd("Get-Item", LiteralPath=BRACKETS)).output
    assert prop(literal, "FullName") == BRACKETS
    run(ctx, cmd("Get-Item", Path=f"{FOLDER}\\missing.pfx"))
    assert ctx.errors[0].message == f"Cannot find path '{FOLDER}\\missing.pfx' because it does not exist."
    names = [prop(i, "Name") for i in run(ctx, cmd("Get-ChildItem", Path="C:\\Temp\\w*")).output]
    assert names == ["notes.txt", "s2s[1].pfx"]  # a matched folder lists its children
    by_filter = run(ctx, cmd("Get-ChildItem", Path=FOLDER, Filter="s2s[1].pfx", Name=True)).output
    assert by_filter == ["s2s[1].pfx"]  # -Filter is the file system's: a bracket is a bracket
    assert run(ctx, cmd("Get-ChildItem", Path=FOLDER, Include="*.txt", Name=True)).output == ["notes.txt"]


def test_set_content_and_remove_item(ctx: Recorder) -> None:
    run(ctx, cmd("Set-Content", Path=f"{FOLDER}\\new[1].txt", Value="v"))
    [err] = ctx.errors
    assert err.message == (f"An object at the specified path {FOLDER}\\new[1].txt does not exist, or has "
                           "been filtered by the -Include or -Exclude parameter.")
    assert err.fqid == "ItemNotFound,Microsoft.PowerShell.Commands.SetContentCommand"
    assert run(ctx, cmd("Test-Path", LiteralPath=f"{FOLDER}\\new[1].txt")).output == [False]
    run(ctx, cmd("Set-Content", LiteralPath=f"{FOLDER}\\new[1].txt", Value="v"))
    assert run(ctx, cmd("Test-Path", LiteralPath=f"{FOLDER}\\new[1].txt")).output == [True]
    # Remove-Item -Path with the file's own name removes nothing, and says nothing.
    run(ctx, cmd("Remove-Item", Path=BRACKETS))
    assert not ctx.errors and run(ctx, cmd("Test-Path", LiteralPath=BRACKETS)).output == [True]
    run(ctx, cmd("Remove-Item", LiteralPath=BRACKETS))
    assert run(ctx, cmd("Test-Path", LiteralPath=BRACKETS)).output == [False]
    run(ctx, cmd("Remove-Item", Path=f"{FOLDER}\\*.txt"))
    assert run(ctx, cmd("Get-ChildItem", Path=FOLDER)).output == []


def test_file_hash_and_piped_items_are_literal(ctx: Recorder) -> None:
    run(ctx, cmd("Get-FileHash", Path=BRACKETS))
    assert ctx.errors[0].fqid == "PathNotFound,Microsoft.PowerShell.Commands.ResolvePathCommand"
    [digest] = run(ctx, cmd("Get-FileHash", LiteralPath=BRACKETS)).output
    assert prop(digest, "Path") == BRACKETS
    # Get-ChildItem's items bind their PSPath to -LiteralPath of the next command.
    found = run(ctx, [cmd("Get-ChildItem", Path=FOLDER, Filter="*.pfx"), cmd("Get-FileHash")]).output
    assert [prop(d, "Path") for d in found] == [BRACKETS]


def test_certificate_drive_patterns(ctx: Recorder) -> None:
    from commands_kit import make_pfx

    pfx = "C:\\Temp\\c.pfx"
    data = make_pfx("p", "CN=wildcard test")
    run(ctx, cmd("Set-Content", LiteralPath=pfx, Value=data, Encoding="Byte"))
    run(ctx, cmd("Set-Variable", Name="LASTEXITCODE", Value=0))
    run(ctx, cmd("C:\\Program Files\\Microsoft Dynamics CRM\\Tools\\CertificateReconfiguration.ps1",
                 certificateFile=pfx, password="p", certificateType="S2STokenIssuer",
                 serviceAccount="LAB\\CRMAsyncService"))
    [cert] = run(ctx, cmd("Get-ChildItem", Path="Cert:\\LocalMachine\\My")).output
    thumb = prop(cert, "Thumbprint")
    [hit] = run(ctx, cmd("Get-ChildItem", Path=f"Cert:\\LocalMachine\\My\\{thumb[:6]}*")).output
    assert prop(hit, "Thumbprint") == thumb
    assert run(ctx, cmd("Test-Path", Path=f"Cert:\\LocalMachine\\My\\{thumb[:4]}*")).output == [True]
    assert run(ctx, cmd("Get-Item", Path="Cert:\\LocalMachine\\My\\0000*")).output == []
