"""A national cloud, end to end: the ACS metadata URL and the hosts follow the cloud.

The official ConfigureCrmServerSideSync.ps1 hard-codes the commercial cloud. In GCC High (and
the other national clouds) preflight says so, and step 4 does the script's work itself through
Graph of the chosen cloud — the key credential on the Dynamics CRM service principal, its
servicePrincipalNames, then ServerSettings with that cloud's metadata URL and the organization's
S2STenantId — each recorded, the script never run. Here the lab's twin plays the national cloud.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from psbridge.cloud import CLOUDS, read_crm_service_principal, tenant_id_from_graph
from psbridge.cloud.settings import ACS_METADATA_GLOBAL, ACS_METADATA_USGOV
from psbridge.lab.orchestrator import Lab
from psbridge.runbook import registry
from psbridge.runbook.cli_support import demo_parameters
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.runner import Runner
from psbridge.runbook.steps import preflight, s2s
from psbridge.runbook.steps.common import certificate_for

BOOK = registry.load("exchange-online-s2s")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[None]:
    os.environ["PSBRIDGE_TOKEN_CACHE"] = str(tmp_path / "msal")
    try:
        yield
    finally:
        os.environ.pop("PSBRIDGE_TOKEN_CACHE", None)


def test_the_clouds_carry_their_hosts_and_metadata_url() -> None:
    assert CLOUDS["global"].acs_metadata_url == ACS_METADATA_GLOBAL and CLOUDS["global"].script_reaches
    assert CLOUDS["usgov"].acs_metadata_url == ACS_METADATA_USGOV
    assert ACS_METADATA_USGOV == "https://login.microsoftonline.us/metadata/json/1"
    assert CLOUDS["usgov"].graph_url == "https://graph.microsoft.us" and not CLOUDS["usgov"].script_reaches
    assert not CLOUDS["usgov-dod"].script_reaches and not CLOUDS["china"].script_reaches


def test_step4_in_a_national_cloud_does_the_scripts_work_through_graph(fresh_lab: Lab, tmp_path: Path,
                                                                       cache: None) -> None:
    params = demo_parameters(BOOK, fresh_lab.state_dir, "contoso")
    assert Runner(BOOK, params, records_root=tmp_path / "records").run(until="entra-app").ok
    dep = Deployment.from_params("contoso", lab=str(fresh_lab.state_dir))
    # The twin, answering as GCC High would: the script cannot reach it, its metadata is .us's.
    dep.cloud = dep.cloud.with_(name="usgov (lab)", acs_metadata_url=ACS_METADATA_USGOV, script_reaches=False)
    with dep:
        checks = preflight.check(dep)
        notice = [c for c in checks.checks
                  if "ConfigureCrmServerSideSync.ps1" in c.check and c.server == "cloud"]
        assert len(notice) == 1 and notice[0].ok is None and ACS_METADATA_USGOV in notice[0].detail
        checks.require()  # a notice, not a failure
        graph = s2s.graph_client(dep, s2s.sign_in(dep))
        cert = certificate_for(dep, "demo", "", "", params["pfx_password"])
        tenant = tenant_id_from_graph(graph)
        before = s2s.s2s_state(dep, graph, cert.thumbprint, tenant)
        assert not before.ok and not before.trusts_certificate
        planned = s2s.configure_s2s(dep, before, cert.pfx_file, params["pfx_password"], "", tenant, "",
                                    graph=graph, cert_der=cert.der, plan=True)
        assert planned.planned and "cannot reach the usgov (lab) cloud" in planned.changes[0]
        # A plan changes nothing.
        assert not s2s.s2s_state(dep, graph, cert.thumbprint, tenant).trusts_certificate
        done = s2s.configure_s2s(dep, before, cert.pfx_file, params["pfx_password"], "", tenant, "",
                                 graph=graph, cert_der=cert.der)
        said = done.changes
        assert any(c.startswith(f"added key credential {cert.thumbprint}") for c in said), said
        assert any(f"S2SDefaultAuthorizationServerMetadataUrl to {ACS_METADATA_USGOV}" in c for c in said)
        after = s2s.s2s_state(dep, graph, cert.thumbprint, tenant)
        assert after.ok, repr(after)
        sp = read_crm_service_principal(graph)
        assert sp.has_certificate(cert.thumbprint) and "00000007-0000-0000-c000-000000000000" in \
            sp.service_principal_names
        # The script never ran: it would have needed the PFX on the server first, and nothing was uploaded.
        assert "upload" not in dep.journal().column("event")
        again = s2s.configure_s2s(dep, after, cert.pfx_file, params["pfx_password"], "", tenant, "",
                                  graph=graph, cert_der=cert.der)
        assert again.changes == []
