"""Retry-After answers a step's Graph client honoured, told to whoever runs the step.

Graph throttles a tenant, not a client: when one org's step is told to wait, the other orgs of
that tenant in a batch should not start calling it meanwhile. The step runs in a kernel (another
process); the client's ``on_retry_after`` hook (wired by
:func:`psbridge.runbook.steps.common.graph_client`) appends one JSON line per answer —
``{"at": <epoch seconds>, "seconds": 5.0}`` — to the file :data:`ENV` names, which the batch's
worker reads while the step runs (:mod:`psbridge.batch.graphgate`), and to the step's timings file,
from which the runner puts the largest one in the step's record. Only when and how long: never a
request, a path or an answer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from psbridge.runbook import timing

ENV = "PSBRIDGE_GRAPH_THROTTLES"
KIND = "graph_retry_after"  # the kind of its lines in a step's timings file


@dataclass(frozen=True)
class Throttle:
    at: float  # when the answer came (seconds since the epoch, this machine's clock)
    seconds: float  # how long it asked to wait

    @property
    def until(self) -> float:
        return self.at + self.seconds


def report(seconds: float) -> None:
    """Tell the runner and the batch (when they listen) that Graph asked for ``seconds`` of quiet."""
    at = time.time()
    timing.note(KIND, seconds, at=at)
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": at, "seconds": seconds}) + "\n")


def read(path: Path, offset: int = 0) -> tuple[list[Throttle], int]:
    """The answers written to ``path`` from byte ``offset`` on, and the offset after the last whole line.

    A line the kernel is still writing (no newline yet) is left for the next read.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    whole = data[: data.rfind(b"\n") + 1]
    found = []
    for line in whole.splitlines():
        if line.strip():
            rec = json.loads(line)
            found.append(Throttle(float(rec["at"]), float(rec["seconds"])))
    return found, offset + len(whole)
