"""Runbooks added by another package through the ``psbridge.runbooks`` entry points (a real
distribution on ``sys.path``, read by importlib.metadata), beside psbridge's own."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from psbridge.runbook import registry

OWN = "exchange-online-s2s"


@pytest.fixture
def contoso_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution ``contoso-runbooks`` adding two runbooks: ``hardening`` (a copy of psbridge's
    default one) and one named like psbridge's own."""
    site = tmp_path / "site"
    package = site / "contoso_runbooks"
    for sub in ("hardening", "shadow"):
        shutil.copytree(registry.source(OWN).path.parent, package / sub,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")
    for sub in ("hardening", "shadow"):
        (package / sub / "__init__.py").write_text("")
    info = site / "contoso_runbooks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: contoso-runbooks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINTS}]\n"
        "contoso-hardening = contoso_runbooks.hardening\n"
        f"{OWN} = contoso_runbooks.shadow\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield package
    for name in [m for m in sys.modules if m.startswith("contoso_runbooks")]:
        del sys.modules[name]


def test_a_package_adds_a_runbook_by_name(contoso_package: Path) -> None:
    known = registry.available()
    assert known["contoso-hardening"].origin == "contoso-runbooks"
    assert known["contoso-hardening"].path == contoso_package / "hardening" / registry.RUNBOOK_FILE
    book = registry.load("contoso-hardening")
    assert book.notebook_dir == (contoso_package / "hardening").resolve()


def test_psbridge_own_runbook_wins_and_is_found_without_importing_packages(contoso_package: Path) -> None:
    assert registry.available()[OWN].origin == "psbridge"
    del sys.modules["contoso_runbooks.hardening"]  # available() imported the packages' modules
    found = registry.source(OWN)
    assert found.origin == "psbridge" and found.path.parent.parent.name == "runbooks"
    assert "contoso_runbooks.hardening" not in sys.modules
    assert registry.source("contoso-hardening").origin == "contoso-runbooks"
    assert "contoso_runbooks.hardening" in sys.modules


def test_a_runbook_loaded_twice_is_parsed_once_and_a_changed_file_again(tmp_path: Path) -> None:
    folder = tmp_path / "book"
    shutil.copytree(registry.source(OWN).path.parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    first = registry.load(folder)
    assert registry.load(folder) is first
    yaml = folder / registry.RUNBOOK_FILE
    yaml.write_text(yaml.read_text().replace("title:", "title: Changed —", 1))
    changed = registry.load(folder)
    assert changed is not first and changed.title.startswith("Changed —") and changed.sha256 != first.sha256
    (folder / changed.steps[0].notebook).unlink()
    with pytest.raises(registry.DefinitionError, match="notebooks not found"):
        registry.load(folder)  # a notebook gone since: said, though the YAML is the same
