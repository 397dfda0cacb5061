"""One organization's share of a batch, as it runs on a worker: decide, run, report.

The runbook's own :class:`~psbridge.runbook.runner.Runner` does the work, step by step, into the
org's own record; this module only decides what it should run and around which locks:

- for a runbook that changes state, the org's latest record decides (read when the work starts,
  so a task that a dead worker left and Dask started again elsewhere sees what the first attempt
  did): complete and
  verified — skipped; failed or interrupted — resumed at its step (the runner rebuilds an
  interrupted record from its journal first, and every step reads the world before acting,
  so nothing is done twice); none — the whole runbook. A read-only runbook (s2s-health) runs whole
  every time: its earlier reading is not how the org is now;
- the first org of a deployment (its *lead*) runs the deployment- and tenant-wide steps inside
  locks (:class:`distributed.Lock`) named after its deployment and its tenant, so no two runs change
  one deployment or tenant at once, on any machine of the cluster;
- the other orgs of the deployment carry those steps' facts from the lead's record
  (``Runner(borrowed=...)``) and run the read-only and organization steps themselves. When the
  lead failed at a deployment-wide step they are *blocked by* it, with its reason;
- a step that calls Microsoft Graph (``graph: true``) runs through its tenant's Graph gate
  (:mod:`psbridge.batch.graphgate`): a bounded number at once per tenant, none while Graph has
  told one of them to wait.

Everything returned is plain data (it crosses processes) and holds no secret value: parameters
are references, reasons pass through the redactor.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psbridge import evidence
from psbridge.batch.graphgate import DEFAULT_CONCURRENCY, gate_for
from psbridge.batch.inventory import OrgEntry, deployment_identity
from psbridge.runbook import throttles
from psbridge.runbook.definition import Runbook, Scope
from psbridge.secrets import redact

TOPIC = "psbridge-batch"  # the Dask event topic a batch's progress goes by
PARTIAL = "partial"  # a latest record that completed some of the steps only

# What became of an org in this batch.
COMPLETE, FAILED, INTERRUPTED, BLOCKED, SKIPPED, PLANNED = (
    "complete", "failed", "interrupted", "blocked", "skipped", "planned")


@dataclass(frozen=True)
class OrgTask:
    entry: OrgEntry
    runbook: str  # a name or a path, loaded on the worker
    records_root: str
    batch_id: str
    lead: bool
    mode: str = "apply"
    start: str | None = None
    only: str | None = None
    # Steps' kernels forked from a zygote (the runner's default); a test may ask for ordinary ones.
    forked_kernels: bool = True
    graph_concurrency: int = DEFAULT_CONCURRENCY  # Graph steps of one tenant at once


@dataclass
class OrgOutcome:
    key: str
    customer: str
    organization: str
    deployment: str
    tenant: str
    lead: bool
    status: str
    action: str = ""
    failed_step: str | None = None
    reason: str | None = None
    blocked_by: str | None = None
    record: str | None = None
    run_id: str | None = None
    started: float | None = None
    ended: float | None = None
    worker: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # For a lead: the facts of the deployment-wide steps, by step: (facts, their origin).
    borrowable: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    # When a state-changing deployment- or tenant-wide step held its lock: (lock, acquired, released);
    # and the tenant's Graph gate: each lease, each hold set, each wait for a hold (graphgate's names).
    held: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def duration_s(self) -> float | None:
        return round(self.ended - self.started, 3) if self.started and self.ended else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = self.duration_s
        return out


_BOOKS: dict[str, Runbook] = {}


def _book(ref: str) -> Runbook:
    from psbridge.runbook import registry

    if ref not in _BOOKS:
        _BOOKS[ref] = registry.load(ref)
    return _BOOKS[ref]


def shared_steps(book: Runbook) -> list[str]:
    """The steps a deployment's lead runs for all its orgs: deployment- or tenant-wide, changing state.

    Read-only ones (the prerequisites) each org runs itself: they record the org's own facts and
    may overlap.
    """
    return [s.id for s in book.steps if s.scope != Scope.ORGANIZATION and not s.read_only]


def reads_only(book: Runbook) -> bool:
    """A runbook that changes nothing (s2s-health): every batch runs it again, never skips or resumes it,
    because what an earlier complete run read is not how the org is now."""
    return all(s.read_only for s in book.steps)


def tenant_identity(entry: OrgEntry) -> str:
    """The tenant an org's cloud steps work in, as every batch on a cluster names it."""
    where = deployment_identity(entry.params) or f"{entry.customer}/{entry.deployment}"
    # An empty tenant is the deployment's own (in the lab, each deployment has its twin).
    return entry.tenant or f"({where})"


