"""The batch inventory: CSV and YAML, defaults, deployment files, templates, and every problem
named with its row before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from psbridge.batch import inventory
from psbridge.batch.inventory import InventoryError
from psbridge.errors import ParameterError
from psbridge.runbook import registry
from psbridge.runbook.definition import Runbook

SERVERS = "CRM01=https://crm01.fabrikam.local:5986/wsman"


@pytest.fixture(scope="module")
def book() -> Runbook:
    return registry.load(None)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_defaults_deployments_and_templates(tmp_path: Path, book: Runbook) -> None:
    _write(tmp_path, "wingtip.yaml",
           "servers: ['CRM01=https://crm.wingtip.local:5986/wsman']\nwinrm_user: WINGTIP\\admin\n")
    path = _write(tmp_path, "fleet.yaml", f"""
defaults:
  pfx_password: "keyring:psbridge/{{customer}}-{{deployment}}-pfx"
  client_secret: "keyring:psbridge/{{customer}}-{{tenant}}-secret"
  app_name: "psbridge ({{customer}})"
deployments:
  fab-prod: {{servers: ["{SERVERS}"], parameters: {{winrm_user: "FABRIKAM\\\\crmadmin"}}}}
  wingtip: {{file: wingtip.yaml}}
orgs:
  - {{customer: fabrikam, deployment: fab-prod, organization: sales, tenant: fabrikam.onmicrosoft.com}}
  - {{customer: fabrikam, deployment: fab-prod, organization: service, tenant: fabrikam.onmicrosoft.com,
     mailboxes: [all]}}
  - {{customer: wingtip, deployment: wingtip, organization: wingtip, overrides: {{certificate_days: 90}}}}
""")
    inv = inventory.load(path, book)
    assert [o.key for o in inv.orgs] == ["fabrikam/sales", "fabrikam/service", "wingtip/wingtip"]
    sales, service, wingtip = inv.orgs
    assert sales.params["pfx_password"] == "keyring:psbridge/fabrikam-fab-prod-pfx"
    assert sales.params["client_secret"] == "keyring:psbridge/fabrikam-fabrikam.onmicrosoft.com-secret"
    assert sales.params["winrm_user"] == "FABRIKAM\\crmadmin" and sales.params["servers"] == [SERVERS]
    assert service.params["mailboxes"] == ["all"] and sales.params["mailboxes"] == []
    # No tenant named: the template's {tenant} is the deployment's own.
    assert wingtip.params["client_secret"] == "keyring:psbridge/wingtip-wingtip-secret"
    assert wingtip.params["winrm_user"] == "WINGTIP\\admin" and wingtip.params["certificate_days"] == 90
    assert list(inv.deployments()) == ["fab-prod", "wingtip"]
    assert [o.key for o in inv.select("fab-*").orgs] == ["fabrikam/sales", "fabrikam/service"]
    assert [o.key for o in inv.select("*/wingtip").orgs] == ["wingtip/wingtip"]


def test_csv_rows_cells_read_as_yaml(book: Runbook) -> None:
    example = Path(__file__).parents[2] / "runbooks" / "examples" / "fleet.csv"
    inv = inventory.load(example, book)
    assert [o.key for o in inv.orgs] == ["fabrikam/sales", "fabrikam/service", "wingtip/wingtip"]
    assert inv.orgs[0].params["servers"][1].startswith("CRM02=")
    assert inv.orgs[1].params["mailboxes"] == ["queue:support"]
    assert inv.orgs[2].params["pfx_password"] == "keyring:psbridge/wingtip-wingtip-pfx"


def test_every_problem_with_its_row_before_anything_runs(tmp_path: Path, book: Runbook) -> None:
    path = _write(tmp_path, "bad.csv", "\n".join([
        "customer,deployment,organization,servers,pfx_password,client_secret,certificate_days,colour",
        f"fabrikam,fab,sales,{SERVERS},keyring:psbridge/{{customer}}-pfx,keyring:psbridge/x,365,",
        f"fabrikam,fab,sales,{SERVERS},keyring:psbridge/{{customer}}-pfx,keyring:psbridge/x,365,",
        f"fabrikam,fab,service,{SERVERS},hunter2-not-a-reference,keyring:psbridge/x,365,",
        f"fabrikam,fab,hr,{SERVERS},keyring:psbridge/{{customr}}-pfx,keyring:psbridge/x,99999,",
        f"wingtip,wt,wingtip,{SERVERS},keyring:psbridge/w,keyring:psbridge/y,365,",
        f"contoso,fab,other,{SERVERS},keyring:psbridge/{{customer}}-pfx,keyring:psbridge/x,365,",
        "tailspin,tt,tailspin,CRM01=https://crm.tailspin.local:5986/wsman,keyring:psbridge/t,keyring:psbridge/t,"
        "365,blue",
    ]) + "\n")
    with pytest.raises(InventoryError) as caught:
        inventory.load(path, book)
    assert isinstance(caught.value, ParameterError)
    problems = caught.value.problems
    said = "\n".join(problems)
    assert "rows 1, 2: fabrikam/sales is listed more than once" in said
    assert any(p.startswith("row 3 (fabrikam/service): pfx_password") for p in problems)
    assert "hunter2" not in said  # a secret written as a value is never repeated
    assert any(p.startswith("row 4 (fabrikam/hr)") and "{customr}" in p for p in problems)
    assert any(p.startswith("row 4 (fabrikam/hr): certificate_days") for p in problems)
    assert any(p.startswith("row 7 (tailspin/tailspin): colour: unknown parameter") for p in problems)
    assert any(p.startswith("row 6 (contoso/other)") and "belongs to customer fabrikam" in p
               for p in problems)
    assert any("deployments fab and wt name the same servers" in p for p in problems)


def test_rows_of_one_deployment_must_agree_on_its_steps(tmp_path: Path, book: Runbook) -> None:
    path = _write(tmp_path, "split.yaml", f"""
defaults: {{pfx_password: "keyring:psbridge/p", client_secret: "keyring:psbridge/c", servers: ["{SERVERS}"]}}
orgs:
  - {{customer: fabrikam, deployment: fab, organization: sales}}
  - {{customer: fabrikam, deployment: fab, organization: service, certificate_days: 30, profile_name: Other}}
""")
    with pytest.raises(InventoryError) as caught:
        inventory.load(path, book)
    # certificate_days feeds the deployment's certificate step; profile_name is the org's own.
    assert caught.value.problems == [
        "row 2 (fabrikam/service): deployment fab's steps run once for all its orgs, but this row differs "
        "from row 1 in certificate_days"]


def test_unreadable_inventories(tmp_path: Path, book: Runbook) -> None:
    with pytest.raises(InventoryError, match="no such inventory file"):
        inventory.load(tmp_path / "missing.csv", book)
    with pytest.raises(InventoryError, match="no organizations"):
        inventory.load(_write(tmp_path, "empty.csv", "customer,deployment,organization\n"), book)
    with pytest.raises(InventoryError, match="orgs"):
        inventory.load(_write(tmp_path, "x.yaml", "defaults: {}\n"), book)
