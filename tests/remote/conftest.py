"""A session on the lab's first server, shared by the bridge's wire tests of one module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from psbridge.remote import ConnectionProfile, Session


@pytest.fixture(scope="module")
def profile(lab: Any) -> ConnectionProfile:
    return ConnectionProfile.from_lab(lab.config, server="CRM01", scheme="http")


@pytest.fixture(scope="module")
def session(profile: ConnectionProfile) -> Iterator[Session]:
    with Session(profile) as s:
        yield s


# The CRM tests' helpers (PFX files, hostile text) serve the bridge's tests too.
sys.path.insert(0, str(Path(__file__).parents[1] / "crm"))
