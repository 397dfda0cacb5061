"""pypsrp clients built in many threads at once (a batch opens sessions in parallel).

pypsrp's WSMan.__init__ re-registers its prefixes in ElementTree's process-wide namespace map,
and two threads doing that at once can fail ("dictionary keys changed during iteration").
``new_wsman`` builds every client under one lock; this test makes each registration slow
enough that two constructions would overlap without it.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest

from psbridge.remote.session import new_wsman


def test_constructions_never_overlap_in_the_namespace_map(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ET.register_namespace
    lock = threading.Lock()
    active = 0
    most = 0

    def slow(prefix: str, uri: str) -> None:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.001)  # a thread switch in the middle of the map's update
        real(prefix, uri)
        with lock:
            active -= 1

    monkeypatch.setattr(ET, "register_namespace", slow)
    with ThreadPoolExecutor(max_workers=8) as ex:
        built = list(ex.map(lambda _: new_wsman("127.0.0.1", username="u", password="p", auth="ntlm",
                                                ssl=False), range(16)))
    assert len(built) == 16
    assert most == 1
