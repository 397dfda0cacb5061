"""Fixtures for the cloud tests: the Entra/Graph twin on loopback, standalone, in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from psbridge.cloud import CloudSettings, GraphClient, SignIn, sign_in_device_code
from psbridge.lab.ca import LabCA
from psbridge.lab.entra import EntraTwin, start_twin


def settings_for(twin: EntraTwin) -> CloudSettings:
    return CloudSettings.from_lab(twin.describe())


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCA:
    return LabCA.load_or_create(tmp_path_factory.mktemp("cloud-ca"))


@pytest.fixture(scope="session")
def twin(tmp_path_factory: pytest.TempPathFactory, lab_ca: LabCA) -> Iterator[EntraTwin]:
    t = start_twin(tmp_path_factory.mktemp("entra"), lab_ca)
    yield t
    t.stop()


@pytest.fixture
def fresh_twin(tmp_path: Path, lab_ca: LabCA) -> Iterator[EntraTwin]:
    """An empty tenant of its own, for tests that need to see every change."""
    t = start_twin(tmp_path / "entra", lab_ca)
    yield t
    t.stop()


@pytest.fixture(autouse=True)
def _reset_twin_knobs(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "twin" in request.fixturenames:
        request.getfixturevalue("twin").reset_knobs()


@pytest.fixture
def settings(twin: EntraTwin) -> CloudSettings:
    return settings_for(twin)


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("msal-cache")


def _no_prompt(code: object) -> None:
    raise AssertionError("no device code expected here")


@pytest.fixture(scope="session")
def admin(twin: EntraTwin, token_cache: Path) -> SignIn:
    """The lab administrator, signed in once per session with a device code (auto-approved)."""
    settings = settings_for(twin)
    return sign_in_device_code(settings, twin.tenant_domain, on_code=lambda c: None, cache_dir=token_cache)


@pytest.fixture
def graph(twin: EntraTwin, admin: SignIn) -> GraphClient:
    return GraphClient(settings_for(twin), admin, sleep=lambda s: None)
