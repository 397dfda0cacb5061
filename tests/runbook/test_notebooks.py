"""The stored notebooks: no outputs, a parameters cell papermill understands, in step with the runbook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from psbridge.runbook import definition
from psbridge.runbook.definition import MODE_PARAMETER

ROOT = Path(__file__).resolve().parents[2]
BOOK = definition.load(ROOT / "runbooks" / "exchange-online-s2s.yaml")
STEPS = {s.notebook: s for s in BOOK.steps}


def test_notebooks_are_what_the_generator_writes() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "notebooks" / "_generate.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(STEPS))
def test_stored_without_outputs_with_a_parameters_cell(name: str) -> None:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert nb.cells[0].cell_type == "markdown"
    text = nb.cells[0].source
    for part in ("**Purpose.**", "**What changes where.**", "**Roll back.**"):
        assert part in text, f"{name} explains {part}"


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_parameter_is_described_and_matches_the_definition(name: str) -> None:
    step = STEPS[name]
    declared = pm.inspect_notebook(str(ROOT / "notebooks" / name))
    assert MODE_PARAMETER in declared
    for p in declared.values():
        assert p["help"], f"{name}: {p['name']} has no help for papermill --help-notebook"
        assert p["name"] in BOOK.parameters or p["name"] in BOOK.facts or p["name"] == MODE_PARAMETER
    for fact in step.consumes:
        assert fact in declared, f"{name} consumes {fact} but has no such parameter"
    for name_, spec in BOOK.parameters.items():
        if name_ in declared and spec.default not in (None, "") and spec.type != "secret":
            # The notebook's lab default and the definition's default agree where both exist.
            shown = declared[name_]["default"].strip("r").strip('"')
            assert shown == str(spec.default) or spec.type == "list", (name_, shown)


def test_help_notebook_lists_every_parameter() -> None:
    done = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook",
                           str(ROOT / "notebooks" / "20-install-certificate.ipynb")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("pfx_password", "thumbprint", "async_servers", "plan", "lab", "servers"):
        assert f"  {name}:" in done.stdout