def lock_name(entry: OrgEntry, scope: Scope) -> str:
    """The lock of what a step changes: named by the servers (or lab), not by what an inventory calls
    it, so two batches that call one deployment differently still exclude each other."""
    if scope == Scope.TENANT:
        return f"psbridge-tenant:{tenant_identity(entry)}"
    where = deployment_identity(entry.params) or f"{entry.customer}/{entry.deployment}"
    return f"psbridge-deployment:{where}"


def latest(records_root: Path, entry: OrgEntry, book: Runbook) -> tuple[str | None, Path | None]:
    """The state of this org's latest applied record of this runbook, and where it is.

    A record a dead run left without its manifest counts as interrupted (the runner repairs it
    before it resumes); a complete one whose files no longer match its manifest as ``tampered``.
    """
    base = records_root / entry.customer / entry.organization
    if not base.is_dir():
        return None, None
    for rec in evidence.in_run_order((p for p in base.iterdir() if p.is_dir()), newest_first=True):
        found = evidence.inspect(rec)
        if found.needs_repair:
            return evidence.RecordState.INTERRUPTED, rec
        manifest = found.manifest or {}
        if manifest.get("mode") != "apply" or manifest.get("runbook", {}).get("name") != book.name:
            continue
        if found.verdict == evidence.Verdict.TAMPERED:
            return "tampered", rec
        status = str(manifest.get("status"))
        done = {s.get("id") for s in manifest.get("steps", []) if s.get("status") in ("succeeded", "carried")}
        if status == evidence.RecordState.COMPLETE and not {s.id for s in book.steps} <= done:
            return PARTIAL, rec  # a run of some steps only (--only, --to): the rest still to do
        return status, rec
    return None, None


