"""The lab ``psbridge demo`` runs against: the embedded lab, started in this process for the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start(state_dir: Path, servers: int = 2, orgs: int = 2) -> Any:
    """A started :class:`psbridge.lab.orchestrator.Lab` (``stop()`` when done)."""
    from psbridge.lab.orchestrator import Lab

    return Lab(state_dir, servers=servers, orgs=orgs).start()
