"""A lab server's key files and CRM services: certutil's listing, Get-Acl's rules, Win32_Service."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands_kit import Recorder, cmd, make_pfx, prop, run

from psbridge.crm.keyaccess import SERVICE_FILTER
from psbridge.lab.commands.certstore import open_pfx
from psbridge.lab.world import SERVICE_ACCOUNTS, World

MACHINE_KEYS = "C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys\\"


@pytest.fixture
def ctx(tmp_path: Path) -> Recorder:
    World.seed(tmp_path / "lab", servers=1, orgs=1)
    return Recorder(tmp_path / "lab")


def installed(ctx: Recorder, readers: list[str]) -> str:
    """A certificate with its RSA key in CRM01's store, readable by ``readers``; its thumbprint."""
    entry = open_pfx(make_pfx("pw", "CN=psbridge key test"), "pw").entry()
    entry["key_readers"] = readers
    with World.load(ctx.state_dir).change() as data:
        data["servers"][0]["store"].append(entry)
    return str(entry["thumbprint"])


def key_path(ctx: Recorder, thumbprint: str) -> str:
    lines = run(ctx, cmd("certutil.exe", "-store", "My", thumbprint)).output
    assert "  Provider = Microsoft Enhanced Cryptographic Provider v1.0" in lines
    assert lines[-1] == "CertUtil: -store command completed successfully."
    [name] = [line.split(": ", 1)[1] for line in lines if line.startswith("  Unique container name: ")]
    return MACHINE_KEYS + name


def test_the_key_files_rules_are_windows_own_and_the_granted_readers(ctx: Recorder) -> None:
    path = key_path(ctx, installed(ctx, ["LAB\\CRMAsyncService"]))
    rules = run(ctx, [cmd("Get-Acl", LiteralPath=path), cmd("Select-Object", ExpandProperty="Access")]).output
    got = [(str(prop(r, "IdentityReference")), prop(r, "FileSystemRights"), prop(r, "AccessControlType"))
           for r in rules]
    assert got == [("NT AUTHORITY\\SYSTEM", "FullControl", "Allow"),
                   ("BUILTIN\\Administrators", "FullControl", "Allow"),
                   ("LAB\\CRMAsyncService", "Read, Synchronize", "Allow")]


def test_a_revoked_reader_is_gone_from_the_rules(ctx: Recorder) -> None:
    path = key_path(ctx, installed(ctx, []))
    rules = run(ctx, [cmd("Get-Acl", LiteralPath=path), cmd("Select-Object", ExpandProperty="Access")]).output
    assert [str(prop(r, "IdentityReference")) for r in rules] == [
        "NT AUTHORITY\\SYSTEM", "BUILTIN\\Administrators"]


def test_an_unknown_thumbprint_or_path_is_not_found(ctx: Recorder) -> None:
    lines = run(ctx, cmd("certutil.exe", "-store", "My", "00" * 20)).output
    assert "CertUtil: Cannot find object or property." in lines
    assert ctx.variables["LASTEXITCODE"] == 0x80092004 - 2**32
    run(ctx, cmd("Get-Acl", LiteralPath=MACHINE_KEYS + "nothing"))
    assert ctx.errors[0].message == f"Cannot find path '{MACHINE_KEYS}nothing' because it does not exist."


def test_the_async_services_run_as_the_service_account(ctx: Recorder) -> None:
    services = run(ctx, cmd("Get-CimInstance", ClassName="Win32_Service", Filter=SERVICE_FILTER)).output
    assert [(prop(s, "Name"), prop(s, "StartName")) for s in services] == [
        ("MSCRMAsyncService", SERVICE_ACCOUNTS[0]), ("MSCRMAsyncService$maintenance", SERVICE_ACCOUNTS[0])]
    run(ctx, cmd("Get-CimInstance", ClassName="Win32_Service", Filter="StartName LIKE '%'"))
    assert ctx.errors[0].message == "Invalid query "
