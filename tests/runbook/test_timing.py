"""The benchmark's remote and cloud seconds: a timed call inside another is not counted twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from psbridge.runbook import timing


class Session:
    def open(self) -> None:
        time.sleep(0.02)

    def invoke(self) -> None:
        self.open()  # as psbridge.remote.session.Session.invoke opens the session first
        time.sleep(0.02)


def test_a_nested_timed_call_is_counted_once_by_the_outermost(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv(timing.ENV, str(path))
    session = timing.instrument(timing.instrument(Session(), "invoke", "winrm"), "open", "winrm_open")
    t0 = time.perf_counter()
    session.invoke()
    wall = time.perf_counter() - t0
    session.open()  # on its own it is the outermost: counted as itself
    kinds = [line["kind"] for line in map(_line, path.read_text().splitlines())]
    assert kinds == ["winrm", "winrm_open"]
    totals = timing.read(str(path))
    assert 0.04 <= totals["winrm"] <= wall  # the open inside it, once
    # The file read once and given: the same totals and lines.
    written = timing.records(str(path))
    assert timing.read(str(path), written) == totals and len(written) == 2
    opened = timing.lines(str(path), "winrm_open", written)
    assert opened == timing.lines(str(path), "winrm_open") == [written[1]]
    assert timing.records(str(tmp_path / "none.jsonl")) == []
    assert 0.02 <= totals["winrm_open"] < 0.04


def test_threads_time_their_own_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv(timing.ENV, str(path))
    slow = timing.timed("graph", lambda: time.sleep(0.05))
    inner_started = threading.Event()

    def other() -> None:
        inner_started.set()
        timing.timed("webapi", lambda: time.sleep(0.01))()

    def outer() -> None:
        t = threading.Thread(target=other)
        t.start()
        t.join()

    timing.timed("graph", outer)()
    slow()
    assert inner_started.is_set()
    # The other thread's call is not inside this thread's: each is written.
    assert sorted(line["kind"] for line in map(_line, path.read_text().splitlines())) == \
        ["graph", "graph", "webapi"]


def _line(text: str) -> dict[str, object]:
    import json

    return dict(json.loads(text))
