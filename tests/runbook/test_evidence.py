"""Evidence: a record's manifest and verification catch every change."""

from __future__ import annotations

from pathlib import Path

import nbformat

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
