"""The runbook as one source: runbook.yaml, its step modules, its notebooks (.py source and .ipynb twin).

- every stored notebook is the twin of its percent-format source, without outputs, and its
  parameters cell is what runbook.yaml says (``psbridge notebooks check``);
- papermill reads every parameter of every cell, with help;
- the JSON Schema ``psbridge schema`` prints describes every parameter and validates the example;
- each step has a scope, and the runbook is found by name (package data) and by folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml
from typer.testing import CliRunner

from psbridge.cli import app
from psbridge.runbook import definition, notebooks, registry, schema
from psbridge.runbook.definition import MODE_PARAMETER, Scope
from psbridge.runbook.params import ParamsError, validate

ROOT = Path(__file__).resolve().parents[2]
BOOK = registry.load("exchange-online-s2s")
STEPS = {s.notebook: s for s in BOOK.steps}


def test_notebooks_are_in_step_with_runbook_yaml_and_their_sources() -> None:
    assert notebooks.check(BOOK) == []
    said = CliRunner().invoke(app, ["notebooks", "check"])
    assert said.exit_code == 0, said.output


def test_a_drifted_parameters_cell_or_an_edited_twin_is_caught(tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    shutil.copytree(BOOK.notebook_dir, folder, ignore=shutil.ignore_patterns("__pycache__"))
    book = definition.load(folder / "runbook.yaml")
    src = folder / "50-tenant-id.py"
    text = src.read_text(encoding="utf-8")
    drifted = text.replace('organization: str = "contoso"', 'organization: str = "fabrikam"')
    src.write_text(drifted, encoding="utf-8")
    nb = folder / "90-summary.ipynb"
    nb.write_text(nb.read_text(encoding="utf-8").replace("## Final state", "## Final"), encoding="utf-8")
    found = notebooks.check(book)
    assert any(p.startswith("tenant-id: 50-tenant-id.py differs") for p in found), found
    assert any(p.startswith("summary: 90-summary.ipynb is not the twin") for p in found), found
    # sync writes the YAML's cell into the source and the source into the twin (the .py wins).
    notebooks.sync(book)
    assert notebooks.check(book) == []
    assert 'organization: str = "contoso"' in src.read_text(encoding="utf-8")
    assert "## Final state" in nb.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(STEPS))
def test_stored_without_outputs_with_one_parameters_cell_and_an_explanation(name: str) -> None:
    nb = nbformat.read(BOOK.notebook_dir / name, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].source == schema.parameters_cell(BOOK, STEPS[name])
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    text = nb.cells[0].source
    for part in ("**Purpose.**", "**What changes where.**", "**Roll back.**"):
        assert part in text, f"{name} explains {part}"


@pytest.mark.parametrize("name", sorted(STEPS))
def test_papermill_reads_every_parameter_with_help(name: str) -> None:
    step = STEPS[name]
    declared = pm.inspect_notebook(str(BOOK.notebook_dir / name))
    assert set(declared) == {*BOOK.step_parameters(step), *step.consumes, MODE_PARAMETER}
    for p in declared.values():
        assert p["help"], f"{name}: {p['name']} has no help for papermill --help-notebook"


def test_help_notebook_lists_every_parameter() -> None:
    done = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook",
                           str(BOOK.notebook_dir / "20-install-certificate.ipynb")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for name in ("pfx_password", "thumbprint", "async_servers", "plan", "lab", "servers"):
        assert f"  {name}:" in done.stdout


SETUP_SCOPES = {"preflight": Scope.DEPLOYMENT, "certificate": Scope.DEPLOYMENT,
                "install-certificate": Scope.DEPLOYMENT, "entra-app": Scope.TENANT,
                "configure-s2s": Scope.DEPLOYMENT, "tenant-id": Scope.ORGANIZATION,
                "summary": Scope.ORGANIZATION}


def test_every_step_has_a_scope_and_a_module() -> None:
    import importlib

    scopes = {s.id: s.scope for s in BOOK.steps}
    # The setup's own steps; each step a runbook adds declares its scope too.
    assert {k: v for k, v in scopes.items() if k in SETUP_SCOPES} == SETUP_SCOPES
    assert all(isinstance(v, Scope) for v in scopes.values())
    for step in BOOK.steps:
        source = notebooks.source_path(BOOK, step).read_text(encoding="utf-8")
        imported = [ln for ln in source.splitlines() if ln.startswith("from psbridge.runbook.steps import")]
        assert len(imported) == 1, step.id
        module = imported[0].split(" import ")[1].split(" as ")[0]
        importlib.import_module(f"psbridge.runbook.steps.{module}")


def test_json_schema_describes_the_parameters_and_takes_the_example() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    said = CliRunner().invoke(app, ["schema"])
    assert said.exit_code == 0
    doc = json.loads(said.output)
    props = doc["properties"]
    assert set(props) == set(BOOK.parameters)
    assert set(doc["required"]) == {n for n, s in BOOK.parameters.items() if s.required}
    assert props["winrm_scheme"]["enum"] == ["http", "https"]
    assert props["client_secret_days"]["maximum"] == 730
    assert props["pfx_password"]["x-psbridge-secret"] is True
    assert props["organization"]["x-psbridge-format"] == "organization"
    assert doc["additionalProperties"] is False
    example = yaml.safe_load((ROOT / "runbooks" / "examples" / "contoso.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(example, doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "winrm_scheme": "ftp"}, doc)


def test_the_model_is_the_validator() -> None:
    model = schema.parameters_model(BOOK)
    assert set(model.model_fields) == set(BOOK.parameters)
    with pytest.raises(ParamsError) as e:
        validate(BOOK, {"customer": "c", "organization": "o" * 40, "pfx_password": "hunter2",
                        "client_secret": "lab:x/y", "certificate_days": 0})
    said = e.value.problems
    assert any("at most 30 characters" in p for p in said)
    assert any("not a secret reference" in p for p in said)
    assert any("below the minimum 1" in p for p in said) and "hunter2" not in str(e.value)


def test_runbooks_are_found_by_name_and_by_folder(tmp_path: Path) -> None:
    said = CliRunner().invoke(app, ["runbooks"], env={"COLUMNS": "200"})
    assert said.exit_code == 0 and "exchange-online-s2s" in said.output and "psbridge" in said.output
    assert registry.source().path == BOOK.source
    copy = tmp_path / "my-runbook"
    shutil.copytree(BOOK.notebook_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert registry.load(copy).notebook_dir == copy.resolve()
    assert registry.load(copy / "runbook.yaml").name == BOOK.name
    with pytest.raises(definition.DefinitionError, match="no runbook 'nope'"):
        registry.load("nope")
