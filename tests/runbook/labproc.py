"""A lab serving from another process (``psbridge lab up``, as the README says) and ``psbridge``
commands run as a consultant runs them: in a process of their own, from a parameter file.

Used by the tests that kill runs (a killed runner must not take the lab with it) and by the canary
tests (the lab's own process writes its state, and that is searched too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

TIMEOUT = 300
PSBRIDGE = str(Path(sys.executable).with_name("psbridge"))


def clean_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PSBRIDGE_")}
    env.update({"PSBRIDGE_LAB_STATE": str(state), "PSBRIDGE_TOKEN_CACHE": str(state.parent / "msal"),
                "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"})
    env.update(extra)
    return env


def lab_up(state: Path, keys: Path | None = None, *args: str) -> None:
    if keys is not None:
        for key in keys.rglob("*.pem"):
            target = state / key.relative_to(keys)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(key, target)
    done = subprocess.run([sys.executable, "-m", "psbridge.lab", "up", "--state", str(state), *args],
                          capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(state), check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def fleet_up(state: Path, keys: Path, deployments: int, orgs: int) -> None:
    """``psbridge lab up --deployments D --orgs M`` at ``state``, each deployment with the session's
    pre-made lab keys (making RSA keys is most of a new lab's start)."""
    for dep in (f"dep{i:02d}" for i in range(1, deployments + 1)):
        for key in keys.rglob("*.pem"):
            target = state / dep / key.relative_to(keys)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(key, target)
    up = subprocess.run([PSBRIDGE, "lab", "up", "--state", str(state), "--deployments", str(deployments),
                         "--orgs", str(orgs)], capture_output=True, text=True, timeout=TIMEOUT,
                        env=clean_env(state), check=False)
    assert up.returncode == 0, up.stdout + up.stderr


def assert_each_change_once(state: Path, deployments: list[str], app_prefix: str = "psbridge") -> None:
    """The lab's world after a batch: one S2S certificate in every server's store, one setup app per
    tenant — whatever was interrupted, killed or resumed on the way."""
    for dep in deployments:
        world = read_world(state / dep)
        for server in world["servers"]:
            assert len([c for c in server["store"] if "psbridge" in c["subject"]]) == 1, server["store"]
        apps = [a for a in read_directory(state / dep)["applications"]
                if a["displayName"].startswith(app_prefix)]
        assert len(apps) == 1, apps


def lab_down(state: Path) -> None:
    subprocess.run([sys.executable, "-m", "psbridge.lab", "down", "--state", str(state)],
                   capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(state), check=False)


def params_file(path: Path, params: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def psbridge(state: Path, *args: str, timeout: float = TIMEOUT,
             **env: str) -> subprocess.CompletedProcess[bytes]:
    """``psbridge ARGS`` in a process of its own; output kept as bytes (searched for canaries)."""
    return subprocess.run([PSBRIDGE, *args], capture_output=True, timeout=timeout,
                          env=clean_env(state, **env), check=False)


def world(state: Path) -> dict[str, str]:
    """A fingerprint of everything the lab keeps on disk (servers, CRM, directory, secret store).

    A sign-in's refresh token is the one thing a read-only run leaves in the directory (and in AD
    FS's farm), as any sign-in does; it is not configuration, so it is left out.
    """
    out = {}
    for p in sorted(state.rglob("*")):
        if not p.is_file() or p.suffix in (".log", ".pid", ".tmp", ".lock") or p.name == "lab.json":
            continue
        data = p.read_bytes()
        if p.name in ("entra.json", "adfs.json"):
            directory = json.loads(data)
            directory.pop("refreshTokens", None)
            directory.pop("refresh_tokens", None)
            data = json.dumps(directory, sort_keys=True).encode()
        out[p.relative_to(state).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def read_world(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "world.json").read_text(encoding="utf-8"))
    return data


def read_directory(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(next(state.rglob("entra.json")).read_text(encoding="utf-8"))
    return data
