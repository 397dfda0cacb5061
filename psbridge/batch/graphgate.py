"""A tenant's Microsoft Graph shared by a batch: a bounded number of steps at once, quiet while throttled.

Graph throttles per tenant (and per app in a tenant), so a fleet whose orgs share a tenant must
not all call it at once, and when Graph answers one of them ``429``/``503`` with ``Retry-After``,
the others should not start calling it before that time either. Both hold across the machines
of a cluster, with Dask's own primitives on the scheduler:

- a :class:`distributed.Semaphore` per tenant, ``psbridge-graph:<tenant>``, whose
  ``max_leases`` is ``--graph-concurrency``: a step marked ``graph: true`` in its runbook runs
  inside one lease;
- a :class:`distributed.Variable` per tenant, ``psbridge-graph-hold:<tenant>``: the time
  (seconds since the epoch) before which no Graph step of the tenant starts. A step's kernel
  reports each Retry-After its client honoured (:mod:`psbridge.runbook.throttles`); a thread
  of the org's worker reads those reports while the step runs and moves the hold later, under a
  :class:`distributed.Lock`, so that two reports never move it back.

The gate is per step, not per request: a step already running when another org is throttled
goes on (its own client honours any Retry-After it is given). A step waits for its lease first,
then for the hold, so the hold is read just before it starts. The hold is an epoch on the clock
of the machine that heard the Retry-After: machines of one cluster keep their clocks in sync.

What happened goes into the org's outcome (``held``, written to the batch's ``locks.json``):
``psbridge-graph:<tenant>`` for each lease (when the step started and ended),
``psbridge-graph-hold:<tenant>`` for each Retry-After the org was told (from then until it
passed), and ``psbridge-graph-waited:<tenant>`` when a step waited for a hold another org set.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psbridge.errors import GraphGateError
from psbridge.runbook import throttles

SEMAPHORE, HOLD, WAITED = "psbridge-graph:", "psbridge-graph-hold:", "psbridge-graph-waited:"
HOLD_LOCK = "psbridge-graph-hold-lock:"  # who moves the hold, one at a time
DEFAULT_CONCURRENCY = 4
WATCH_INTERVAL = 0.1  # seconds between two reads of a running step's Retry-After reports

Held = Callable[[str, float, float], None]


class GraphGate:
    """One org's way through its tenant's Graph gate, a step at a time (``enter``, then ``leave``)."""

    def __init__(self, tenant: str, limit: int, reports: Path, held: Held) -> None:
        from distributed import Lock, Semaphore, Variable

        self.tenant, self.limit, self.reports, self.held = tenant, limit, reports, held
        try:
            self._semaphore = Semaphore(max_leases=limit, name=SEMAPHORE + tenant)
        except ValueError as e:  # the scheduler knows this tenant's semaphore with another bound
            raise GraphGateError(f"tenant {tenant}: another batch on this cluster runs its Graph steps "
                                 f"with another --graph-concurrency ({e}); give the same number") from None
        self._hold = Variable(HOLD + tenant)
        self._moving = Lock(HOLD_LOCK + tenant)
        self._offset = 0
        self._since: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def hold_until(self) -> float:
        try:
            return float(self._hold.get(timeout=0))
        except TimeoutError:  # never set: the tenant was never throttled
            return 0.0

    def enter(self) -> None:
        self._semaphore.acquire()
        try:
            waited_from, waited = time.time(), False
            while (left := self.hold_until() - time.time()) > 0:
                waited = True
                time.sleep(min(left, 1.0))  # then look again: another answer may have moved it later
            if waited:
                self.held(WAITED + self.tenant, waited_from, time.time())
        except BaseException:
            self._semaphore.release()
            raise
        self._offset = self.reports.stat().st_size if self.reports.exists() else 0
        self._since = time.time()
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name=f"graph-gate {self.tenant}", daemon=True)
        self._watcher.start()

    def leave(self) -> None:
        if self._since is None:
            return
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        self._take_reports()  # what the step reported after the watcher's last look
        self.held(SEMAPHORE + self.tenant, self._since, time.time())
        self._since = None
        with contextlib.suppress(Exception):  # a lease the scheduler already dropped
            self._semaphore.release()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self._take_reports()

    def _take_reports(self) -> None:
        found, self._offset = throttles.read(self.reports, self._offset)
        for told in found:
            self._hold_to(told.until)
            self.held(HOLD + self.tenant, told.at, told.until)

    def _hold_to(self, until: float) -> None:
        with self._moving:
            if until > self.hold_until():
                self._hold.set(until)


def gate_for(tenant: str, limit: int, reports: Path, held: Held) -> Any:
    """The gate on a Dask worker; ``None`` outside one (a unit test runs the org in its own process)."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    return GraphGate(tenant, limit, reports, held)
