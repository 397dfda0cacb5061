"""What a partner watches while a batch runs: orgs × steps, counts, an ETA, failures as they happen.

Fed by the workers' Dask events (:data:`psbridge.batch.work.TOPIC`), on the client's thread.
On a terminal it is a live rich view; elsewhere (a log, CI) one line per org as it ends.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from psbridge.batch.work import BLOCKED, COMPLETE, FAILED, INTERRUPTED, PLANNED, SKIPPED
from psbridge.runbook.console import escape

_COLOURS = {COMPLETE: "green", SKIPPED: "green", PLANNED: "cyan", FAILED: "red", BLOCKED: "yellow",
            INTERRUPTED: "yellow"}


class BatchProgress:
    def __init__(self, console: Console, orgs: list[str], steps: list[str]) -> None:
        self.console = console
        self.orgs, self.steps = orgs, steps
        self.started = time.monotonic()
        self.running: dict[str, str] = {}  # org -> the step it is in
        self.ended: dict[str, str] = {}  # org -> status
        self.step_done = dict.fromkeys(steps, 0)
        self.step_failed = dict.fromkeys(steps, 0)
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> BatchProgress:
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._take(event)
        if self._live is not None:
            self._live.update(self._render())

    def _take(self, e: dict[str, Any]) -> None:
        org, kind = str(e.get("org", "")), e.get("event")
        if kind == "step-start":
            self.running[org] = str(e.get("step"))
        elif kind == "lock-wait":
            self.running[org] = f"{e.get('step')} (waiting for {e.get('lock')})"
        elif kind == "step-end":
            step = str(e.get("step"))
            if e.get("status") == "succeeded" and step in self.step_done:
                self.step_done[step] += 1
            elif step in self.step_failed:
                self.step_failed[step] += 1
        elif kind == "org-end":
            self.running.pop(org, None)
            status = str(e.get("status"))
            self.ended[org] = status
            if status in (FAILED, BLOCKED, INTERRUPTED):
                why = f"{org}: {status}" + (f" at {e.get('failed_step')}" if e.get("failed_step") else "") \
                    + (f" — {e.get('reason')}" if e.get("reason") else "")
                self.failures.append(why)
            if self._live is None:
                colour = _COLOURS.get(status, "white")
                said = escape(str(e.get("action") or ""))
                if e.get("reason"):
                    said += f" — {escape(str(e.get('reason')))}"
                self.console.print(f"[{colour}]{escape(status)}[/] {escape(org)}: {said}", soft_wrap=True)

    def eta(self) -> float | None:
        done = len(self.ended)
        if not done:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / done * (len(self.orgs) - done)

    def _render(self) -> Group:
        counts: dict[str, int] = {}
        for status in self.ended.values():
            counts[status] = counts.get(status, 0) + 1
        pending = len(self.orgs) - len(self.ended) - len(self.running)
        eta = self.eta()
        clock = f"elapsed {time.monotonic() - self.started:.0f} s" + (f"  ETA {eta:.0f} s" if eta else "")
        head = Text.assemble(
            (f"{len(self.ended)}/{len(self.orgs)} orgs", "bold"),
            f"  running {len(self.running)}  waiting {max(pending, 0)}  ",
            *[(f"{k} {v}  ", _COLOURS.get(k, "white")) for k, v in sorted(counts.items())],
            clock)
        steps = Table(box=None, show_header=True, pad_edge=False)
        for s in self.steps:
            steps.add_column(s, justify="right")
        steps.add_row(*[f"[green]{self.step_done[s]}[/]" + (f" [red]{self.step_failed[s]}✗[/]"
                                                             if self.step_failed[s] else "")
                        for s in self.steps])
        parts: list[Any] = [head, steps]
        for org, step in list(self.running.items())[:8]:
            parts.append(Text(f"  ▶ {org}: {step}"))
        for why in self.failures[-6:]:
            parts.append(Text(f"  ✗ {why}", style="red"))
        return Group(*parts)
