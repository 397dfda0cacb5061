"""``--cluster``: the records folder and each org's PFX are checked on every worker before any org runs.

A real Dask LocalCluster (a worker process, on loopback) answers for the PFX paths; a worker on another
machine, which reads its own folder where the batch wrote its mark, is stood in for by a client
whose workers answer as that machine would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from psbridge.batch import inventory, shared
from psbridge.batch.engine import ClusterError
from psbridge.runbook import registry

distributed = pytest.importorskip("distributed")


def _inventory(tmp_path: Path, pfx_path: str | None) -> inventory.Inventory:
    extra = f"\n  pfx_path: {pfx_path}" if pfx_path else ""
    path = tmp_path / "fleet.yaml"
    path.write_text(f"""
defaults:
  pfx_password: "keyring:psbridge/{{customer}}-pfx"
  client_secret: "keyring:psbridge/{{customer}}-secret"
  servers: ["CRM01=https://crm01.fabrikam.local:5986/wsman"]
  winrm_user: FABRIKAM\\crmadmin
  tenant: fabrikam.onmicrosoft.com
  cloud: global{extra}
orgs:
  - {{customer: fabrikam, deployment: prod, organization: sales}}
""", encoding="utf-8")
    return inventory.load(path, registry.load(None))


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", memory_limit=0) as local, Client(local) as c:
        yield c


def test_a_shared_folder_and_pfx_pass(tmp_path: Path, client: Any) -> None:
    pfx = tmp_path / "s2s.pfx"
    pfx.write_bytes(b"not read: only its presence is checked")
    shared.check(client, tmp_path / "records", _inventory(tmp_path, str(pfx)))
    assert not list((tmp_path / "records").glob(shared.PROBE + "*"))  # the mark is taken away


def test_two_batches_checking_one_folder_at_once_each_see_their_own_mark(tmp_path: Path, client: Any) -> None:
    """Two partners' batches on one records folder: neither overwrites nor removes the other's mark."""
    import threading

    pfx = tmp_path / "s2s.pfx"
    pfx.write_bytes(b"present")
    inventory = _inventory(tmp_path, str(pfx))
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def check() -> None:
        start.wait()
        try:
            for _ in range(5):
                shared.check(client, tmp_path / "records", inventory)
        except BaseException as e:  # collected: the test says which check failed
            errors.append(e)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert not list((tmp_path / "records").glob(shared.PROBE + "*"))


def test_a_pfx_missing_on_a_worker_stops_the_batch(tmp_path: Path, client: Any) -> None:
    pfx = tmp_path / "here-only.pfx"
    pfx.write_bytes(b"on the batch's machine when the inventory is read")
    fleet = _inventory(tmp_path, str(pfx))
    pfx.unlink()  # and not where the worker looks
    with pytest.raises(ClusterError, match=r"has no file at pfx_path .*here-only\.pfx"):
        shared.check(client, tmp_path / "records", fleet)


class _OtherMachine:
    """Workers whose records folder is another one: they read their own, without the batch's mark."""

    def run(self, fn: Any, path: str, token: str, pfx_paths: list[str]) -> dict[str, Any]:
        return {"tcp://other-machine:40000": fn(path + ".elsewhere", token, pfx_paths),
                "tcp://127.0.0.1:40001": fn(path, token, pfx_paths)}


def test_a_records_folder_a_worker_does_not_share_stops_the_batch(tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as e:
        shared.check(_OtherMachine(), tmp_path / "records", _inventory(tmp_path, None))
    assert "tcp://other-machine:40000" in str(e.value) and "127.0.0.1:40001" not in str(e.value)
    assert "give --records a folder every worker shares" in str(e.value)


def test_a_generated_certificate_is_a_warning(tmp_path: Path) -> None:
    assert "prod" in (shared.generated_pfx_warning(_inventory(tmp_path, None)) or "")
    pfx = tmp_path / "s2s.pfx"
    pfx.write_bytes(b"given")
    assert shared.generated_pfx_warning(_inventory(tmp_path, str(pfx))) is None
