"""The runbook across many organizations: ``psbridge batch INVENTORY``.

- :mod:`~psbridge.batch.inventory` reads and checks the inventory (one row per org);
- :mod:`~psbridge.batch.work` is one org's share, run on a Dask worker with the runbook's runner;
- :mod:`~psbridge.batch.engine` sends the orgs to Dask (a LocalCluster here, or ``--cluster``);
- :mod:`~psbridge.batch.record` writes and verifies ``records/batches/<id>/``, whose page
  :mod:`~psbridge.batch.page` draws; :mod:`~psbridge.batch.progress` is the live view;
- :mod:`~psbridge.batch.command` is the command itself.

Nothing of Dask is imported until a batch runs.
"""

from psbridge.batch.inventory import Inventory, InventoryError, OrgEntry, load

__all__ = ["Inventory", "InventoryError", "OrgEntry", "load"]
