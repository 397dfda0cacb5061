"""The runner's mechanics on a small runbook of three notebooks: facts forward, failure, resume.

These notebooks are made here (the real steps are tested against the lab in test_runbook_lab.py);
they run in real kernels through papermill, as the real ones do.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from psbridge import evidence
from psbridge.runbook import definition
from psbridge.runbook.params import ParamsError, validate
from psbridge.runbook.runner import RunError, Runner


def _notebook(path: Path, params: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# step"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> definition.Runbook:
    root = tmp_path_factory.mktemp("book")
    (root / "nb").mkdir()
    _notebook(root / "nb" / "10-make.ipynb", 'org: str = ""\nplan: bool = False\nstart: int = 1',
              "from psbridge.runbook import record, record_changes\n"
              "record('number', start * 10)\nrecord_changes([] if plan else [f'made {org}'])")
    _notebook(root / "nb" / "20-use.ipynb", 'number: int = 0\nfail_at: str = ""\nplan: bool = False\n'
              'token: str = ""',
              "from psbridge.runbook import record\nfrom psbridge.secrets import resolve\n"
              "if fail_at == 'use': raise RuntimeError('wrong PFX password for ' + resolve(token).reveal())\n"
              "record('doubled', number * 2)")
    _notebook(root / "nb" / "30-end.ipynb", "doubled: int = 0\nplan: bool = False",
              "import sys\nfrom psbridge.runbook import record\nrecord('final', doubled + 1)\n"
              "record('python', sys.executable)")
    spec = {
        "name": "tiny", "notebooks": "nb",
        "parameters": {
            "customer": {"type": "str", "required": True},
            "org": {"type": "str", "required": True},
            "start": {"type": "int", "default": 1, "min": 0},
            "fail_at": {"type": "str", "default": ""},
            "token": {"type": "secret", "default": "env:TINY_TOKEN"},
        },
        "facts": {"number": {"type": "int"}, "doubled": {"type": "int"}, "final": {"type": "int"},
                  "python": {"type": "str"}},
        "steps": [
            {"id": "make", "notebook": "10-make.ipynb", "produces": ["number"]},
            {"id": "use", "notebook": "20-use.ipynb", "consumes": ["number"], "produces": ["doubled"]},
            {"id": "end", "notebook": "30-end.ipynb", "consumes": ["doubled"],
             "produces": ["final", "python"]},
        ],
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return definition.load(root / "tiny.yaml")


def test_facts_flow_forward_and_record_verifies(book: definition.Runbook, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # As from a shell where nothing is activated: the kernel is still this interpreter.
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    params = validate(book, {"customer": "c", "org": "o", "start": 2})
    result = Runner(book, params, records_root=tmp_path).run()
    assert result.ok, result.table()
    assert result.facts == {"number": 20, "doubled": 40, "final": 41, "python": sys.executable}
    assert result.steps[0].summary() == "made o"
    assert evidence.verify(result.record_dir) == []
    manifest = evidence.read_manifest(result.record_dir)
    assert manifest["runbook"]["sha256"] == book.sha256 and manifest["status"] == "complete"
    assert [s["status"] for s in manifest["steps"]] == ["succeeded"] * 3


def test_failure_stops_names_step_and_resume_carries_facts(book: definition.Runbook, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_TOKEN", "canary-tiny-token-9")
    failing = validate(book, {"customer": "c", "org": "o", "fail_at": "use"})
    result = Runner(book, failing, records_root=tmp_path).run()
    assert not result.ok and result.failed_step is not None and result.failed_step.step.id == "use"
    assert "wrong PFX password" in (result.failed_step.error or "")
    assert [s.status for s in result.steps] == ["succeeded", "failed", "not run"]
    assert evidence.verify(result.record_dir) == []
    # The exception text carried the secret; it is masked everywhere in the record.
    for p in result.record_dir.iterdir():
        assert "canary-tiny-token-9" not in p.read_text(encoding="utf-8")
    assert evidence.read_manifest(result.record_dir)["failure"].startswith("step use failed: RuntimeError")

    # A resume that fails again keeps the carried facts in its own record.
    again = Runner(book, failing, records_root=tmp_path).run(start="use")
    assert [s.status for s in again.steps] == ["carried", "failed", "not run"]
    assert evidence.read_manifest(again.record_dir)["steps"][0]["facts"] == {"number": 10}

    fixed = validate(book, {"customer": "c", "org": "o"})
    resumed = Runner(book, fixed, records_root=tmp_path).run(start="use")
    assert resumed.ok
    assert [s.status for s in resumed.steps] == ["carried", "succeeded", "succeeded"]
    assert resumed.steps[0].carried_from == result.run_id  # where the facts were made
    assert resumed.facts["final"] == 21
    only = Runner(book, fixed, records_root=tmp_path).run(only="end")
    assert [s.status for s in only.steps] == ["carried", "carried", "succeeded"]


def test_run_to_a_step_then_from_the_next(book: definition.Runbook, tmp_path: Path) -> None:
    params = validate(book, {"customer": "c", "org": "o", "start": 3})
    part = Runner(book, params, records_root=tmp_path).run(until="use")
    assert part.ok and [s.status for s in part.steps] == ["succeeded", "succeeded", "not run"]
    assert evidence.read_manifest(part.record_dir)["range"] == {"from": "make", "to": "use"}
    rest = Runner(book, params, records_root=tmp_path).run(start="end")
    assert [s.status for s in rest.steps] == ["carried", "carried", "succeeded"] and rest.facts["final"] == 61
    with pytest.raises(RunError, match="step make comes before end"):
        Runner(book, params, records_root=tmp_path).run(start="end", until="make")


def test_resume_without_earlier_record_is_refused(book: definition.Runbook, tmp_path: Path) -> None:
    params = validate(book, {"customer": "c", "org": "new"})
    with pytest.raises(RunError, match="holds number"):
        Runner(book, params, records_root=tmp_path).run(start="use")


def test_parameter_file_problems_are_listed_at_once(book: definition.Runbook) -> None:
    with pytest.raises(ParamsError) as e:
        validate(book, {"customer": "c", "strat": 3, "start": -1, "token": "hunter2-the-password",
                        "plan": True})
    problems = e.value.problems
    assert len(problems) == 5, problems
    text = json.dumps(problems)
    assert "did you mean start" in text and "org: required" in text and "below the minimum" in text
    assert "hunter2-the-password" not in text


def test_definition_checks_itself(tmp_path: Path) -> None:
    (tmp_path / "a.ipynb").write_text("{}", encoding="utf-8")
    bad = {"name": "bad", "notebooks": ".", "parameters": {},
           "facts": {"x": {"type": "str"}},
           "steps": [{"id": "a", "notebook": "a.ipynb", "consumes": ["x"]},
                     {"id": "a", "notebook": "a.ipynb", "produces": ["x"]}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(definition.DefinitionError) as e:
        definition.load(tmp_path / "bad.yaml")
    assert "used twice" in str(e.value) and "before any step produces it" in str(e.value)
