"""The batch on Dask distributed: a LocalCluster of worker processes here, or a cluster given by address.

Each org is one task (:func:`psbridge.batch.work.run_org`); a deployment's other orgs depend on
its lead's task, so they start once its deployment-wide steps are done and get its facts as
their argument. Dask does the rest: a bounded number of runs at once (one thread per worker
process, ``--parallel`` workers), a task whose worker died started again on another one, an
org with a network ``zone`` sent only to workers that carry the resource ``zone-<name>`` (a
worker inside that customer's network), progress as Dask events, and the locks
(:class:`distributed.Lock`) that keep two runs off one deployment, across machines.

Without ``--cluster`` the LocalCluster listens on loopback only: its scheduler, its workers and
the scheduler's HTTP endpoint (always started by Dask) on free ports of 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from psbridge import evidence
from psbridge.batch.inventory import Inventory
from psbridge.batch.work import INTERRUPTED, TOPIC, OrgTask, run_org
from psbridge.errors import RunbookError
from psbridge.intents import JOURNAL, Journal

Event = dict[str, Any]


class ClusterError(RunbookError):
    """The Dask cluster could not be reached or started, or its workers do not see the batch's paths:
    nothing of the batch ran."""


def zone_resource(zone: str) -> str:
    return f"zone-{zone}"


@contextlib.contextmanager
def client_for(address: str | None, parallel: int, zones: set[str]) -> Iterator[Any]:
    """A Dask client: on the cluster at ``address``, else on a LocalCluster of ``parallel`` processes."""
    import dask
    from distributed import Client, LocalCluster

    # The runs are not Dask's to kill for memory: a step's kernel stopped midway is an interrupted
    # change. Pausing or restarting a worker for its memory is switched off.
    settings = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False,
                "distributed.worker.daemon": False, "distributed.admin.tick.limit": "60s",
                "distributed.scheduler.worker-ttl": "5 minutes"}
    with dask.config.set(settings):
        if address:
            if not address.startswith(("tcp://", "tls://")):
                raise ClusterError("--cluster takes a scheduler address such as tcp://HOST:8786, "
                                   f"not {address!r}")
            try:
                client = Client(address, timeout="20s")
            except (OSError, TimeoutError) as e:
                raise ClusterError(f"no Dask scheduler answers at {address}: {e}") from None
            with client:
                yield client
            return
        resources = {zone_resource(z): 1 for z in zones}
        cluster = LocalCluster(n_workers=parallel, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=":0", memory_limit=0, resources=resources or None,
                               silence_logs=40)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close(timeout=30)


def run(inventory: Inventory, base: OrgTask, *, parallel: int, cluster: str | None,
        on_event: Callable[[Event], None] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Every org's outcome (inventory order) and whether the batch was stopped by Ctrl-C."""
    from distributed import as_completed

    zones = {o.zone for o in inventory.orgs if o.zone}
    outcomes: dict[str, dict[str, Any]] = {}
    stopped = False
    with client_for(cluster, parallel, zones) as client:
        if cluster:
            from psbridge.batch import shared

            # Other machines: the paths handed to them must be theirs too, before anything runs.
            shared.check(client, Path(base.records_root), inventory)
        if on_event is not None:
            handler = on_event
            # Dask hands each event over as (time, message).
            client.subscribe_topic(TOPIC, lambda ev: handler(ev[1] if isinstance(ev, tuple) else ev))
        futures: dict[Any, str] = {}
        for dep, members in inventory.deployments().items():
            # --orgs left the deployment's lead out: its records stand for it when they hold the
            # deployment-wide steps; else the first org chosen leads.
            first = inventory.lead_of(dep)
            lead: Any = _lead_from_records(first, base) if first not in members else None
            for i, entry in enumerate(members):
                task = replace(base, entry=entry, lead=i == 0 and lead is None)
                resources = {zone_resource(entry.zone): 1} if entry.zone else None
                # A unique key a batch: Dask must not take one batch's result for another's.
                key = f"psbridge-{base.batch_id}-{entry.key}"
                future = client.submit(run_org, task, lead, key=key, pure=False, resources=resources,
                                       priority=10 if i == 0 else 0)
                if task.lead:
                    lead = future
                futures[future] = entry.key
        try:
            for future in as_completed(list(futures)):
                try:
                    outcomes[futures[future]] = future.result()
                except Exception as e:  # the task itself was lost (its workers died too often)
                    outcomes[futures[future]] = _lost(inventory, futures[future], f"{type(e).__name__}: {e}")
        except KeyboardInterrupt:
            stopped = True
            client.cancel(list(futures))
    for entry in inventory.orgs:
        if entry.key not in outcomes:
            outcomes[entry.key] = _lost(inventory, entry.key,
                                        "the batch was stopped (Ctrl-C) before it ended", INTERRUPTED)
            # Its run may have begun: the batch's record then names the org's record of it.
            _left_by_batch(outcomes[entry.key], entry, base)
    return [outcomes[o.key] for o in inventory.orgs], stopped


