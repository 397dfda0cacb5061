"""Run a runbook for one organization: each step notebook through papermill, in order.

::

    book = registry.load("exchange-online-s2s")
    params = validate(book, load_params("contoso.yaml"))
    result = Runner(book, params, records_root=Path("records")).run()
    result.status, result.record_dir, result.table()

Facts a step records are handed to the steps that consume them as papermill parameters.
The first failure stops the run, naming the step and the reason; ``run(start="install-
certificate")`` resumes there with the facts of the earlier steps taken from the latest
record of the org. ``mode="plan"`` runs every step read-only (``plan = True`` in the
notebook): each says what it would change and changes nothing.

Executed notebooks never touch the disk unscrubbed: papermill writes them to an in-memory
I/O handler (``psbridge-memory://``), the runner scrubs secret values out and then writes
them into the record with their HTML.

Crash safety: the run writes its ``journal.jsonl`` first (what it will run, with which
parameters), each step's start and end, and — from inside the kernels — every change's
intent and outcome (:mod:`psbridge.intents`). The manifest is built from that journal, so a
run that dies still leaves an honest record: the next run of the same organization (it holds
the organization's lock, so two runs never overlap) rebuilds the manifest of an interrupted
record before it starts, naming what was done and what was in flight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
import os
import platform
import secrets as pysecrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbformat.v4 import nbjson
from nbformat.v4.rwbase import strip_transient

from psbridge import __version__, evidence, files, intents
from psbridge.errors import ParameterError, RunbookError
from psbridge.runbook import facts as factmod
from psbridge.runbook import throttles, timing, zygote
from psbridge.runbook.definition import MODE_PARAMETER, Runbook, StepSpec
from psbridge.runbook.kernel import KERNEL_NAME, kernel_manager_class, new_stderr_log
from psbridge.runbook.warm import KernelPool, WarmKernel, retarget, take_left
from psbridge.secrets import SecretError, SecretRef, is_reference, redact, resolve

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.signing import Signer

log = logging.getLogger("psbridge.runbook")

SUCCEEDED, FAILED, NOT_RUN, CARRIED, INTERRUPTED = "succeeded", "failed", "not run", "carried", "interrupted"


class RunError(RunbookError):
    """A run cannot start (nothing was changed): another run holds the org, or earlier facts are missing."""


# --- papermill I/O: executed notebooks stay in memory until scrubbed -----------------------


class _MemoryHandler:
    scheme = "psbridge-memory://"

    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        self._lock = threading.Lock()

    def read(self, path: str) -> str:
        with self._lock:
            return self._files[path]

    def write(self, buf: str, path: str) -> None:
        with self._lock:
            self._files[path] = buf

    def pop(self, path: str) -> str | None:
        with self._lock:
            return self._files.pop(path, None)

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return [p for p in self._files if p.startswith(path)]

    def pretty_path(self, path: str) -> str:
        return path


_memory = _MemoryHandler()
# The parameters each notebook declares, read once a process (a notebook does not change in a run).
_DECLARED: dict[str, set[str]] = {}
_registered = False


# The runner's main thread relays every cell to its kernel and every message back, and waits for
# the GIL each time it wakes; its other threads (the recorder, the kernel pool) do throughput work.
# CPython makes a waiting thread wait a whole switch interval (5 ms by default) before the holder
# must let go: taking it to 0.5 ms took about 4% off a no-change run's wall here.
RELAY_SWITCH_INTERVAL = 0.0005
RECORD_HOLD = 1.0  # seconds the recorder waits at most for the next step's cells to run


def _relay_promptly() -> None:
    """Bound the main thread's wait for the GIL (process-wide, never lengthened)."""
    if sys.getswitchinterval() > RELAY_SWITCH_INTERVAL:
        sys.setswitchinterval(RELAY_SWITCH_INTERVAL)


def _register_memory() -> None:
    global _registered
    if not _registered:
        from psbridge.runbook.engine import register_io

        register_io(_MemoryHandler.scheme, _memory)
        _registered = True


# --- results --------------------------------------------------------------------------------


