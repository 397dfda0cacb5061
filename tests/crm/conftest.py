"""Helpers for the CRM operations' wire tests: sessions on lab servers, PFX files, an Entra app."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from crmkit import HOSTILE, make_pfx

from psbridge.remote import ConnectionProfile, Session
from psbridge.secrets import store


@pytest.fixture
def open_sessions() -> Iterator[Callable[..., list[Session]]]:
    with ExitStack() as stack:

        def opener(lab: Any, *servers: str, account: str = "crmadmin") -> list[Session]:
            out = []
            for name in servers:
                profile = ConnectionProfile.from_lab(lab.config, server=name, scheme="http", account=account)
                out.append(stack.enter_context(Session(profile)))
            return out

        yield opener


@pytest.fixture
def pfx(tmp_path: Path) -> Callable[..., tuple[Path, str]]:
    """A PFX with a unique subject and a hostile password kept in the lab secret store."""

    def maker(subject: str | None = None, password: str = HOSTILE, **kw: Any) -> tuple[Path, str]:
        name = subject or f"crm-s2s-{uuid.uuid4().hex[:8]}.lab.local"
        path = make_pfx(tmp_path / f"{uuid.uuid4().hex[:6]}.pfx", password, subject=name, **kw)
        ref = f"lab:tests/pfx-{uuid.uuid4().hex[:8]}"
        store(ref, password)
        return path, ref

    return maker
