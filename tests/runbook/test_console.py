"""The console on a Windows code page without check marks or box-drawing characters, the resume
command as each shell reads it, and ``psbridge demo``'s word about a lab an earlier demo left."""

from __future__ import annotations

import datetime as dt
import io
import shlex
from pathlib import Path

import pytest
from rich.console import Console

from psbridge.runbook import cli_support, console, registry
from psbridge.runbook.runner import FAILED, SUCCEEDED, RunResult, StepOutcome

BOOK = registry.load("exchange-online-s2s")


def _result(tmp_path: Path) -> RunResult:
    now = dt.datetime.now(dt.UTC)
    steps = [StepOutcome(s) for s in BOOK.steps]
    steps[0].status, steps[0].started, steps[0].ended = SUCCEEDED, now, now + dt.timedelta(seconds=2)
    steps[0].facts = {"changes": ["installed 811BD1CEFB2ACDFF49F64E2EF738AF34F6FE5278 — for LAB\\svc ✔"]}
    steps[1].status, steps[1].error = FAILED, "CertificateError: wrong password — “quoted”"
    return RunResult(BOOK, "r1", tmp_path / "rec", "apply", steps, {"status": "failed", "customer": "c",
                                                                       "organization": "o"})


@pytest.mark.parametrize("code_page", ["cp437", "cp850", "cp1252", "ascii"])
def test_a_run_prints_on_a_code_page_without_box_drawing_characters(tmp_path: Path, code_page: str) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=code_page, errors="strict", newline="\n")
    out = console.make_console(stream)
    progress = console.ConsoleProgress(out)
    result = _result(tmp_path)
    progress("start", result.steps[0])
    progress("end", result.steps[0])
    progress("end", result.steps[1])
    console.print_result(out, result, ["psbridge", "run", "c.yaml", "--records", "C:\\records"])
    stream.flush()
    text = raw.getvalue().decode(code_page)
    assert "ok" in text and "XX" in text and "✔" not in text
    assert "+" in text or "-" in text  # rich's ASCII box
    assert "811BD1CEFB2ACDFF49F64E2EF738AF34F6FE5278" in text.replace("\n", "").replace(" ", "")
    assert "resume with:" in text and "--resume" in text


def test_a_utf8_console_keeps_its_marks(tmp_path: Path) -> None:
    out = Console(file=io.StringIO(), highlight=False, width=200)
    console.ConsoleProgress(out)("end", _result(tmp_path).steps[0])
    assert "✔" in out.file.getvalue()  # type: ignore[attr-defined]


def test_the_resume_command_has_every_option_and_absolute_paths(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.pfx").write_bytes(b"x")
    command = cli_support.resume_command(Path("c.yaml"), "exchange-online-s2s", Path("recs"), "key.pfx",
                                         "keyring:psbridge/pfx")
    assert command[1:] == ["run", str(tmp_path / "c.yaml"), "--runbook", "exchange-online-s2s", "--records",
                           str(tmp_path / "recs"), "--sign", str(tmp_path / "key.pfx"), "--sign-password",
                           "keyring:psbridge/pfx"]
    assert shlex.split(console.command_line(command)) == command
    monkeypatch.setattr(console.sys, "platform", "win32")
    line = console.command_line(["C:\\Program Files\\psbridge.exe", "run", "C:\\a b\\c.yaml"])
    assert line == '"C:\\Program Files\\psbridge.exe" run "C:\\a b\\c.yaml"'


def test_demo_says_it_reuses_a_lab_and_fresh_starts_anew(tmp_path: Path) -> None:
    out = Console(file=io.StringIO(), highlight=False, width=300)
    state = tmp_path / "lab"
    assert cli_support._lab_folder(state, False, out) is False  # nothing there: a new lab
    state.mkdir()
    (state / "world.json").write_text("{}", encoding="utf-8")
    assert cli_support._lab_folder(state, False, out) is True
    said = out.file.getvalue()  # type: ignore[attr-defined]
    assert "Reusing the lab an earlier demo left" in said and "psbridge demo --fresh" in said
    assert cli_support._lab_folder(state, True, out) is False and not state.exists()
    assert "Removing the lab an earlier demo left" in out.file.getvalue()  # type: ignore[attr-defined]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("x", encoding="utf-8")
    assert cli_support._lab_folder(other, True, out) is False  # no lab there: nothing is removed
    assert (other / "mine.txt").exists()