@dataclass
class StepOutcome:
    step: StepSpec
    status: str = NOT_RUN
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    carried_from: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.started and self.ended:
            return round((self.ended - self.started).total_seconds(), 3)
        return None

    @property
    def changes(self) -> list[str] | None:
        c = self.facts.get(factmod.CHANGES)
        return list(c) if isinstance(c, list) else None

    def summary(self, plan: bool = False) -> str:
        if self.status in (FAILED, INTERRUPTED):
            return self.error or self.status
        if self.status == CARRIED:
            return f"done earlier (run {self.carried_from})"
        if self.status != SUCCEEDED:
            return ""
        changes = self.changes
        if changes is None:
            return "done"
        if not changes:
            if self.step.read_only:
                return "checked (read-only step)"
            return "nothing to change" if plan else "already done: nothing changed"
        return ("would: " if plan else "") + "; ".join(changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.step.id,
            "notebook": self.step.notebook,
            "title": self.step.title,
            "status": self.status,
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "duration_s": self.duration,
            "facts": self.facts,
            "error": self.error,
            "carried_from": self.carried_from,
            "timings_s": self.timings,
        }


@dataclass
class RunResult:
    book: Runbook
    run_id: str
    record_dir: Path
    mode: str
    steps: list[StepOutcome]
    manifest: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", evidence.RecordState.FAILED))

    @property
    def ok(self) -> bool:
        return self.status == evidence.RecordState.COMPLETE

    @property
    def failed_step(self) -> StepOutcome | None:
        return next((s for s in self.steps if s.status in (FAILED, INTERRUPTED)), None)

    @property
    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in self.steps:
            out.update({k: v for k, v in s.facts.items() if k != factmod.CHANGES})
        return out

    def table(self) -> pd.DataFrame:
        import pandas as pd

        plan = self.mode == "plan"
        return pd.DataFrame(
            [{"step": s.step.stem, "status": s.status, "seconds": s.duration, "result": s.summary(plan)}
             for s in self.steps],
            columns=["step", "status", "seconds", "result"],
        )


# --- the runner -----------------------------------------------------------------------------

Progress = Callable[[str, StepOutcome], None]


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{pysecrets.token_hex(2)}"