def _event(kind: str, **data: Any) -> None:
    """Tell the batch's client what happened (Dask's event log); nothing when not on a worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(TOPIC, {"event": kind, "t": time.time(), **data})


class _StepLocks:
    """The runner's progress hook: the deployment-wide steps run inside their deployment's and tenant's locks.

    Held from the first of them that starts to the end of the last: they are one sequence (the
    certificate the next steps install, the client secret configure-s2s uses and its teardown
    removes), which another run must not interleave with. Both locks are taken at once, the
    deployment's first, so two runs never wait for each other in a circle. The read-only steps
    take the deployment's lock for themselves alone: they sweep leftovers from its servers.
    """

    def __init__(self, task: OrgTask, outcome: OrgOutcome, book: Runbook, reports: Path) -> None:
        self.task, self.outcome = task, outcome
        self.shared = shared_steps(book)
        self.scopes = {s.id: s.scope for s in book.steps}
        self._held: list[tuple[Any, str, float]] = []
        self._graph = gate_for(tenant_identity(task.entry), task.graph_concurrency, reports,
                               lambda name, since, until: outcome.held.append((name, since, until)))

    def __call__(self, event: str, step_outcome: Any) -> None:
        step = step_outcome.step
        key = self.task.entry.key
        if event == "start":
            if step.id in self.shared and self.task.mode == "apply":
                if not self._held:
                    rest = self.shared[self.shared.index(step.id):]
                    for scope in (Scope.DEPLOYMENT, Scope.TENANT):
                        if any(self.scopes[s] == scope for s in rest):
                            self._acquire(lock_name(self.task.entry, scope), step.id)
            else:
                self.release()
                if step.read_only and self.task.mode == "apply":
                    # The checks and the summary remove what a dead run left on the servers (an
                    # uploaded PFX): that must not be another live run's upload.
                    self._acquire(lock_name(self.task.entry, Scope.DEPLOYMENT), step.id)
            if step.graph and self._graph is not None:
                # Inside the locks: a lease of the tenant's Graph is only ever held by a running step.
                _event("lock-wait", org=key, step=step.id, lock=f"{self._graph.tenant}'s Graph")
                self._graph.enter()
            _event("step-start", org=key, step=step.id)
        else:
            if self._graph is not None:
                self._graph.leave()
            more = step.id in self.shared and step.id != self.shared[-1]
            if not (more and step_outcome.status == "succeeded"):
                self.release()
            _event("step-end", org=key, step=step.id, status=step_outcome.status,
                   error=step_outcome.error, seconds=step_outcome.duration)

    def _acquire(self, name: str, step: str) -> None:
        try:
            from distributed import Lock, get_worker

            get_worker()
        except (ImportError, ValueError):
            self._held.append((None, name, time.time()))  # run outside a cluster (a unit test)
            return
        lock = Lock(name)
        _event("lock-wait", org=self.task.entry.key, step=step, lock=name)
        lock.acquire()
        self._held.append((lock, name, time.time()))

    def release(self) -> None:
        if self._graph is not None:
            self._graph.leave()
        while self._held:
            lock, name, since = self._held.pop()
            # The time before the release: the next holder's acquisition can only come after it.
            self.outcome.held.append((name, since, time.time()))
            if lock is not None:
                with contextlib.suppress(Exception):  # a lease the scheduler already dropped
                    lock.release()


@contextlib.contextmanager
def _lab_environment(params: dict[str, Any]) -> Iterator[dict[str, str]]:
    """The lab a deployment's ``lab`` parameter names, for this run's own secret look-ups and its kernels.

    Each lab deployment's sign-ins are cached beside it: the twins of a fleet all call their
    tenant and administrator by the same names, and one twin's tokens mean nothing to another.
    A worker runs one org at a time (one thread), so the process environment can follow it.
    """
    lab = str(params.get("lab") or "")
    if not lab or lab.lower() == "auto":
        yield {}
        return
    from psbridge.runbook.deployment import lab_state

    state = lab_state(lab).resolve()
    env = {"PSBRIDGE_LAB_STATE": str(state), "PSBRIDGE_TOKEN_CACHE": str(state / "msal")}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _borrowable(records_root: Path, entry: OrgEntry, book: Runbook,
                result: Any | None) -> dict[str, tuple[dict[str, Any], str]]:
    """The lead's facts of the shared steps, by step, with the record each comes from."""
    from psbridge.runbook.runner import CARRIED, SUCCEEDED, latest_facts

    wanted = shared_steps(book)
    out: dict[str, tuple[dict[str, Any], str]] = {}
    if result is not None and result.mode == "plan":
        for s in result.steps:
            if s.step.id in wanted and s.status in (SUCCEEDED, CARRIED):
                out[s.step.id] = (dict(s.facts), f"{entry.key}/{result.run_id}")
        return out
    facts, origin = latest_facts(records_root, entry.customer, entry.organization, len(book.steps), book)
    for sid in wanted:
        if sid in origin:
            where = origin[sid] if "/" in origin[sid] else f"{entry.key}/{origin[sid]}"
            out[sid] = (facts[sid], where)
    return out


