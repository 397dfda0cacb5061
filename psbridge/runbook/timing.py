"""Where a step's time goes, for the benchmark: remote PowerShell and Graph calls, timed in the kernel.

When ``PSBRIDGE_TIMINGS`` names a file, each timed call appends one JSON line to it
(``{"kind": "winrm", "seconds": 0.012}``); otherwise timing costs one environment lookup.
Only the kind and the duration are written: never a command, a parameter or a result.

Timed calls nest (a session's ``invoke`` opens the session, itself timed; a sign-in fetches the
tenant's discovery document): only the outermost call of a thread writes its seconds, so no second
is counted twice and the remote and cloud totals never exceed the time the cells took.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

ENV = "PSBRIDGE_TIMINGS"

_depth = threading.local()  # how many timed calls this thread is inside


def _write(kind: str, seconds: float, **extra: float) -> None:
    path = os.environ.get(ENV)
    if path:
        line = {"kind": kind, "seconds": round(seconds, 6), "pid": os.getpid(), **extra}
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def note(kind: str, seconds: float, **extra: float) -> None:
    """One line of ``kind`` that is not a timed call (a wait Graph asked for), with its own numbers."""
    _write(kind, seconds, **extra)


def timed(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not os.environ.get(ENV):
            return fn(*args, **kwargs)
        outer = getattr(_depth, "n", 0) == 0
        _depth.n = getattr(_depth, "n", 0) + 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _depth.n -= 1
            if outer:
                _write(kind, time.perf_counter() - t0)

    return wrapper


def instrument(obj: Any, method: str, kind: str) -> Any:
    """Time ``obj.method`` calls (an instance attribute shadows the class's method)."""
    setattr(obj, method, timed(kind, getattr(obj, method)))
    return obj


def records(path: str) -> list[dict[str, Any]]:
    """Every line of a timings file, as written (none if there is no file)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def lines(path: str, kind: str, written: list[dict[str, Any]] | None = None) -> list[dict[str, float]]:
    """The lines of one kind, as written (of ``written``: the file's :func:`records`, when the
    caller has read them already)."""
    return [rec for rec in (records(path) if written is None else written) if rec.get("kind") == kind]


def read(path: str, written: list[dict[str, Any]] | None = None) -> dict[str, float]:
    """Total seconds by kind from a timings file (or from its :func:`records`, ``written``)."""
    totals: dict[str, float] = {}
    for rec in records(path) if written is None else written:
        totals[rec["kind"]] = totals.get(rec["kind"], 0.0) + float(rec["seconds"])
    return totals
