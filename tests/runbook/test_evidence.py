"""Evidence: a record's manifest and verification catch every change."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from psbridge import evidence
from psbridge.secrets import MASK, remember


def _record(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("print('hello')"))
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="token canary-evidence-1\n")]
    remember(["canary-evidence-1"])
    w = evidence.RecordWriter.at(tmp_path / "rec")
    w.write_notebook("00-step", nb)
    w.write_text("run.log", "ran with canary-evidence-1\n")
    w.write_manifest({"run_id": "r1", "steps": []})
    return tmp_path / "rec"


def test_record_is_scrubbed_and_verifies(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    names = sorted(p.name for p in rec.iterdir())
    assert names == ["00-step.html", "00-step.ipynb", "manifest.json", "run.log"]
    for p in rec.iterdir():
        assert "canary-evidence-1" not in p.read_text(encoding="utf-8")
    assert MASK in (rec / "00-step.ipynb").read_text(encoding="utf-8")
    assert evidence.verify(rec) == []
    assert set(evidence.read_manifest(rec)["files"]) == {"00-step.html", "00-step.ipynb", "run.log"}


def test_a_secret_that_spans_lines_is_masked_in_the_notebook_and_its_page(tmp_path: Path) -> None:
    """Scrubbed as the notebook is held (one string a source or output), not line by line as the
    file stores it: a value with a line break in it (a PEM block, a pasted secret) is masked whole.
    The notebook given is left as it was."""
    value = "canary-two-lines-1\ncanary-two-lines-2"
    remember([value])
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(f"x = {value!r}"))
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"before\n{value}\nafter\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": value}, execution_count=1),
    ]
    w = evidence.RecordWriter.at(tmp_path / "rec")
    clean = w.write_notebook("00-step", nb)
    for name in ("00-step.ipynb", "00-step.html"):
        text = (tmp_path / "rec" / name).read_text(encoding="utf-8")
        assert "canary-two-lines" not in text, name
    assert clean.cells[0].outputs[0].text == f"before\n{MASK}\nafter\n"
    assert isinstance(clean, nbformat.NotebookNode) and isinstance(clean.cells[0], nbformat.NotebookNode)
    assert value in nb.cells[0].outputs[0].text  # the caller's notebook is not changed
    written = (tmp_path / "rec" / "00-step.ipynb").read_text(encoding="utf-8")
    nbformat.validate(nbformat.reads(written, as_version=4))


def test_one_changed_byte_is_caught(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    p = rec / "00-step.html"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    assert [str(d) for d in evidence.verify(rec)] == ["changed: 00-step.html"]


def test_manifest_edits_missing_and_extra_files_are_caught(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    m = rec / "manifest.json"
    m.write_text(m.read_text(encoding="utf-8").replace('"r1"', '"r2"'), encoding="utf-8")
    (rec / "run.log").unlink()
    (rec / "later.txt").write_text("added afterwards", encoding="utf-8")
    found = {str(d) for d in evidence.verify(rec)}
    assert found == {"manifest: manifest.json", "missing: run.log", "unrecorded: later.txt"}


def test_store_registry_by_scheme(tmp_path: Path) -> None:
    assert isinstance(evidence.store_for(tmp_path), evidence.LocalStore)
    assert isinstance(evidence.store_for(f"file://{tmp_path}"), evidence.LocalStore)
    assert isinstance(evidence.store_for("C:\\records\\x"), evidence.LocalStore)
    try:
        evidence.store_for("s3://bucket/records")
    except ValueError as e:
        assert "s3://" in str(e)
    else:
        raise AssertionError("an unknown scheme must be refused")


def test_a_reference_is_kept_whole_when_a_short_secret_is_part_of_its_name(tmp_path: Path) -> None:
    remember(["qzx7"])  # a short secret value that happens to be inside a reference's name
    w = evidence.RecordWriter.at(tmp_path / "rec")
    body = w.write_manifest({"parameters": {"pfx_password": "lab:x/pfx-qzx7", "note": "a qzx7"}},
                            keep=frozenset({"lab:x/pfx-qzx7"}))
    assert body["parameters"] == {"pfx_password": "lab:x/pfx-qzx7", "note": f"a {MASK}"}
    assert evidence.verify(tmp_path / "rec") == []


def _journalled_record(root: Path, end: str | None) -> Path:
    """A record as a run leaves it: journal first, then (unless it died) the manifest."""
    from psbridge import intents

    rec = root / "cust" / "org" / "20261201T000000Z-abcd"
    rec.mkdir(parents=True)
    journal = rec / intents.JOURNAL

    def say(**entry: object) -> None:
        intents.append(entry, journal)

    steps = [{"id": "make", "status": "not run"}, {"id": "use", "status": "not run"}]
    say(event="run-start", head={"run_id": rec.name, "mode": "apply"}, steps=steps)
    say(event="step-start", step="make")
    say(event="intent", id="1", action="upload", where="CRM01", what="x.pfx")
    say(event="outcome", id="1", outcome="done")
    say(event="intent", id="2", action="install", where="CRM01", what="x")
    (rec / "00-make.ipynb").write_text("{}", encoding="utf-8")
    if end is not None:
        say(event="outcome", id="2", outcome="done")
        say(event="step-end", outcome={"id": "make", "status": "succeeded"})
        say(event="run-end", status=end, failure=None if end == "complete" else "x")
        evidence.write_manifest_from_journal(rec)
    return rec


@pytest.mark.parametrize(("state", "code", "word"), [
    ("complete", 0, "COMPLETE"), ("failed", 3, "FAILED"), ("interrupted", 4, "INTERRUPTED")])
def test_verify_tells_the_three_states_apart(tmp_path: Path, state: str, code: int, word: str) -> None:
    from typer.testing import CliRunner

    from psbridge.cli import app

    rec = _journalled_record(tmp_path, None if state == "interrupted" else state)
    if state == "interrupted":
        said = CliRunner().invoke(app, ["verify", str(rec)], env={"COLUMNS": "200"})
        assert said.exit_code == 4 and "verify --repair" in said.output, said.output
        said = CliRunner().invoke(app, ["verify", "--repair", str(rec)], env={"COLUMNS": "200"})
        assert "rebuilt from its journal" in said.output
        manifest = evidence.read_manifest(rec)
        assert manifest["status"] == "interrupted" and manifest["interrupted_step"] == "make"
        assert [(c["action"], c["outcome"]) for c in manifest["changes"]] == [("upload", "done"),
                                                                              ("install", "in flight")]
        assert "in flight: install on CRM01" in said.output
    said = CliRunner().invoke(app, ["verify", str(rec)], env={"COLUMNS": "200"})
    assert said.exit_code == code and word in said.output, said.output
    # Tampered wins over any state, with its own code.
    (rec / "00-make.ipynb").write_text('{"x": 1}', encoding="utf-8")
    said = CliRunner().invoke(app, ["verify", str(rec)], env={"COLUMNS": "200"})
    assert said.exit_code == 1 and "TAMPERED" in said.output and "changed: 00-make.ipynb" in said.output


def test_verify_says_what_a_folder_that_is_no_record_is(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from psbridge.cli import app

    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    for where, code, word in ((tmp_path / "empty", 5, "not a psbridge record"),
                              (tmp_path / "missing", 6, "no such folder"),
                              (tmp_path / "file.txt", 7, "a file, not a record folder")):
        said = CliRunner().invoke(app, ["verify", str(where)], env={"COLUMNS": "200"})
        assert said.exit_code == code and word in " ".join(said.output.split()), said.output
        assert said.exception is None or isinstance(said.exception, SystemExit)


def test_records_of_one_second_are_ordered_by_when_they_started(tmp_path: Path) -> None:
    """Run ids sort by their second, then by a random suffix: a run and its resume started within one
    second come out in the order they started (their manifests), not by the suffix."""
    import json

    base = tmp_path / "c" / "o"
    started = {
        "20261203T101500Z-ffff": "2026-12-03T10:15:00.100000+00:00",  # the earlier, its suffix the larger
        "20261203T101500Z-0001": "2026-12-03T10:15:00.900000+00:00",
        "20261203T101459Z-aaaa": "2026-12-03T10:14:59.500000+00:00",
        "20261203T101501Z-0000-plan": "2026-12-03T10:15:01.000000+00:00",
    }
    for name, when in started.items():
        (base / name).mkdir(parents=True)
        (base / name / evidence.MANIFEST).write_text(json.dumps({"run_id": name, "started": when}))
    (base / "20261203T101500Z-7777").mkdir()  # no manifest (a run that died): not a record yet
    got = [p.name for p in evidence.records_of(tmp_path, "c", "o")]
    assert got == ["20261203T101459Z-aaaa", "20261203T101500Z-ffff", "20261203T101500Z-0001",
                   "20261203T101501Z-0000-plan"]


def test_a_run_that_died_is_ordered_by_its_journal(tmp_path: Path) -> None:
    import json

    from psbridge.intents import JOURNAL

    base = tmp_path / "c" / "o"
    (base / "20261203T101500Z-ffff").mkdir(parents=True)
    (base / "20261203T101500Z-ffff" / evidence.MANIFEST).write_text(
        json.dumps({"started": "2026-12-03T10:15:00.100000+00:00"}))
    (base / "20261203T101500Z-0001").mkdir()  # died: a journal, no manifest
    (base / "20261203T101500Z-0001" / JOURNAL).write_text(json.dumps(
        {"event": "run-start", "head": {"started": "2026-12-03T10:15:00.900000+00:00"}}) + "\n")
    assert [p.name for p in evidence.in_run_order(base.iterdir(), newest_first=True)] == [
        "20261203T101500Z-0001", "20261203T101500Z-ffff"]
