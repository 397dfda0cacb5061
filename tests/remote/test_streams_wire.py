"""Every PowerShell stream reaches the Result, through the lab's real transport.

The lab's emulated CRM commands write only output, errors and Write-Host text; warnings, verbose,
debug, progress and Write-Information come from commands this test gives the lab's endpoint, so
that each stream is produced server-side and crosses the wire like any other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from psbridge.lab.runspace import ErrorRecord, Invocation
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote import ConnectionProfile, Session

PASSWORD = "str3ams 'pw'"


def every_stream(ctx: Any, statements: Sequence[Sequence[Invocation]], pipeline_input: Any) -> None:
    ctx.write_host("Connecting...", foreground="Yellow", background="DarkBlue")
    ctx.write_progress("Configuring", "step 2 of 4", percent_complete=50, activity_id=3)
    ctx.write_warning("the certificate expires in 20 days")
    ctx.write_verbose("reading ServerSettings")
    ctx.write_debug("token cache miss")
    ctx.write_information("plain info", source="Configure", tags=["Step2"])
    ctx.write_error(ErrorRecord("Organization with UniqueName = x does not exist.", category="ObjectNotFound",
                                fqid="GetCrmOrganization,Microsoft.Crm.PowerShell.GetCrmOrganizationCmdlet",
                                target="x", target_name="x", command_name="Get-CrmOrganization",
                                script_name="C:\\Tools\\x.ps1", line_number=12, offset_in_line=5,
                                script_line="Get-CrmOrganization -Name $org"))
    ctx.write_output("Process succeeded.")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    state: Path = tmp_path_factory.mktemp("streams")
    World.seed(state, servers=1, orgs=1)
    spec = EndpointSpec("CRM01", "http", {"LAB\\crmadmin": PASSWORD}, state)
    ep = start_endpoint(spec, runner=every_stream)
    yield ep
    ep.stop()


def test_every_stream_reaches_the_result(endpoint: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    monkeypatch.setenv("PSB_STREAMS_PW", PASSWORD)
    profile = ConnectionProfile(host="127.0.0.1", port=endpoint.port, scheme="http", auth="ntlm",
                                user="LAB\\crmadmin", password="env:PSB_STREAMS_PW", name="CRM01")
    with Session(profile) as s:
        res = s.invoke("Invoke-Anything")
    assert res.output == ["Process succeeded."]
    assert res.warnings == ["the certificate expires in 20 days"]
    assert res.verbose == ["reading ServerSettings"]
    assert res.debug == ["token cache miss"]
    host = [m for m in res.information if m.is_host]
    assert [(m.text, m.foreground, m.background) for m in host] == [("Connecting...", "Yellow", "DarkBlue")]
    info = [m for m in res.information if not m.is_host]
    assert [(m.text, m.source, m.tags) for m in info] == [("plain info", "Configure", ("Step2",))]
    (p,) = res.progress
    assert (p.activity, p.status, p.percent_complete, p.activity_id) == ("Configuring", "step 2 of 4", 50, 3)
    (err,) = res.errors
    assert (err.category, err.target_name, err.command) == ("ObjectNotFound", "x", "Get-CrmOrganization")
    assert err.fqid.startswith("GetCrmOrganization") and not err.terminating
    assert res.state == "Completed" and res.had_errors and not res.ok
    text = str(res)
    assert "WARNING: the certificate expires" in text and "VERBOSE: reading" in text
    assert "| Connecting..." in text
    page = res._repr_html_()
    assert "color:#b8860b" in page and "ERROR: Organization with UniqueName" in page
    assert list(res.errors_frame().columns)[:3] == ["message", "category", "fqid"]