def run_org(task: OrgTask, lead: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one org's share of the batch; its outcome as plain data. Never raises for the org's failure."""
    entry = task.entry
    out = OrgOutcome(entry.key, entry.customer, entry.organization, entry.deployment, entry.tenant,
                     task.lead, status=FAILED, started=time.time())
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        out.worker = str(get_worker().address)
    _event("org-start", org=entry.key, lead=task.lead)
    try:
        _run(task, lead, out)
    except KeyboardInterrupt:
        out.status, out.reason = INTERRUPTED, "stopped by Ctrl-C"
    except Exception as e:  # one org's failure is its own: the batch goes on with the others
        out.status = FAILED
        out.reason = redact(f"{type(e).__name__}: {e}")
    out.ended = time.time()
    _event("org-end", org=entry.key, status=out.status, failed_step=out.failed_step, reason=out.reason,
           action=out.action)
    return out.as_dict()


def _run(task: OrgTask, lead: dict[str, Any] | None, out: OrgOutcome) -> None:
    from psbridge.runbook.runner import Runner

    book = _book(task.runbook)
    root = Path(task.records_root)
    entry = task.entry
    shared = shared_steps(book)
    start, only, resume = task.start, task.only, False
    borrowed: dict[str, tuple[dict[str, Any], str]] = {}
    if not task.lead:
        assert lead is not None
        borrowed = {sid: (dict(f), str(o)) for sid, (f, o) in (lead.get("borrowable") or {}).items()}
        missing = [s for s in shared if s not in borrowed]
        if (task.mode == "apply" and missing) or lead["status"] == BLOCKED:
            # The lead did not get through a deployment-wide step: this org cannot go on without it.
            step = lead["failed_step"] if lead["failed_step"] in shared else (missing or ["its run"])[0]
            out.status, out.blocked_by = BLOCKED, f"{lead['key']} {step}"
            out.reason = lead["reason"] or f"no completed {step} in {lead['key']}'s records"
            out.action = f"blocked by {out.blocked_by}"
            return
        if only and book.step(only).id in shared:
            out.status, out.action = SKIPPED, f"{only} is deployment-wide: done by {lead['key']}"
            return

    if task.mode == "apply" and not (start or only) and not reads_only(book):
        state, rec = latest(root, entry, book)
        if state == evidence.RecordState.COMPLETE:
            out.status, out.record = SKIPPED, str(rec)
            out.run_id = rec.name if rec else None
            out.action = f"complete and verified (run {out.run_id}): skipped"
            if task.lead:
                out.borrowable = _borrowable(root, entry, book, None)
            out.facts = _facts_of(rec)
            return
        if state in (evidence.RecordState.FAILED, evidence.RecordState.INTERRUPTED):
            resume = True
            out.action = f"resumed (its run {rec.name if rec else '?'} was {state})"
        elif state == PARTIAL:
            done = {s.get("id") for s in evidence.read_manifest(rec).get("steps", [])
                    if s.get("status") in ("succeeded", "carried")} if rec else set()
            start = next((s.id for s in book.steps if s.id not in done), None)
            out.action = f"ran from {start}: its latest run {rec.name if rec else '?'} did only some steps"
        elif state == "tampered":
            out.action = f"ran again: its latest record {rec.name if rec else '?'} does not verify"
        else:
            out.action = "ran"
    else:
        out.action = "planned" if task.mode == "plan" else (
            f"ran only {only}" if only else f"ran from {start}" if start else "ran: a reading is of now")

    with _lab_environment(entry.params) as env, tempfile.TemporaryDirectory(prefix="psbridge-graph-") as tmp:
        # Where this org's step kernels report the Retry-After Graph gave them, for its Graph gate.
        reports = Path(tmp) / "throttles.jsonl"
        hooks = _StepLocks(task, out, book, reports)
        # The org's run page links back to the batch's page: records/<customer>/<org>/<run>/ to
        # records/batches/<id>/index.html.
        batch = {"id": task.batch_id, "page": f"../../../batches/{task.batch_id}/index.html"}
        runner = Runner(book, entry.params, records_root=root, mode=task.mode,
                        env={**env, throttles.ENV: str(reports)}, progress=hooks,
                        borrowed=borrowed, forked_kernels=task.forked_kernels, batch=batch,
                        leave_kernel=True)  # this worker's next org starts in it
        try:
            result = runner.run(start=start, only=only, resume=resume)
        finally:
            hooks.release()
    if resume:
        point = result.manifest.get("range", {}).get("from")
        out.action = f"resumed at {point} " + out.action.split(" ", 1)[1]
    out.record, out.run_id = str(result.record_dir), result.run_id
    out.steps = [{"id": s.step.id, "status": s.status, "seconds": s.duration, "error": s.error,
                  "carried_from": s.carried_from} for s in result.steps]
    out.facts = {k: v for k, v in result.facts.items() if k in book.facts}
    failed = result.failed_step
    if task.mode == "plan":
        out.status = PLANNED if result.ok else FAILED
    else:
        out.status = COMPLETE if result.ok else str(result.status)
    if failed is not None:
        out.failed_step, out.reason = failed.step.id, failed.error
    if task.lead:
        out.borrowable = _borrowable(root, entry, book, result)


def _facts_of(rec: Path | None) -> dict[str, Any]:
    if rec is None:
        return {}
    try:
        manifest = evidence.read_manifest(rec)
    except (OSError, ValueError):
        return {}
    facts: dict[str, Any] = {}
    for step in manifest.get("steps", []):
        facts.update({k: v for k, v in (step.get("facts") or {}).items() if k != "changes"})
    return facts
