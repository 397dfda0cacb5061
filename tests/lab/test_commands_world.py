"""The lab world on disk: seeding, loading, status tables, concurrent changes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from commands_kit import Recorder, cmd, run

from psbridge.lab.world import World, WorldError


def test_seed_creates_then_loads(tmp_path: Path) -> None:
    w = World.seed(tmp_path, servers=3, orgs=10, legacy_servers=1)
    assert w.server_names() == ["CRM01", "CRM02", "CRM03"]
    assert w.server_roles("CRM01") == ["Deployment Tools", "Asynchronous Processing Service",
                                       "Web Application Server"]
    assert w.server_roles("crm02") == ["Asynchronous Processing Service", "Web Application Server"]
    assert [w.server_generation(n) for n in w.server_names()] == ["current", "current", "legacy"]
    names = [o["name"] for o in w.organizations()]
    assert names[:4] == ["contoso", "fabrikam", "adventureworks", "northwind"] and names[-1] == "org10"
    assert set(w.organizations()[0]) == {"name", "friendly_name", "id"}
    again = World.seed(tmp_path, servers=1, orgs=1)  # exists: loaded as it is
    assert again.organizations() == w.organizations() and again.server_names() == w.server_names()
    assert (tmp_path / "servers" / "CRM03" / "files" / "C" / "Program Files").is_dir()


def test_load_without_a_world_says_so(tmp_path: Path) -> None:
    with pytest.raises(WorldError, match="seed it first"):
        World.load(tmp_path)


def test_status_tables_follow_the_disk(tmp_path: Path) -> None:
    w = World.seed(tmp_path, servers=2, orgs=2)
    tables = w.status_tables()
    assert set(tables) == {"servers", "organizations", "configuration-database", "certificate-stores",
                           "crm-certificates"}
    assert list(tables["organizations"]["organization"]) == ["contoso", "fabrikam"]
    assert tables["organizations"]["S2STenantId"].isna().all()
    ctx = Recorder(tmp_path)
    org_id = w.organizations()[1]["id"]
    run(ctx, cmd("Add-PSSnapin", "Microsoft.Crm.PowerShell"),
        cmd("Set-CrmAdvancedSetting", ID=org_id, configurationEntityName="Organization",
            setting="S2STenantId", value="11111111-2222-3333-4444-555555555555"))
    orgs = w.status_tables()["organizations"].set_index("organization")
    assert orgs.loc["fabrikam", "S2STenantId"] == "11111111-2222-3333-4444-555555555555"


def test_concurrent_changes_are_all_kept(tmp_path: Path) -> None:
    """Many pipelines at once (a batch over many orgs): no change overwrites another."""
    w = World.seed(tmp_path, servers=1, orgs=24)
    errors: list[BaseException] = []

    def set_tenant(org: dict[str, str], i: int) -> None:
        try:
            ctx = Recorder(tmp_path)
            run(ctx, cmd("Add-PSSnapin", "Microsoft.Crm.PowerShell"),
                cmd("Set-CrmAdvancedSetting", ID=org["id"], configurationEntityName="Organization",
                    setting="S2STenantId", value=f"tenant-{i}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=set_tenant, args=(o, i)) for i, o in enumerate(w.organizations())]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    loaded = World.load(tmp_path)
    assert [loaded.org_setting(o["name"], "S2STenantId") for o in w.organizations()] == \
        [f"tenant-{i}" for i in range(24)]
    assert not list(tmp_path.glob("*.tmp"))  # every writer replaced its own temporary file


@pytest.mark.parametrize("path", ["\\\\fileserver\\share\\x.pfx", "\\\\?\\C:\\x.pfx", "C:\\a\\b:c.pfx"])
def test_paths_outside_the_server_disks_are_refused(tmp_path: Path, path: str) -> None:
    World.seed(tmp_path, servers=1, orgs=1)
    ctx = Recorder(tmp_path)
    run(ctx, cmd("Set-Content", Path=path, Value=b"x", Encoding="Byte"))
    assert ctx.errors and ctx.errors[0].exception_type == "System.NotSupportedException"
    assert run(ctx, cmd("Test-Path", Path=path)).output == [False]
    assert sorted(p.name for p in tmp_path.rglob("*.pfx")) == []


def test_dot_dot_stays_on_the_server(tmp_path: Path) -> None:
    World.seed(tmp_path, servers=1, orgs=1)
    ctx = Recorder(tmp_path)
    run(ctx, cmd("New-Item", ItemType="Directory", Path="C:\\Temp", Force=True),
        cmd("Set-Content", Path="C:\\Temp\\..\\..\\..\\..\\escape.txt", Value="x"))
    assert (tmp_path / "servers" / "CRM01" / "files" / "C" / "escape.txt").is_file()
    assert not (tmp_path.parent / "escape.txt").exists()
