"""The commands inside the whole lab (orchestrator fixture): faults, and the world as status shows it."""

from __future__ import annotations

from urllib.parse import urlparse

from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool

from psbridge.lab.orchestrator import Lab
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

SYNC = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools\\ConfigureCrmServerSideSync.ps1"


def pool_for(lab: Lab, server: str = "CRM01") -> RunspacePool:
    url = urlparse(lab.url(server, "http"))
    return RunspacePool(
        new_wsman(
            url.hostname or "127.0.0.1",
            port=url.port,
            path=url.path.strip("/"),
            ssl=False,
            auth="ntlm",
            username="LAB\\crmadmin",
            password=lab.password("crmadmin").reveal(),
            operation_timeout=10,
            read_timeout=30,
            connection_timeout=5,
        )
    )


def test_injected_fault_on_a_script_and_a_cmdlet(lab: Lab) -> None:
    lab.set_faults(
        "CRM01",
        fail_commands={
            "ConfigureCrmServerSideSync.ps1": "Injected: the script crashed.",
            "get-crmorganization": "Injected: the Deployment Web Service is down.",
        },
    )
    with pool_for(lab) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet(SYNC).add_parameter("pfxFilePath", "C:\\x.pfx")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED
        assert str(ps.streams.error[0]) == "Injected: the script crashed."
        ps = PowerShell(pool)
        ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell")
        ps.add_statement().add_cmdlet("Get-CrmOrganization")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED
        assert "the Deployment Web Service is down" in str(ps.streams.error[0])


def test_world_of_the_lab_matches_what_the_server_answers(lab: Lab) -> None:
    world = World.load(lab.state_dir)
    tables = world.status_tables()
    with pool_for(lab, "CRM02") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell")
        ps.add_statement().add_cmdlet("Get-CrmOrganization")
        ps.invoke()
    names = [o.adapted_properties["UniqueName"] for o in ps.output]
    assert (
        names == list(tables["organizations"]["organization"]) == [o["name"] for o in world.organizations()]
    )
    assert list(tables["servers"]["server"]) == world.server_names() == ["CRM01", "CRM02"]