def _left_by_batch(outcome: dict[str, Any], entry: Any, base: OrgTask) -> None:
    """Point a stopped org's outcome at the record this batch's run of it left, as that record says.

    A run stopped with its worker leaves its journal and no manifest yet: the manifest is written
    from the journal here, as the next run would (the worker is gone: the org's run lock is free).
    """
    rec = _batch_record(Path(base.records_root) / entry.customer / entry.organization, base.batch_id)
    if rec is None:
        return
    if not (rec / evidence.MANIFEST).is_file():
        from psbridge.batch.work import _book
        from psbridge.files import LockTimeout, locked
        from psbridge.runbook.runner import Runner

        root = Path(base.records_root)
        try:
            with locked(evidence.run_lock(root, entry.customer, entry.organization), timeout=0):
                Runner(_book(base.runbook), entry.params, records_root=root).repair_interrupted()
        except LockTimeout:  # its run still goes on somewhere (a cluster's worker): its record is its own
            pass
    if not (rec / evidence.MANIFEST).is_file():
        outcome["action"] = f"stopped in its run {rec.name}, whose record the next run rebuilds"
        return
    manifest = evidence.read_manifest(rec)
    steps = manifest.get("steps") or []
    outcome["record"], outcome["run_id"] = str(rec), rec.name
    outcome["steps"] = [{"id": s.get("id"), "status": s.get("status"), "seconds": s.get("duration_s"),
                         "error": s.get("error"), "carried_from": s.get("carried_from")} for s in steps]
    status = str(manifest.get("status"))
    if status == evidence.RecordState.COMPLETE:
        # It ended before the stop reached it; only its outcome was not collected.
        outcome.update(status="complete", reason=None, action=f"ran (run {rec.name})")
        return
    stopped = next((s for s in steps if s.get("status") in ("failed", "interrupted")), None)
    if stopped is not None:
        outcome["failed_step"] = stopped.get("id")
        outcome["action"] = f"stopped at {stopped.get('id')} (run {rec.name}, {status})"
    if status == evidence.RecordState.FAILED:
        outcome["status"] = "failed"
        outcome["reason"] = (stopped or {}).get("error") or outcome["reason"]


def _batch_record(org: Path, batch_id: str) -> Path | None:
    """The org's record of the run this batch started, if it started one."""
    for rec in sorted((p for p in org.iterdir() if p.is_dir()), reverse=True) if org.is_dir() else []:
        if (rec / evidence.MANIFEST).is_file():
            head = evidence.read_manifest(rec)
        else:
            head = (Journal.read(rec / JOURNAL).first("run-start") or {}).get("head") or {}
        if (head.get("batch") or {}).get("id") == batch_id:
            return rec
    return None


def _lead_from_records(entry: Any, base: OrgTask) -> dict[str, Any] | None:
    """The outcome a lead left out by --orgs stands for: its recorded deployment-wide steps, or None."""
    from psbridge.batch.work import SKIPPED, OrgOutcome, _book, _borrowable, shared_steps

    book = _book(base.runbook)
    facts = _borrowable(Path(base.records_root), entry, book, None)
    if base.mode != "apply" or not set(shared_steps(book)) <= set(facts):
        return None
    out = OrgOutcome(entry.key, entry.customer, entry.organization, entry.deployment, entry.tenant, True,
                     status=SKIPPED, action="not chosen by --orgs: its records stand for it")
    out.borrowable = facts
    return out.as_dict()


def _lost(inventory: Inventory, key: str, reason: str, status: str = "failed") -> dict[str, Any]:
    from psbridge.batch.work import OrgOutcome

    entry = next(o for o in inventory.orgs if o.key == key)
    lead = inventory.deployments()[entry.deployment][0] == entry
    return OrgOutcome(key, entry.customer, entry.organization, entry.deployment, entry.tenant, lead,
                      status=status, reason=reason, action="not finished").as_dict()
