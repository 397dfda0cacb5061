"""psbridge as users get it: a wheel installed (not editable) into a fresh virtualenv, used from a
folder that has nothing to do with this checkout.

The wheel must carry its runbooks and notebooks: ``psbridge runbooks`` finds them inside the
installed package, ``psbridge plan`` runs against a lab ``psbridge lab up`` started, and
``psbridge demo`` reaches a verified record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: float = 600,
         **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PSBRIDGE_", "VIRTUAL_ENV", "PYTHON"))}
    clean.update({"COLUMNS": "200", "PYTHONIOENCODING": "utf-8", **env})
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean,
                          check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"),
                  str(ROOT)], cwd=root)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next((root / "dist").glob("psbridge-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "psbridge/runbooks/exchange-online-s2s/runbook.yaml" in names
    assert "psbridge/runbooks/exchange-online-s2s/10-certificate.ipynb" in names
    assert "psbridge/runbooks/exchange-online-s2s/10-certificate.py" in names
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    lock = ROOT / "requirements" / "lock.txt"
    constraints = ["-c", str(lock)] if lock.is_file() else []
    pip = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                *constraints, str(wheel)], cwd=root, timeout=900)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return bin_dir


def test_the_installed_wheel_lists_its_runbooks_from_anywhere(installed: Path, tmp_path: Path) -> None:
    said = _run([str(installed / "psbridge"), "runbooks"], cwd=tmp_path)
    assert said.returncode == 0, said.stdout + said.stderr
    flat = " ".join(said.stdout.split())
    assert "exchange-online-s2s" in flat and "site-packages" in flat and str(ROOT) not in flat


def test_the_installed_wheel_plans_and_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    state = tmp_path / "lab"
    up = _run([str(installed / "psbridge"), "lab", "up", "--state", str(state)], cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        params = tmp_path / "contoso.yaml"
        params.write_text(yaml.safe_dump({
            "customer": "wheel", "organization": "contoso", "lab": str(state),
            "pfx_password": "lab:wheel/contoso/pfx-password",
            "client_secret": "lab:wheel/contoso/client-secret",
        }), encoding="utf-8")
        records = str(tmp_path / "records")
        plan = _run([str(installed / "psbridge"), "plan", str(params), "--records", records],
                    cwd=tmp_path, PSBRIDGE_LAB_STATE=str(state),
                    PSBRIDGE_TOKEN_CACHE=str(tmp_path / "msal"))
        assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr[-4000:]
        assert "would" in plan.stdout
    finally:
        _run([str(installed / "psbridge"), "lab", "down", "--state", str(state)], cwd=tmp_path)
    demo = _run([str(installed / "psbridge"), "demo", "--state", str(tmp_path / "demo-lab"),
                 "--records", str(tmp_path / "demo-records")], cwd=tmp_path,
                PSBRIDGE_TOKEN_CACHE=str(tmp_path / "demo-msal"))
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "Verified" in demo.stdout
