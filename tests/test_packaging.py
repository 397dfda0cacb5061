"""pyproject.toml, environment.yml and requirements/lock.txt must agree: the same dependencies,
and a lock that pins every one of them (and what they need) within the declared bounds."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name_and_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return canonicalize_name(m.group(1)), m.group(2).replace(" ", "")


def _extra_packages(req: Requirement) -> dict[str, str]:
    """What ``name[extra]`` adds, from the installed distribution's metadata."""
    added = {}
    for line in metadata.requires(req.name) or []:
        dep = Requirement(line)
        if dep.marker and any(dep.marker.evaluate({"extra": e}) for e in req.extras):
            added[canonicalize_name(dep.name)] = str(dep.specifier).replace(" ", "")
    return added


def _declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    return reqs


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+!\-]+)", line)
        assert m, f"not an exact pin: {line!r}"
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_environment_yml_matches_pyproject() -> None:
    wanted: dict[str, str] = {}
    for req in _declared(("jupyter",)):
        wanted[canonicalize_name(req.name)] = str(req.specifier).replace(" ", "")
        wanted.update(_extra_packages(req))  # conda has no extras: it lists their packages
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    named = [d for d in env["dependencies"] if isinstance(d, str)]
    conda = dict(_name_and_spec(d) for d in named if not d.startswith(("python", "pip")))
    def ordered(specs: dict[str, str]) -> dict[str, str]:
        return {k: ",".join(sorted(v.split(","))) for k, v in specs.items()}

    assert ordered(conda) == ordered(wanted), "environment.yml and pyproject.toml disagree"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace("python", "") == PROJECT["requires-python"]


def test_lock_pins_every_declared_dependency_within_its_bounds() -> None:
    pins = _lock()
    for req in _declared(("test", "jupyter")):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not in requirements/lock.txt: refresh the lock"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"lock pins {req.name}=={pins[name]} outside {req.specifier}"
        for extra_name in _extra_packages(req):
            assert extra_name in pins, f"{extra_name} (for {req}) is not in the lock"


def test_lock_names_no_index_or_host() -> None:
    text = LOCK.read_text()
    for option in ("--index-url", "--extra-index-url", "--find-links", "--trusted-host", "-i ", "-f "):
        assert option not in text.replace("--no-emit-", ""), option
    assert "://" not in text and "@ file:" not in text


def test_this_environment_was_installed_from_the_lock() -> None:
    """What scripts/setup.sh installed is what the lock pins (CI tests exactly that set)."""
    pins = _lock()
    off = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            off[name] = f"{dist.version} installed, {pins[name]} locked"
    assert not off, off
