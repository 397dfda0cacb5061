"""Fault knobs of a lab WinRM endpoint, driven through pypsrp, and the lab's world across a restart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from psbridge.errors import LabSettingError
from psbridge.lab.faults import Faults, all_faults, clear_faults, read_faults, set_faults
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

ACCOUNTS = {"LAB\\crmadmin": "Crm-admin1", "LAB\\operator": "0perator!"}


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("winrm-faults")
    World.seed(d, servers=2, orgs=1)
    return d


@pytest.fixture(scope="module")
def crm01(state: Path) -> Iterator[Endpoint]:
    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state))
    yield ep
    ep.stop()


@pytest.fixture(autouse=True)
def no_faults_left(state: Path) -> Iterator[None]:
    yield
    clear_faults(state)


def wsman(ep: Endpoint, **kw: Any) -> WSMan:
    kw.setdefault("read_timeout", 15)
    return new_wsman("127.0.0.1", port=ep.port, ssl=False, username="LAB\\crmadmin", password="Crm-admin1",
                 auth="negotiate", operation_timeout=10, connection_timeout=5, **kw)


def path_exists(pool: RunspacePool) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_cmdlet("Test-Path").add_parameter("Path", "C:\\Windows")
    ps.invoke()
    return ps


def answers(pool: RunspacePool) -> bool:
    """The pool runs a command to completion."""
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Variable").add_parameter("Name", "ErrorActionPreference")
    ps.invoke()
    return ps.state == PSInvocationState.COMPLETED and len(ps.output) == 1


# --- the faults file ----------------------------------------------------------------------------

def test_knobs_merge_clear_and_validate(tmp_path: Path) -> None:
    assert read_faults(tmp_path, "CRM01") == Faults()
    first = set_faults(tmp_path, "CRM01", delay=0.5)
    merged = set_faults(tmp_path, "CRM01", fail_commands={"Get-CrmOrganization": "SQL is down"})
    assert merged.delay == 0.5 and merged.fail_commands == {"get-crmorganization": "SQL is down"}
    assert merged.generation != first.generation  # a new setting restarts drop_after's count
    assert read_faults(tmp_path, "CRM02") == Faults()
    assert set_faults(tmp_path, "CRM01", delay=None).delay == 0.0
    set_faults(tmp_path, "CRM02", deny_auth=True)
    assert sorted(all_faults(tmp_path)) == ["CRM01", "CRM02"]
    clear_faults(tmp_path, "CRM01")
    assert not read_faults(tmp_path, "CRM01").any and read_faults(tmp_path, "CRM02").deny_auth
    clear_faults(tmp_path)
    assert not read_faults(tmp_path, "CRM02").any
    with pytest.raises(LabSettingError, match="unknown fault knob"):
        set_faults(tmp_path, "CRM01", drop=1)
    with pytest.raises(LabSettingError, match="delay"):
        set_faults(tmp_path, "CRM01", delay=-1)
    assert set_faults(tmp_path, "CRM01", drop_after=0).drop_after == 0  # "drop the very next one"


# --- each knob, over the wire -------------------------------------------------------------------

def test_drop_after_cuts_the_connection_once(crm01: Endpoint, state: Path) -> None:
    pool = RunspacePool(wsman(crm01))
    pool.open()
    set_faults(state, "CRM01", drop_after=1)
    ps = PowerShell(pool)
    ps.add_cmdlet("Test-Path").add_parameter("Path", "C:\\Windows")
    # The Command is answered; the connection carrying the Receive goes away unanswered.
    with pytest.raises(requests.exceptions.ConnectionError):
        ps.invoke()
    # Spent: a new connection is served, and so is every later request.
    with RunspacePool(wsman(crm01)) as again:
        assert answers(again)
        assert answers(again)


def test_drop_after_zero_drops_the_next_request(crm01: Endpoint, state: Path) -> None:
    set_faults(state, "CRM01", drop_after=0)
    with pytest.raises(requests.exceptions.ConnectionError), RunspacePool(wsman(crm01)):
        pass


def test_delay_holds_every_answer(crm01: Endpoint, state: Path) -> None:
    set_faults(state, "CRM01", delay=1.0)
    # A client that waits less than the injected delay gives up; no duration is asserted.
    with pytest.raises(requests.exceptions.ReadTimeout), RunspacePool(wsman(crm01, read_timeout=0.2)):
        pass
    clear_faults(state, "CRM01")
    with RunspacePool(wsman(crm01, read_timeout=5)) as pool:
        assert answers(pool)


def test_fail_commands_fails_that_command_with_the_message(crm01: Endpoint, state: Path) -> None:
    set_faults(state, "CRM01", fail_commands={"Test-Path": "The RPC server is unavailable."})
    with RunspacePool(wsman(crm01)) as pool:
        ps = path_exists(pool)
        assert ps.state == PSInvocationState.FAILED
        assert [str(e) for e in ps.streams.error] == ["The RPC server is unavailable."]
        assert answers(pool)  # only the named command fails
        clear_faults(state)
        assert path_exists(pool).state == PSInvocationState.COMPLETED


def test_faults_are_per_server(state: Path) -> None:
    ep2 = start_endpoint(EndpointSpec("CRM02", "http", ACCOUNTS, state))
    try:
        set_faults(state, "CRM01", deny_auth=True)
        with RunspacePool(wsman(ep2)) as pool:
            assert answers(pool)
    finally:
        ep2.stop()


def test_deny_auth_set_from_another_process(crm01: Endpoint, state: Path) -> None:
    code = ("import sys; from psbridge.lab.faults import set_faults; "
            "set_faults(sys.argv[1], 'CRM01', deny_auth=True)")
    subprocess.run([sys.executable, "-c", code, str(state)], check=True, timeout=60)
    with pytest.raises(AuthenticationError), RunspacePool(wsman(crm01)):
        pass
    clear_faults(state)
    with RunspacePool(wsman(crm01)) as pool:
        assert answers(pool)


# --- the world on disk --------------------------------------------------------------------------

def _org_setting(pool: RunspacePool, org_id: str) -> Any:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-CrmAdvancedSetting").add_parameter("ID", org_id) \
        .add_parameter("configurationEntityName", "Organization").add_parameter("setting", "S2STenantId")
    ps.invoke()
    assert ps.state == PSInvocationState.COMPLETED, [str(e) for e in ps.streams.error]
    return ps.output


def test_world_state_survives_a_restart(state: Path) -> None:
    tenant = "6c1f0a2e-0b8c-4d3e-9c3a-2f4b1e5d7a90"
    ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state))
    try:
        with RunspacePool(wsman(ep)) as pool:
            ps = PowerShell(pool)
            ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell")
            ps.add_statement().add_cmdlet("Get-CrmOrganization").add_parameter("Name", "contoso")
            org = ps.invoke()[0]
            org_id = str(org.adapted_properties.get("Id") or org.extended_properties.get("Id"))
            ps = PowerShell(pool)
            ps.add_cmdlet("Set-CrmAdvancedSetting").add_parameter("ID", org_id) \
                .add_parameter("configurationEntityName", "Organization") \
                .add_parameter("setting", "S2STenantId").add_parameter("value", tenant)
            ps.invoke()
            assert ps.state == PSInvocationState.COMPLETED, [str(e) for e in ps.streams.error]
    finally:
        ep.stop()
    # Same port: lab.json stays true across a restart.
    again = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state, port=ep.port))
    try:
        with RunspacePool(wsman(again)) as pool:
            ps = PowerShell(pool)
            ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell")
            ps.invoke()
            assert tenant in str(_org_setting(pool, org_id))
    finally:
        again.stop()
    assert World.load(state).org_setting("contoso", "S2STenantId") == tenant
