"""The official scripts and CRM cmdlets over the wire: pypsrp against a lab WinRM endpoint.

The endpoint runs the lab's real commands on a seeded world; ConfigureCrmServerSideSync
reaches the Entra/Graph twin over HTTPS, as a CRM server reaches Entra ID and Graph.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands_kit import RECONFIGURE, SYNC, crm_key_credentials, make_pfx, register_app
from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue

from psbridge.lab.ca import LabCA
from psbridge.lab.entra import EntraTwin, start_twin
from psbridge.lab.runspace import CloudEndpoints
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

PASSWORD = "crm-Adm1n!"
ACCOUNTS = {"LAB\\crmadmin": PASSWORD, "LAB\\operator": "0perator!"}
PFX = "C:\\Temp\\psbridge\\contoso-s2s.pfx"
PFX_PASSWORD = "pfx; 'quoted' $(not-run)"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("scripts-wire")
    World.seed(d, servers=2, orgs=2, legacy_servers=1)
    return d


@pytest.fixture(scope="module")
def twin(state: Path) -> Iterator[EntraTwin]:
    t = start_twin(state / "entra", LabCA.load_or_create(state))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def endpoints(state: Path, twin: EntraTwin) -> Iterator[dict[str, Endpoint]]:
    cloud = CloudEndpoints(twin.login_url, twin.graph_url, str(twin.ca_bundle))
    eps = {
        name: start_endpoint(EndpointSpec(name, "http", ACCOUNTS, state, cloud=cloud))
        for name in ("CRM01", "CRM02")
    }
    yield eps
    for ep in eps.values():
        ep.stop()


def open_pool(ep: Endpoint, user: str = "LAB\\crmadmin", password: str = PASSWORD) -> RunspacePool:
    wsman = new_wsman(
        "127.0.0.1",
        port=ep.port,
        username=user,
        password=password,
        auth="ntlm",
        operation_timeout=10,
        read_timeout=30,
        connection_timeout=5,
        ssl=False,
    )
    pool = RunspacePool(wsman)
    pool.open()
    return pool


@pytest.fixture(scope="module")
def pool(endpoints: dict[str, Endpoint]) -> Iterator[RunspacePool]:
    p = open_pool(endpoints["CRM01"])
    p.exchange_keys()
    yield p
    p.close()


@pytest.fixture(scope="module")
def pfx() -> bytes:
    return make_pfx(PFX_PASSWORD, "CN=psbridge S2S contoso wire")


def invoke(pool: RunspacePool, *statements: list[tuple[str, dict[str, Any]]]) -> PowerShell:
    ps = PowerShell(pool)
    for i, statement in enumerate(statements):
        if i:
            ps.add_statement()
        for name, params in statement:
            ps.add_cmdlet(name)
            for k, v in params.items():
                ps.add_parameter(k, v)
    ps.invoke()
    return ps


def one(pool: RunspacePool, name: str, **params: Any) -> PowerShell:
    return invoke(pool, [(name, params)])


def host_lines(ps: PowerShell) -> list[str]:
    return [str(r.message_data) for r in ps.streams.information]


def exit_code(pool: RunspacePool) -> int:
    return int(one(pool, "Get-Variable", Name="LASTEXITCODE", ValueOnly=True).output[0])


def run_script(pool: RunspacePool, path: str, **params: Any) -> tuple[PowerShell, int]:
    one(pool, "Set-Variable", Name="LASTEXITCODE", Value=0)
    ps = one(pool, path, **params)
    return ps, exit_code(pool)


def upload(pool: RunspacePool, data: bytes, path: str = PFX, chunk: int = 1000) -> None:
    one(pool, "New-Item", ItemType="Directory", Path=path.rsplit("\\", 1)[0], Force=True)
    for i in range(0, len(data), chunk):
        one(
            pool,
            "Set-Content" if i == 0 else "Add-Content",
            Path=path,
            Value=data[i : i + chunk],
            Encoding="Byte",
        )
    [digest] = one(pool, "Get-FileHash", Path=path, Algorithm="SHA256").output
    assert (
        digest.adapted_properties.get("Hash", digest.extended_properties.get("Hash"))
        == hashlib.sha256(data).hexdigest().upper()
    )


def props(obj: Any) -> dict[str, Any]:
    return {**obj.adapted_properties, **obj.extended_properties}


def test_unknown_command_fails_the_pipeline(pool: RunspacePool) -> None:
    ps = one(pool, "Invoke-Expression", Command="whoami")
    assert ps.state == PSInvocationState.FAILED
    assert "is not recognized as the name of a cmdlet" in str(ps.streams.error[0])


def test_crm_cmdlets_after_the_snapin(pool: RunspacePool) -> None:
    ps = invoke(
        pool,
        [("Add-PSSnapin", {"Name": "Microsoft.Crm.PowerShell", "ErrorAction": "SilentlyContinue"})],
        [("Get-CrmOrganization", {"Name": "contoso"})],
    )
    assert ps.state == PSInvocationState.COMPLETED
    [org] = ps.output
    assert org.types[0] == "Microsoft.Xrm.Sdk.Deployment.Organization"
    assert props(org)["UniqueName"] == "contoso"


def test_parameter_metadata_of_the_scripts(endpoints: dict[str, Endpoint]) -> None:
    for server, has_client in (("CRM01", True), ("CRM02", False)):
        with RunspacePool(
            new_wsman(
                "127.0.0.1",
                port=endpoints[server].port,
                username="LAB\\crmadmin",
                password=PASSWORD,
                auth="ntlm",
                ssl=False,
                operation_timeout=10,
            )
        ) as p:
            ps = invoke(
                p,
                [
                    ("Get-Command", {"Name": SYNC}),
                    ("Select-Object", {"ExpandProperty": "Parameters"}),
                    ("Select-Object", {"ExpandProperty": "Values"}),
                ],
            )
            by_name = {m.name: m for m in ps.output}
            assert ("ClientSecret" in by_name) is has_client
            assert by_name["privateKeyPassword"].parameter_type == "System.Security.SecureString"
            assert by_name["pfxFilePath"].parameter_type == "System.String"
            assert by_name["Verbose"].switch_parameter is True


def test_certificate_reconfiguration_over_the_wire(pool: RunspacePool, pfx: bytes, state: Path) -> None:
    upload(pool, pfx)
    ps, code = run_script(
        pool,
        RECONFIGURE,
        certificateFile=PFX,
        password=PFX_PASSWORD,
        certificateType="S2STokenIssuer",
        serviceAccount="LAB\\CRMAsyncService",
        updateCrm=True,
        storeFindType="FindBySubjectDistinguishedName",
    )
    assert ps.state == PSInvocationState.COMPLETED and code == 0
    assert host_lines(ps)[-1] == "Process succeeded."
    certs = one(pool, "Get-ChildItem", Path="Cert:\\LocalMachine\\My").output
    [cert] = [c for c in certs if props(c)["Subject"] == "CN=psbridge S2S contoso wire"]
    assert props(cert)["HasPrivateKey"] is True
    [record] = one(pool, "Get-CrmCertificate").output
    assert props(record)["CertificateType"] == "S2STokenIssuer"
    assert World.load(state).store("CRM01")[0]["key_readers"] == ["LAB\\CRMAsyncService"]


def test_script_failure_completes_with_exit_code_1(pool: RunspacePool, pfx: bytes) -> None:
    upload(pool, pfx)
    ps, code = run_script(
        pool, RECONFIGURE, certificateFile=PFX, password="wrong", certificateType="S2STokenIssuer",
        serviceAccount="LAB\\CRMAsyncService",
    )
    assert ps.state == PSInvocationState.COMPLETED  # the pipeline does not fail ...
    assert code == 1  # ... only $LASTEXITCODE and the messages tell
    assert host_lines(ps)[-1] == "Process Failed."


def test_configure_server_side_sync_over_the_wire(
    pool: RunspacePool, pfx: bytes, twin: EntraTwin, state: Path
) -> None:
    upload(pool, pfx)
    app_id, secret = register_app(twin)
    ps, code = run_script(
        pool,
        SYNC,
        privateKeyPassword=TaggedValue("SS", PFX_PASSWORD),
        pfxFilePath=PFX,
        organizationName="contoso",
        microsoftEntraIdTenantIdOrDomainName=twin.tenant_domain,
        ClientID=app_id,
        ClientSecret=secret,
    )
    assert ps.state == PSInvocationState.COMPLETED and code == 0, host_lines(ps)
    assert host_lines(ps)[-1] == "Process succeeded."
    assert any(str(o).startswith("Successfully updated key Credentials") for o in ps.output)
    assert [k["displayName"] for k in crm_key_credentials(twin)] == ["CN=psbridge S2S contoso wire"]
    org_id = World.load(state).organization("contoso")["id"]  # type: ignore[index]
    tenant = one(
        pool,
        "Get-CrmAdvancedSetting",
        ConfigurationEntityName="Organization",
        Setting="S2STenantId",
        ID=org_id,
    ).output
    assert tenant == [twin.tenant_id]


def test_operator_is_not_a_deployment_administrator(endpoints: dict[str, Endpoint]) -> None:
    p = open_pool(endpoints["CRM01"], "LAB\\operator", "0perator!")
    try:
        ps = invoke(
            p, [("Add-PSSnapin", {"Name": "Microsoft.Crm.PowerShell"})], [("Get-CrmOrganization", {})]
        )
        assert ps.state == PSInvocationState.FAILED
        assert "Deployment Administrator" in str(ps.streams.error[0])
    finally:
        p.close()