def latest_facts(records_root: Path, customer: str, org: str, before: int, book: Runbook
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Facts of each step before index ``before``, from the latest applied record where that
    step completed (or was itself carried, with its facts); and the run each came from."""
    facts: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    wanted = {s.id for s in book.steps[:before]}
    for rec in reversed(list(evidence.records_of(records_root, customer, org))):
        try:
            manifest = evidence.read_manifest(rec)
        except (OSError, ValueError):
            continue
        if manifest.get("mode") != "apply" or manifest.get("runbook", {}).get("name") != book.name:
            continue
        for step in manifest.get("steps", []):
            sid = step.get("id")
            if sid in wanted and sid not in origin and step.get("status") in (SUCCEEDED, CARRIED):
                origin[sid] = step.get("carried_from") or manifest["run_id"]
                facts[sid] = dict(step.get("facts") or {})
        if wanted <= set(origin):
            break
    return facts, origin


class Runner:
    def __init__(
        self,
        book: Runbook,
        params: dict[str, Any],
        *,
        records_root: Path = Path("records"),
        mode: str = "apply",
        env: dict[str, str] | None = None,
        progress: Progress | None = None,
        cell_timeout: float = 900,
        start_timeout: float = 60,
        html: bool = True,
        kernels_ahead: int = 1,
        forked_kernels: bool = True,
        customer_key: str = "customer",
        org_key: str = "organization",
        borrowed: dict[str, tuple[dict[str, Any], str]] | None = None,
        signer: Signer | None = None,
        command: list[str] | None = None,
        batch: dict[str, str] | None = None,
        leave_kernel: bool = False,
    ) -> None:
        if mode not in ("apply", "plan"):
            raise ParameterError(f"mode is 'apply' or 'plan', not {mode!r}")
        self.book = book
        self.params = dict(params)
        self.records_root = Path(records_root)
        self.mode = mode
        self.env = dict(env or {})
        if "PSBRIDGE_LAB_STATE" in os.environ:
            self.env.setdefault("PSBRIDGE_LAB_STATE", os.environ["PSBRIDGE_LAB_STATE"])
        self.progress = progress
        self.cell_timeout = cell_timeout
        self.start_timeout = start_timeout
        self.html = html
        # How many kernels start ahead of the step that runs (each costs its memory while it waits).
        self.kernels_ahead = kernels_ahead
        # Step kernels forked from a zygote with psbridge imported (psbridge.runbook.zygote).
        self.forked_kernels = forked_kernels and zygote.SUPPORTED
        # A run that succeeds leaves a kernel, started while its last step runs, for the next run of
        # this process (a batch's worker runs org after org); any run takes one left for kernels
        # like its own (psbridge.runbook.warm.take_left).
        self.leave_kernel = leave_kernel
        # Who signs the record (psbridge.signing), and the command that ran it: the run page shows the
        # resume command as it must be typed (every option the run had).
        self.signer = signer
        self.command = list(command) if command else None
        # A run of a batch: {"id": ..., "page": the batch page's path relative to this record}, so the
        # run page links back to the batch's page.
        self.batch = dict(batch) if batch else None
        self._head_now: dict[str, Any] = {}
        self.customer = str(params.get(customer_key) or "customer")
        self.org = str(params.get(org_key) or "organization")
        # Steps another org's run did for this one (a batch: its deployment's or tenant's steps,
        # run once by the deployment's first org): step id -> (its facts, where they come from).
        # They are carried into this record, not run again.
        self.borrowed = dict(borrowed or {})
        self._log_lines: list[str] = []
        self._interrupted = False
        self._kernel_log = new_stderr_log()
        self._left_logs: list[Path] = []  # the standard error of a kernel an earlier run left
        self._reported = 0
        self._run_id = ""
        self._record_jobs: list[Future[Any]] = []
        # Clear from a step's end until the next step's cells run: the recorder and the kernel pool
        # wait, so the step's start (papermill reading and parameterizing its notebook, the client
        # connecting) does not share the runner's GIL with them (about 2% of a no-change run).
        self._step_underway = threading.Event()
        self._step_underway.set()
        self._keep: set[str] = self._references(self.params)
        # The schema allows no such names; a caller who built parameters by hand gets the same answer.
        root, here = self.records_root.resolve(), self.org_records.resolve()
        if here.parent.parent != root:
            raise RunError(f"the records of {self.customer!r}/{self.org!r} would be outside "
                           f"{self.records_root}")

    # The value of each secret reference the run can read is remembered, so the scrubber
    # masks it wherever a notebook might have shown it.
    def _remember_secrets(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            spec = self.book.parameters.get(name) or self.book.facts.get(name)
            if spec is not None and spec.type == "secret" and is_reference(value):
                # Not written yet (a step creates it) or unreadable: nothing to mask.
                with contextlib.suppress(SecretError):
                    resolve(str(value))

    def _references(self, values: dict[str, Any]) -> set[str]:
        """The secret references among parameters or facts (kept whole in the record)."""
        out = set()
        for name, value in values.items():
            spec = self.book.parameters.get(name) or self.book.facts.get(name)
            if spec is not None and spec.type == "secret" and isinstance(value, str) and _is_ref(value):
                out.add(value)
        return out

    def _log(self, text: str) -> None:
        line = f"{dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} {redact(text)}"
        self._log_lines.append(line)
        log.info("%s", text)

    @property
    def org_records(self) -> Path:
        return self.records_root / self.customer / self.org

    def resume_point(self) -> str | None:
        """The step the latest applied record of this org stopped at (failed or interrupted), if any."""
        for rec in reversed(list(evidence.records_of(self.records_root, self.customer, self.org))):
            try:
                manifest = evidence.read_manifest(rec)
            except (OSError, ValueError):
                continue
            if manifest.get("mode") != "apply" or manifest.get("runbook", {}).get("name") != self.book.name:
                continue
            if manifest.get("status") == evidence.RecordState.COMPLETE:
                return None
            ids = {s.id for s in self.book.steps}
            for step in manifest.get("steps", []):
                if step.get("status") in (FAILED, INTERRUPTED) and step.get("id") in ids:
                    return str(step["id"])
            return None
        return None

    @contextlib.contextmanager
    def _holding_org(self) -> Iterator[None]:
        """This org's lock for the whole run: two runs of one org never overlap, on any process.

        An OS file lock (:func:`psbridge.files.locked`): released by the OS when a run is
        killed, so a dead run never blocks the next one.
        """
        path = evidence.run_lock(self.records_root, self.customer, self.org)
        try:
            with files.locked(path, timeout=0):
                yield
        except files.LockTimeout:
            raise RunError(f"another run of {self.customer}/{self.org} is in progress (it holds {path}); "
                           "wait for it to end") from None

    def repair_interrupted(self) -> list[Path]:
        """Write the manifest of every record of this org that a dead run left without one."""
        repaired = []
        for rec in evidence.unfinished_records(self.records_root, self.customer, self.org):
            try:
                evidence.write_manifest_from_journal(rec, keep=frozenset(self._keep))
            except ValueError as e:
                log.warning("cannot rebuild the manifest of %s: %s", rec, e)
                continue
            self._log(f"rebuilt the manifest of the interrupted run {rec.name} from its journal")
            repaired.append(rec)
        return repaired

    def run(self, start: str | None = None, only: str | None = None, until: str | None = None,
            resume: bool = False) -> RunResult:
        """Run the steps from ``start`` (or the first) to ``until`` (or the last); ``only``: one step.

        ``resume``: start at the step where this org's latest run failed or was interrupted.
        Steps before ``start`` take their facts from this organization's latest records.
        """
        _register_memory()
        _relay_promptly()
        if self.forked_kernels:
            forks = zygote.shared()  # its imports run while this run reads its records
            if forks is not None and self.params.get("lab"):
                forks.preload(zygote.LAB_MODULES)
        with self._holding_org():
            # An earlier run that died is made an honest record first: its changes in flight are
            # what this run reads the world for before acting (every step reads before it acts).
            self.repaired = self.repair_interrupted()
            if resume and not (start or only):
                start = self.resume_point()
                if start is None:
                    self._log("nothing to resume: the latest run of this org completed (or there is none)")
            return self._run(start, only, until)

    def _run(self, start: str | None, only: str | None, until: str | None) -> RunResult:
        book = self.book
        chosen = only or start
        first = book.index(chosen) if chosen else 0
        last = first if only else (book.index(until) if until else len(book.steps) - 1)
        if last < first:
            raise RunError(f"step {book.steps[last].id} comes before {book.steps[first].id}: nothing to run")
        run_id = new_run_id() + ("-plan" if self.mode == "plan" else "")
        self._run_id = run_id
        record_dir = self.org_records / run_id
        writer = evidence.RecordWriter.at(record_dir)
        outcomes = [StepOutcome(s) for s in book.steps]
        known: dict[str, Any] = {k: v for k, v in self.params.items() if k in book.facts}
        for i in range(last + 1):
            step_id = book.steps[i].id
            if step_id in self.borrowed:
                facts, source = self.borrowed[step_id]
                outcomes[i].status = CARRIED
                outcomes[i].carried_from = source
                outcomes[i].facts = {k: v for k, v in facts.items() if k != factmod.CHANGES}
                known.update({k: v for k, v in outcomes[i].facts.items() if k in book.facts})
        if first > 0:
            by_step, origin = latest_facts(self.records_root, self.customer, self.org, first, book)
            carried = {k: v for f in by_step.values() for k, v in f.items() if k in book.facts}
            missing = [s.id for s in book.steps[:first] if s.id not in origin]
            needed = {f for s in book.steps[first:last + 1] for f in s.consumes}
            lacking = sorted(f for f in needed if f not in carried and f not in known
                             and any(f in s.produces for s in book.steps[:first]))
            if lacking and self.mode == "apply":
                raise RunError(
                    f"cannot start at {book.steps[first].id}: no earlier record of "
                    f"{self.customer}/{self.org} "
                    f"holds {', '.join(lacking)} (steps without a completed record: {', '.join(missing)}); "
                    "run the earlier steps first"
                )
            for k, v in carried.items():
                known.setdefault(k, v)
            for i, s in enumerate(book.steps[:first]):
                if s.id in origin:
                    outcomes[i].status = CARRIED
                    outcomes[i].carried_from = origin[s.id]
                    # Kept in this record too, so a resume of this run finds them.
                    outcomes[i].facts = {k: v for k, v in by_step[s.id].items() if k != factmod.CHANGES}
        started = dt.datetime.now(dt.UTC)
        self._remember_secrets(self.params)
        record_dir.mkdir(parents=True, exist_ok=True)
        journal = record_dir / intents.JOURNAL
        # The kernels append the intents of their changes to the same journal.
        self.env[intents.ENV_JOURNAL] = str(journal.resolve())
        self._head_now = self._head(run_id, started, first, last)
        intents.append({"event": "run-start", "head": self._head_now,
                        "steps": [o.as_dict() for o in outcomes], "references": sorted(self._keep)}, journal)
        self._log(f"run {run_id} of runbook {book.name} for {self.customer}/{self.org}, mode {self.mode}")
        for rec in self.repaired:
            self._log(f"the earlier run {rec.name} had been interrupted: its manifest was rebuilt from its "
                      "journal")
        status = evidence.RecordState.COMPLETE
        failure: str | None = None
        # Each step's notebook and HTML are written while the next step runs; the manifest waits.
        # The pool closes first (its last kernel's shutdown) while the recorder writes the last step.
        to_run = sum(1 for o in outcomes[first:last + 1] if o.status != CARRIED)
        key = self._kernel_key()
        left = take_left(key) if to_run else None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="psbridge-record") as recorder, \
                KernelPool(partial(self._kernel_manager, run_id), ahead=self.kernels_ahead,
                           start_timeout=self.start_timeout, needed=to_run,
                           quick=self.forked_kernels and zygote.SUPPORTED,
                           cwd=str(self.book.notebook_dir),
                           first=partial(self._retargeted, run_id, *left) if left else None,
                           spare=self._spare_manager if self.leave_kernel else None) as pool:
            try:
                for i in range(first, last + 1):
                    outcome = outcomes[i]
                    if outcome.status == CARRIED:
                        continue  # borrowed: done by another org's run, its facts already known
                    # Neither step line is fsync'd on the critical path (a killed runner loses nothing
                    # written): no change waits on step-start (the kernel's first intent, durable,
                    # takes it to disk), and step-end is synced by the recorder while the next step
                    # runs. A step-end lost with the machine leaves the step to run again on resume,
                    # which reads before it acts, as every step does.
                    intents.append({"event": "step-start", "step": outcome.step.id}, journal, durable=False)
                    ok = self._run_step(outcome, known, writer, pool, recorder)
                    intents.append({"event": "step-end", "outcome": outcome.as_dict()}, journal,
                                   durable=False)
                    self._record_jobs.append(self._record_soon(recorder, intents.sync, journal))
                    for event in pool.events[self._reported:]:
                        self._log(event)
                    self._reported = len(pool.events)
                    if not ok:
                        status = (evidence.RecordState.INTERRUPTED if self._interrupted
                                  else evidence.RecordState.FAILED)
                        failure = f"step {outcome.step.id} {outcome.status}: {outcome.error}"
                        self._log(failure)
                        break
                    known.update({k: v for k, v in outcome.facts.items() if k in book.facts})
                if self.leave_kernel and status == evidence.RecordState.COMPLETE:
                    pool.leave(key)
            finally:
                self._step_underway.set()  # no step starts any more: the recorder goes on at once
        for job in self._record_jobs:
            job.result()  # a notebook that could not be written stops the run here, loudly
        ended = dt.datetime.now(dt.UTC)
        writer.write_text(evidence.RUN_LOG, "\n".join(self._log_lines) + "\n", keep=frozenset(self._keep))
        said = ""
        for log_file in [*self._left_logs, self._kernel_log]:
            if log_file.exists():
                said += log_file.read_text(encoding="utf-8", errors="replace")
                log_file.unlink()
        if said.strip():
            # What the kernels wrote to standard error, kept with the record (scrubbed).
            writer.write_text("kernels.log", said, keep=frozenset(self._keep))
        intents.append({"event": "run-end", "status": str(status), "failure": failure,
                        "duration_s": round((ended - started).total_seconds(), 3)}, journal)
        manifest = evidence.write_manifest_from_journal(record_dir, keep=frozenset(self._keep),
                                                        signer=self.signer, html=self.html)
        if self._interrupted:
            raise KeyboardInterrupt(f"run stopped; record at {record_dir}")
        return RunResult(book, run_id, record_dir, self.mode, outcomes, manifest)

    def _head(self, run_id: str, started: dt.datetime, first: int, last: int) -> dict[str, Any]:
        book = self.book
        return {
            "run_id": run_id,
            "runbook": {"name": book.name, "title": book.title, "version": book.version,
                        "path": str(book.source) if book.source else None, "sha256": book.sha256},
            "customer": self.customer,
            "organization": self.org,
            "mode": self.mode,
            "operator": _operator(),
            "machine": platform.node(),
            "psbridge": __version__,
            "python": sys.version.split()[0],
            "started": started.isoformat(),
            "parameters": dict(self.params),
            "secret_parameters": [n for n in book.secret_parameters if n in self.params],
            "range": {"from": book.steps[first].id, "to": book.steps[last].id},
            **({"command": self.command} if self.command else {}),
            **({"batch": self.batch} if self.batch else {}),
        }

    def _kernel_manager(self, run_id: str, number: int) -> tuple[Any, Path]:
        """The manager of this run's n-th kernel: this interpreter, the run's environment, its own
        timings file (so a step's remote and cloud seconds are its own)."""
        timings_file = _timings_file(run_id, number)
        env = {**self.env, timing.ENV: str(timings_file)}
        manager_class = kernel_manager_class(env, self._kernel_log, forked=self.forked_kernels)
        return manager_class(kernel_name=KERNEL_NAME), timings_file

    def _kernel_key(self) -> tuple[Any, ...]:
        """What a kernel left by an earlier run must have been started with to be this run's: the
        environment its kernels get but for psbridge's own variables (which :func:`retarget` sets),
        the notebooks' folder, and how kernels start (the zygote they are forked from)."""
        env = {**os.environ, **self.env}
        forks = zygote.shared() if self.forked_kernels else None
        return (tuple(sorted((k, v) for k, v in env.items() if not k.startswith(zygote.OWN_PREFIX))),
                str(self.book.notebook_dir), self.forked_kernels, forks.process.pid if forks else None)

    def _spare_manager(self) -> tuple[Any, Path]:
        """The manager of a kernel for the next run: this run's environment without its journal or
        timings (the taking run gives it its own), its standard error a log of its own."""
        env = {k: v for k, v in self.env.items() if k not in (intents.ENV_JOURNAL, timing.ENV)}
        stderr = new_stderr_log()
        return kernel_manager_class(env, stderr, forked=self.forked_kernels)(kernel_name=KERNEL_NAME), stderr

    def _retargeted(self, run_id: str, kernel: WarmKernel, stderr: Path) -> WarmKernel:
        """The kernel an earlier run left, as this run's first: psbridge's variables those this
        run's first kernel would have been started with; what it wrote to standard error goes
        into this run's kernels.log."""
        self._left_logs.append(stderr)
        self._log(f"the first step's kernel (pid {kernel.pid}) was started by the run before in this "
                  "process, for this one")
        timings_file = _timings_file(run_id, 1)
        env = {**os.environ, **self.env, timing.ENV: str(timings_file),
               intents.ENV_RUNNER_PID: str(os.getpid())}
        return retarget(kernel, env, timings_file, timeout=self.start_timeout)

    def _declared(self, path: Path) -> set[str]:
        import papermill as pm

        key = str(path)
        if key not in _DECLARED:
            _DECLARED[key] = set(pm.inspect_notebook(key))
        return _DECLARED[key]

    def _run_step(self, outcome: StepOutcome, known: dict[str, Any], writer: evidence.RecordWriter,
                  pool: KernelPool, recorder: ThreadPoolExecutor) -> bool:
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        from psbridge.runbook.engine import ENGINE_NAME

        step = outcome.step
        path = self.book.notebook_path(step)
        # Only what the notebook declares: a step sees the parameters it uses, nothing else.
        declared = self._declared(path)
        parameters: dict[str, Any] = {k: v for k, v in self.params.items() if k in self.book.parameters}
        parameters.update({f: known[f] for f in step.consumes if f in known and known[f] is not None})
        parameters[MODE_PARAMETER] = self.mode == "plan"
        parameters = {k: v for k, v in parameters.items() if k in declared}
        target = f"{_MemoryHandler.scheme}{id(self)}/{step.stem}.ipynb"
        outcome.started = dt.datetime.now(dt.UTC)
        self._log(f"step {step.id} ({step.notebook}) started")
        if self.progress:
            self.progress("start", outcome)
        t0 = time.perf_counter()
        kernel = None
        executed = None

        def underway() -> None:  # the step's cells run: the runner's background work goes on
            pool.start_next()
            self._step_underway.set()

        try:
            kernel = pool.take(start_next=False)
            outcome.timings["kernel_wait"] = round(time.perf_counter() - t0, 3)
            outcome.timings["kernel_warm"] = round(kernel.warm_seconds, 3)
            executed = pm.execute_notebook(
                str(path), target, parameters=parameters, engine_name=ENGINE_NAME, kernel=kernel,
                kernel_name=KERNEL_NAME, progress_bar=False, log_output=False,
                start_timeout=self.start_timeout, execution_timeout=self.cell_timeout,
                cwd=str(self.book.notebook_dir), on_first_cell=underway,
            )
        except PapermillExecutionError as e:
            outcome.error = redact(f"{e.ename}: {e.evalue}".strip())
        except KeyboardInterrupt:
            # Stopped by the operator: the record still says what ran, then the interrupt goes on.
            outcome.error = "stopped by Ctrl-C"
            self._interrupted = True
        except Exception as e:  # the kernel died, would not start, or a cell timed out
            outcome.error = redact(f"{type(e).__name__}: {e}")
        finally:
            underway()  # also when the step ended before its first cell
            if kernel is not None:
                pool.discard(kernel)  # never reused: the next step has a kernel of its own
        outcome.timings["papermill_total"] = round(time.perf_counter() - t0, 3)
        if kernel is not None and kernel.timings_file is not None:
            written = timing.records(str(kernel.timings_file))  # the file read once
            calls = timing.read(str(kernel.timings_file), written)
            # Remote: the organization's servers, over WinRM/PSRP and the CRM Web API (waiting for
            # its asynchronous Test & Enable included: the step cannot end before the server does).
            web = sum(calls.get(k, 0.0) for k in ("webapi", "webapi_signin", "webapi_wait"))
            outcome.timings["webapi"] = round(web, 3)
            winrm = sum(calls.get(k, 0.0) for k in ("winrm", "winrm_open", "winrm_close"))
            outcome.timings["remote"] = round(winrm + web, 3)
            # Cloud: Entra ID (the tenant's OpenID discovery, sign-in) and Microsoft Graph.
            cloud = sum(calls.get(k, 0.0) for k in ("graph", "signin", "discovery"))
            outcome.timings["cloud"] = round(cloud, 3)
            # The longest Retry-After Graph gave this step, and when: the record says why it waited.
            told = timing.lines(str(kernel.timings_file), throttles.KIND, written)
            if told:
                longest = max(told, key=lambda t: float(t["seconds"]))
                outcome.timings["graph_retry_after"] = float(longest["seconds"])
                outcome.timings["graph_retry_after_at"] = float(longest["at"])
            kernel.timings_file.unlink(missing_ok=True)
        outcome.ended = dt.datetime.now(dt.UTC)
        text = _memory.pop(target)
        # papermill validated the notebook as it wrote it: what it returned is what it wrote (less
        # what writing strips); a step that raised left only the text (papermill wrote it first).
        nb = strip_transient(executed) if executed is not None else nbjson.reads(text) if text else None
        if nb is not None:
            outcome.timings.update(_cell_timings(nb))
            # A secret this step created (client secret, PFX password) is known now.
            # Facts come from the notebook as executed: record() already refused secret values.
            recorded = factmod.read_facts(nb)
            self._remember_secrets(recorded)
            self._remember_secrets(self.params)
            self._keep |= self._references(recorded)
            problems = self._check_facts(step, recorded)
            keep = set(self.book.facts) | {factmod.CHANGES}
            outcome.facts = {k: v for k, v in recorded.items() if k in keep}
            if problems and outcome.error is None:
                outcome.error = "; ".join(problems)
        elif outcome.error is None:
            outcome.error = "papermill returned no executed notebook"
        outcome.status = (INTERRUPTED if self._interrupted else FAILED) if outcome.error else SUCCEEDED
        self._step_underway.clear()  # until the next step's cells run (or the run ends)
        if nb is not None:
            # Written while the next step runs; its page says which run, step and outcome it is.
            heading = f"{step.stem} — {step.title or step.id}"
            self._record_jobs.append(self._record_soon(recorder,
                writer.write_notebook, step.stem, nb, html=self.html, keep=frozenset(self._keep),
                title=f"{heading} — {self.customer}/{self.org} — {outcome.status}",
                header=self._page_header(outcome), heading=heading,
                nav=self._page_nav(outcome), status=outcome.status))
        said = outcome.summary(self.mode == "plan")
        self._log(f"step {step.id} {outcome.status} in {outcome.duration} s: {said}")
        if self.progress:
            self.progress("end", outcome)
        return outcome.status == SUCCEEDED

    def _record_soon(self, recorder: ThreadPoolExecutor, fn: Callable[..., Any], *args: Any,
                     **kwargs: Any) -> Future[Any]:
        """``fn(*args, **kwargs)`` in the recorder's thread, once the next step's cells run or the run
        ends (at most a second later: a record is never held back long)."""
        def job() -> Any:
            self._step_underway.wait(RECORD_HOLD)
            return fn(*args, **kwargs)

        return recorder.submit(job)

    def _page_header(self, outcome: StepOutcome) -> dict[str, str]:
        from psbridge import runpage

        return runpage.step_header(self._head_now, outcome.as_dict())

    def _page_nav(self, outcome: StepOutcome) -> list[Any]:
        """The run page, and the steps of this run before and after (after: only when it goes on)."""
        from psbridge import runpage

        head = self._head_now
        ran = self.book.steps[self.book.index(head["range"]["from"]):self.book.index(head["range"]["to"]) + 1]
        i = ran.index(outcome.step)
        shown = [{"id": s.id, "notebook": s.notebook, "status": "ran"} for s in ran[:i + 1]]
        if outcome.status == SUCCEEDED and i + 1 < len(ran):
            shown.append({"id": ran[i + 1].id, "notebook": ran[i + 1].notebook, "status": "ran"})
        return runpage.step_nav({**head, "steps": shown}, outcome.step.id)

    def _check_facts(self, step: StepSpec, recorded: dict[str, Any]) -> list[str]:
        problems = []
        for name in step.produces:
            if self.mode == "apply" and name not in recorded:
                problems.append(f"the step did not record the fact {name!r}")
        for name, value in recorded.items():
            spec = self.book.facts.get(name)
            if spec is None:
                continue
            # Secret values were refused by record() in the kernel, which knows what it revealed;
            # this process's own list of values is no judge of a fact (the record is scrubbed).
            if spec.type == "secret" and value is not None and not _is_ref(value):
                problems.append(f"the fact {name!r} must be a secret reference")
            elif value is not None and not _type_ok(spec.type, value):
                problems.append(f"the fact {name!r} should be {spec.type}, got {type(value).__name__}")
        return problems


def _timings_file(run_id: str, number: int) -> Path:
    from psbridge.runbook.kernel import _ipc_dir

    return _ipc_dir() / f"timings-{run_id}-{number}.jsonl"


def _is_ref(value: Any) -> bool:
    try:
        SecretRef.parse(value)
    except SecretError:
        return False
    return True


def _type_ok(kind: str, value: Any) -> bool:
    return {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
        "secret": lambda v: isinstance(v, str),
    }[kind](value)


def _cell_timings(nb: Any) -> dict[str, float]:
    """Kernel start and time in cells, from papermill's own per-cell metadata."""
    meta = nb.get("metadata", {}).get("papermill", {})
    cells = [c.get("metadata", {}).get("papermill", {}) for c in nb.get("cells", [])]
    in_cells = sum(float(c.get("duration") or 0) for c in cells)
    out = {"cells": round(in_cells, 3)}
    start = meta.get("start_time")
    first = next((c.get("start_time") for c in cells if c.get("start_time")), None)
    if start and first:
        out["kernel_start"] = round((dt.datetime.fromisoformat(first) - dt.datetime.fromisoformat(start))
                                    .total_seconds(), 3)
    return out


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container or service
        return "unknown"
