"""The seam between the product and the lab: the product imports nothing of the lab until asked.

A run against a customer's servers, ``psbridge --help``, the bridge used on its own: none of them
loads ``psbridge.lab``. The lab's secret store (``lab:`` references) is registered by the lab
itself, loaded the first time such a reference is met.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PRODUCT = [
    "psbridge.cli", "psbridge.secrets", "psbridge.evidence", "psbridge.intents", "psbridge.certs",
    "psbridge.remote", "psbridge.remote.session", "psbridge.crm", "psbridge.cloud",
    "psbridge.runbook", "psbridge.runbook.runner", "psbridge.runbook.registry", "psbridge.runbook.schema",
    "psbridge.runbook.deployment", "psbridge.runbook.cli_support", "psbridge.runbook.warm",
    "psbridge.runbook.engine",
]


def _modules_after(code: str) -> list[str]:
    listing = "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code + listing], capture_output=True, text=True, timeout=120,
                          check=True)
    return done.stdout.split()


def test_product_modules_import_nothing_of_the_lab() -> None:
    import pkgutil

    import psbridge.runbook.steps as steps

    wanted = [*PRODUCT, *(m.name for m in pkgutil.iter_modules(steps.__path__, steps.__name__ + "."))]
    loaded = _modules_after("\n".join(f"import {m}" for m in wanted))
    assert not [m for m in loaded if m.startswith("psbridge.lab")]


def test_the_lab_registers_its_own_secret_store_when_a_lab_reference_is_met(tmp_path: Path) -> None:
    code = (
        "import os\n"
        f"os.environ['PSBRIDGE_LAB_STATE'] = {str(tmp_path)!r}\n"
        "import sys\n"
        "from psbridge import secrets\n"
        "assert 'psbridge.lab.secretstore' not in sys.modules\n"
        "secrets.store('lab:seam/x', 'seam-value-1')\n"
        "assert secrets.resolve('lab:seam/x').reveal() == 'seam-value-1'\n"
    )
    loaded = _modules_after(code)
    assert "psbridge.lab.secretstore" in loaded and "psbridge.lab.orchestrator" not in loaded
    assert (tmp_path / "secrets.json").is_file()


def test_help_loads_no_lab_and_lab_help_lists_its_commands() -> None:
    from typer.testing import CliRunner

    from psbridge.cli import app

    said = CliRunner().invoke(app, ["lab", "--help"], env={"COLUMNS": "120"})
    assert said.exit_code == 0
    for command in ("up", "down", "status", "fault"):
        assert command in said.output
    loaded = _modules_after("from typer.testing import CliRunner\nfrom psbridge.cli import app\n"
                            "CliRunner().invoke(app, ['--help'])")
    assert not [m for m in loaded if m.startswith("psbridge.lab")]
