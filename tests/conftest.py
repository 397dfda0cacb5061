"""Shared fixtures: the embedded lab, started in-process on free loopback ports.

- ``lab`` (session): 2 servers, 2 organizations, the Entra twin. Its faults and the twin's
  knobs are cleared after every test that used it.
- ``fresh_lab`` (function): the same shape in its own state directory, for tests that change
  the world.
- ``lab_factory(servers=, orgs=, legacy_servers=, cloud=, webapi=)`` (function): special shapes
  (``webapi="ad"`` for an Active Directory deployment's Web API; the default is an IFD with AD FS).

While a lab fixture is active, ``PSBRIDGE_LAB_STATE`` points at its state directory, so
``lab:`` secret references (the accounts' passwords, secrets tests store) resolve there.
Every lab copies the session's keys (lab CA, server certificates, twin signing key) instead
of generating RSA keys again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from psbridge.lab.ca import LabCA
from psbridge.lab.orchestrator import Lab

_KEY_SERVERS = 4  # server certificates made once for the session: crm01..crm04

# The lab's official scripts take as long as on a real server unless told otherwise; the suite
# runs them at once (tests of long-running scripts set their own pace). Lab processes the tests
# start inherit it.
os.environ.setdefault("PSBRIDGE_LAB_PACE", "0")


@pytest.fixture(autouse=True)
def _redactor_per_test() -> Iterator[None]:
    """Values a test revealed are forgotten by the redactor after it.

    ``psbridge.secrets.redact`` remembers every revealed value for the whole process; in one
    pytest process a password a test used ("pfx-pass") would otherwise be masked inside
    another test's unrelated text (a reference such as ``lab:demo/contoso/pfx-password``).
    """
    from psbridge import secrets

    with secrets._seen_lock:
        before = set(secrets._seen)
    yield
    with secrets._seen_lock:
        secrets._seen.intersection_update(before)


@pytest.fixture(scope="session")
def lab_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding only keys, copied into every lab the fixtures start."""
    from psbridge.lab.adfs.tokens import AdfsIssuer
    from psbridge.lab.entra.tokens import TokenIssuer

    root = tmp_path_factory.mktemp("lab-keys")
    ca = LabCA.load_or_create(root)
    for i in range(1, _KEY_SERVERS + 1):
        ca.server_certificate(f"crm{i:02d}")
    ca.server_certificate("entra")
    (root / "entra").mkdir()
    TokenIssuer.load_or_create(root / "entra", "https://127.0.0.1", "00000000-0000-0000-0000-000000000000")
    # The CRM Web API and AD FS twins' certificates and AD FS's signing key.
    ca.server_certificate("webapi")
    ca.server_certificate("adfs")
    AdfsIssuer.load_or_create(root / "adfs", "https://127.0.0.1")
    return root


def _seed_keys(keys: Path, state_dir: Path) -> None:
    for src in keys.rglob("*.pem"):
        dst = state_dir / src.relative_to(keys)
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


class _LabState:
    """Points PSBRIDGE_LAB_STATE at a lab while it is in use, then puts the old value back."""

    def __init__(self) -> None:
        self._before = os.environ.get("PSBRIDGE_LAB_STATE")

    def use(self, lab: Lab) -> None:
        os.environ["PSBRIDGE_LAB_STATE"] = str(lab.state_dir)

    def restore(self) -> None:
        if self._before is None:
            os.environ.pop("PSBRIDGE_LAB_STATE", None)
        else:
            os.environ["PSBRIDGE_LAB_STATE"] = self._before


def _started(keys: Path, state_dir: Path, **shape: Any) -> Lab:
    _seed_keys(keys, state_dir)
    return Lab(state_dir, **shape).start()


@pytest.fixture(scope="session")
def lab(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = _LabState()
    the_lab = _started(lab_keys, tmp_path_factory.mktemp("lab"), servers=2, orgs=2, cloud=True)
    env.use(the_lab)
    try:
        yield the_lab
    finally:
        the_lab.stop()
        env.restore()


@pytest.fixture(autouse=True)
def _lab_faults_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fault set by one test must not leak into the next one on the session lab."""
    yield
    if "lab" not in request.fixturenames:
        return
    the_lab: Lab = request.getfixturevalue("lab")
    if the_lab.running:
        the_lab.clear_faults()
        for twin in (the_lab.twin, the_lab.web, the_lab.adfs):
            if twin is not None:
                twin.reset_knobs()
    # A test may have pointed the lab secret store elsewhere (fresh_lab, lab_factory).
    os.environ["PSBRIDGE_LAB_STATE"] = str(the_lab.state_dir)


@pytest.fixture
def fresh_lab(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = _LabState()
    the_lab = _started(lab_keys, tmp_path_factory.mktemp("fresh-lab"), servers=2, orgs=2, cloud=True)
    env.use(the_lab)
    try:
        yield the_lab
    finally:
        the_lab.stop()
        env.restore()


@pytest.fixture
def lab_factory(lab_keys: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """``lab_factory(servers=1, orgs=1, legacy_servers=0, cloud=True)``: a started lab."""
    env = _LabState()
    made: list[Lab] = []

    def factory(servers: int = 2, orgs: int = 2, legacy_servers: int = 0, cloud: bool = True,
                webapi: str | None = None) -> Lab:
        the_lab = _started(lab_keys, tmp_path_factory.mktemp("lab-factory"), servers=servers, orgs=orgs,
                           legacy_servers=legacy_servers, cloud=cloud, webapi=webapi)
        made.append(the_lab)
        env.use(the_lab)
        return the_lab

    try:
        yield factory
    finally:
        for the_lab in made:
            the_lab.stop()
        env.restore()


def _readme_snippet(name: str) -> str:
    """The code block after ``<!-- readme-snippet: NAME -->`` in README.md, as printed there."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    marker = f"<!-- readme-snippet: {name} -->"
    assert text.count(marker) == 1, f"README.md has no single {marker}"
    block = text.split(marker, 1)[1].lstrip()
    assert block.startswith("```python\n"), f"{marker} is not followed by a python block"
    return block[len("```python\n"):].split("\n```", 1)[0] + "\n"


@pytest.fixture
def readme_snippet() -> Callable[[str], str]:
    return _readme_snippet
