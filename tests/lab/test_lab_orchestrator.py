"""The in-process lab (``Lab``) and the shared fixtures, driven over the wire with pypsrp."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pypsrp.complex_objects import PSInvocationState
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from psbridge import secrets
from psbridge.lab.config import LabConfig, LabConfigError
from psbridge.lab.orchestrator import Lab, LabError
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

TENANT = "0b7d3f5e-2a41-4c8e-9d6b-8f1e2c3a4b5d"


def wsman(lab: Lab, server: str = "CRM01", scheme: str = "http", account: str = "crmadmin") -> WSMan:
    ep, acct = lab.config.endpoint(server, scheme), lab.config.account(account)
    https = scheme == "https"
    extra: dict[str, Any] = {"cert_validation": lab.config.ca_bundle} if https else {"encryption": "always"}
    return new_wsman(ep.host, port=ep.port, path=ep.path.lstrip("/"), ssl=scheme == "https", auth="ntlm",
                     username=acct.user, password=lab.config.password(account).reveal(), **extra)


def organizations(pool: RunspacePool) -> dict[str, str]:
    ps = PowerShell(pool)
    ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell").add_statement()
    ps.add_cmdlet("Get-CrmOrganization")
    out = ps.invoke()
    assert ps.state == PSInvocationState.COMPLETED, [str(e) for e in ps.streams.error]
    return {o.adapted_properties["UniqueName"]: o.adapted_properties["Id"] for o in out}


def tenant_setting(pool: RunspacePool, org_id: str, value: str | None = None) -> Any:
    ps = PowerShell(pool)
    ps.add_cmdlet("Add-PSSnapin").add_parameter("Name", "Microsoft.Crm.PowerShell").add_statement()
    cmdlet = "Get-CrmAdvancedSetting" if value is None else "Set-CrmAdvancedSetting"
    ps.add_cmdlet(cmdlet).add_parameter("ID", org_id).add_parameter("configurationEntityName", "Organization")
    ps.add_parameter("setting", "S2STenantId")
    if value is not None:
        ps.add_parameter("value", value)
    out = ps.invoke()
    assert ps.state == PSInvocationState.COMPLETED, [str(e) for e in ps.streams.error]
    return out


def test_lab_json_describes_the_running_lab(lab: Lab) -> None:
    config = LabConfig.load(lab.state_dir)
    assert config == lab.config
    assert config.ready and config.pid == os.getpid() and config.version == 1
    assert [s.name for s in config.servers] == ["CRM01", "CRM02"]
    assert "Deployment Tools" in config.server("crm01").roles
    assert "Deployment Tools" not in config.server("CRM02").roles
    assert {e.scheme for s in config.servers for e in s.endpoints} == {"http", "https"}
    assert len({e.port for s in config.servers for e in s.endpoints}) == 4
    assert [o.name for o in config.organizations] == ["contoso", "fabrikam"]
    assert config.account("LAB\\crmadmin").roles == ["LocalAdministrator", "DeploymentAdministrator"]
    assert config.account("operator").roles == []
    assert Path(config.ca_bundle).is_file()
    assert config.entra is not None and config.entra["graph_url"].startswith("https://127.0.0.1:")
    with pytest.raises(LabConfigError, match="servers: CRM01, CRM02"):
        config.server("CRM09")


def test_fixture_points_the_lab_secret_store_at_the_lab(lab: Lab) -> None:
    assert os.environ["PSBRIDGE_LAB_STATE"] == str(lab.state_dir)
    for account in lab.config.accounts:
        password = lab.config.password(account.name)
        assert secrets.resolve(account.password_ref) == password and str(password) == secrets.MASK
        assert password.reveal() not in repr(account) and password.reveal() not in repr(lab.config)
        assert password.reveal() not in lab.lab_json.read_text(encoding="utf-8")


def test_readme_snippet_lists_the_organizations(lab: Lab, readme_snippet: Callable[[str], str]) -> None:
    # The README's snippet, run as printed there (state directory from PSBRIDGE_LAB_STATE).
    printed: list[tuple[Any, ...]] = []
    scope: dict[str, Any] = {"print": lambda *values: printed.append(values)}
    exec(compile(readme_snippet("lab"), "README.md:lab", "exec"), scope)  # noqa: S102 - our own README

    wanted = [(o.name, o.id) for o in lab.config.organizations]
    assert [(name, str(org_id)) for name, org_id in printed] == wanted
    assert [name for name, _ in printed] == ["contoso", "fabrikam"]


def test_every_endpoint_serves_over_the_wire(lab: Lab) -> None:
    for server in ("CRM01", "CRM02"):
        for scheme in ("http", "https"):
            with RunspacePool(wsman(lab, server, scheme)) as pool:
                assert set(organizations(pool)) == {"contoso", "fabrikam"}


def test_faults_set_through_the_lab_reach_one_server(lab: Lab) -> None:
    lab.set_faults("crm02", deny_auth=True)
    with pytest.raises(AuthenticationError), RunspacePool(wsman(lab, "CRM02")):
        pass
    with RunspacePool(wsman(lab, "CRM01")) as pool:
        assert organizations(pool)
    lab.clear_faults("CRM02")
    with RunspacePool(wsman(lab, "CRM02")) as pool:
        assert organizations(pool)
    with pytest.raises(LabError, match="no server 'CRM07'"):
        lab.set_faults("CRM07", delay=1)


def test_restart_keeps_world_passwords_and_ports(fresh_lab: Lab) -> None:
    before = fresh_lab.config
    with RunspacePool(wsman(fresh_lab)) as pool:
        org_id = organizations(pool)["contoso"]
        tenant_setting(pool, org_id, TENANT)
    fresh_lab.restart()
    after = LabConfig.load(fresh_lab.state_dir)
    assert after.ready and after == fresh_lab.config
    assert [after.password(a.name) for a in after.accounts] == \
        [before.password(a.name) for a in before.accounts]
    assert [(e.scheme, e.port) for s in after.servers for e in s.endpoints] == \
        [(e.scheme, e.port) for s in before.servers for e in s.endpoints]
    assert after.entra is not None and before.entra is not None
    assert after.entra["tenant_id"] == before.entra["tenant_id"]
    assert after.entra == before.entra  # the twin's URLs too
    with RunspacePool(wsman(fresh_lab, "CRM02")) as pool:
        assert TENANT in str(tenant_setting(pool, org_id))
    assert World.load(fresh_lab.state_dir).org_setting("contoso", "S2STenantId") == TENANT


def test_factory_shapes_and_stop_marks_lab_json_not_ready(lab_factory: Any) -> None:
    small: Lab = lab_factory(servers=2, orgs=1, legacy_servers=1, cloud=False)
    config = small.config
    generations = [(s.name, s.script_generation) for s in config.servers]
    assert generations == [("CRM01", "current"), ("CRM02", "legacy")]
    assert config.entra is None and small.twin is None
    assert [o.name for o in config.organizations] == ["contoso"]
    assert os.environ["PSBRIDGE_LAB_STATE"] == str(small.state_dir)
    small.stop()
    assert not LabConfig.load(small.state_dir).ready
    with pytest.raises(ConnectionError):
        import socket

        ep = config.endpoint("CRM01", "http")
        socket.create_connection((ep.host, ep.port), timeout=5).close()
