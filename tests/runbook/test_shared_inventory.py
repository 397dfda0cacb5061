"""One inventory for a customer's whole lifecycle: the setup runbook's parameters (pfx_password,
client_secret, certificate_days) given to s2s-health are accepted, checked as the setup runbook would,
left out and listed; a name no registered runbook declares is still refused, with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from psbridge.batch import inventory
from psbridge.batch.inventory import InventoryError
from psbridge.runbook import registry
from psbridge.runbook.definition import Runbook
from psbridge.runbook.params import ParamsError, check

SETUP_ONLY = {"pfx_password": "lab:{customer}/{deployment}/pfx-password",
              "client_secret": "lab:{customer}/{deployment}/client-secret", "certificate_days": 365}


@pytest.fixture(scope="module")
def health() -> Runbook:
    return registry.load("s2s-health")


def _inventory(tmp_path: Path, defaults: dict[str, object]) -> Path:
    import yaml

    path = tmp_path / "fleet.yaml"
    servers = ["CRM01=https://crm01.fabrikam.local:5986/wsman"]
    rows = [{"customer": "fabrikam", "deployment": "prod", "organization": o} for o in ("sales", "service")]
    path.write_text(yaml.safe_dump({"defaults": {"lab": "", "servers": servers, **defaults}, "orgs": rows}),
                    encoding="utf-8")
    return path


def test_the_setup_inventory_serves_health(tmp_path: Path, health: Runbook) -> None:
    inv = inventory.load(_inventory(tmp_path, SETUP_ONLY), health)
    assert [o.key for o in inv.orgs] == ["fabrikam/sales", "fabrikam/service"]
    for org in inv.orgs:
        assert not set(SETUP_ONLY) & set(org.params), org.params  # left out: health never sees them
    # Each with every runbook that takes it: renewal takes certificate_days too.
    declared = {"pfx_password": ["exchange-online-s2s"], "client_secret": ["exchange-online-s2s"],
                "certificate_days": ["exchange-online-s2s", "s2s-renew-certificate"]}
    assert inv.ignored.ignored == declared
    note = inv.ignored.note()
    assert note.startswith("ignored, parameters of other runbooks")
    assert "pfx_password (exchange-online-s2s)" in note and "certificate_days" in note
    assert inv.as_validated["ignored"] == declared


def test_a_typo_is_still_refused_with_the_other_runbooks_names_as_hints(tmp_path: Path,
                                                                      health: Runbook) -> None:
    with pytest.raises(InventoryError) as e:
        inventory.load(_inventory(tmp_path, {"pfx_pasword": "lab:x/pfx"}), health)
    assert "pfx_pasword: unknown parameter (did you mean pfx_password?)" in str(e.value)
    with pytest.raises(ParamsError, match="colour: unknown parameter"):
        check(health, {"customer": "c", "organization": "o", "colour": "blue"})


def test_a_left_out_parameter_is_still_checked_by_its_own_spec(health: Runbook) -> None:
    given = {"customer": "c", "organization": "o", "pfx_password": "hunter2-the-password",
             "certificate_days": "many"}
    with pytest.raises(ParamsError) as e:
        check(health, given)
    problems = e.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith("pfx_password: not a secret reference")
    assert problems[0].endswith("(a parameter of exchange-online-s2s)")
    assert problems[1] == ("certificate_days: expected a whole number, got 'many' "
                           "(a parameter of exchange-online-s2s)")
    assert "hunter2-the-password" not in str(e.value)


def test_the_runbooks_own_parameters_are_not_ignored(health: Runbook) -> None:
    checked = check(health, {"customer": "c", "organization": "o", "warn_days": 14})
    assert checked.ignored == {} and checked.note() == "" and checked.params["warn_days"] == 14
