"""How a run looks on a terminal: one line a step as it starts and ends, then a summary table.

Consultants run psbridge on Windows laptops, where a console's code page (437, 850, 1252) may
lack the check marks and box-drawing characters: :func:`make_console` then draws tables in ASCII
(rich's own fallback for such encodings), marks steps with ASCII words, and replaces what the
code page cannot show instead of raising ``UnicodeEncodeError`` half-way through a run.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import IO, Any

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from psbridge.runbook.runner import CARRIED, FAILED, INTERRUPTED, SUCCEEDED, RunResult, StepOutcome
from psbridge.text import terminal_safe

_MARK = {SUCCEEDED: "[green]✔[/]", FAILED: "[red]✘[/]", CARRIED: "[cyan]↷[/]", INTERRUPTED: "[yellow]■[/]"}
_ASCII_MARK = {SUCCEEDED: "[green]ok[/]", FAILED: "[red]XX[/]", CARRIED: "[cyan]~~[/]",
               INTERRUPTED: "[yellow]!![/]"}
# What a run prints beyond ASCII; a console whose encoding lacks any of it gets the fallbacks.
_WIDE = "✔✘↷■▶—━┃│"


def _encodes(encoding: str, text: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def make_console(file: IO[str] | None = None) -> Console:
    """The console psbridge prints to: the terminal's encoding respected, never a crash over a character."""
    stream: Any = file if file is not None else sys.stdout
    encoding = str(getattr(stream, "encoding", None) or "utf-8")
    if not _encodes(encoding, _WIDE):
        # A character the code page lacks becomes "?" rather than an exception mid-run.
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="replace")
    return Console(file=file, highlight=False, safe_box=True)


def ascii_only(console: Console) -> bool:
    return not _encodes(console.encoding, _WIDE)


def command_line(args: list[str]) -> str:
    """A command as the shell it is pasted into reads it (PowerShell or cmd on Windows, else POSIX)."""
    import shlex

    if sys.platform == "win32":
        return subprocess.list2cmdline(args)
    return shlex.join(args)


def escape(text: str) -> str:
    """Text from anywhere (a parameter, a server's message) as rich markup: no markup, no control codes."""
    return rich_escape(terminal_safe(text))


class ConsoleProgress:
    def __init__(self, console: Console, plan: bool = False) -> None:
        self.console = console
        self.plan = plan

    def __call__(self, event: str, outcome: StepOutcome) -> None:
        step = outcome.step
        narrow = ascii_only(self.console)
        if event == "start":
            self.console.print(f"  [bold]{'>' if narrow else '▶'}[/] {step.stem:<24} {escape(step.title)}",
                               highlight=False)
            return
        mark = (_ASCII_MARK if narrow else _MARK).get(outcome.status, "-")
        secs = f"{outcome.duration:.1f} s" if outcome.duration is not None else ""
        self.console.print(f"  {mark} {step.stem:<24} {secs:>7}  {escape(outcome.summary(self.plan))}",
                           highlight=False, markup=True)


def summary_table(result: RunResult) -> Table:
    plan = result.mode == "plan"
    title = f"{result.book.name} — {result.manifest.get('customer')}/{result.manifest.get('organization')}"
    table = Table(title=title + (" (plan: nothing was changed)" if plan else ""), show_lines=False)
    for col, kw in (("step", {}), ("status", {}), ("s", {"justify": "right"}),
                    ("would change" if plan else "result", {"overflow": "fold"})):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for s in result.steps:
        status = {SUCCEEDED: "[green]done[/]" if not plan else "[green]planned[/]", FAILED: "[red]failed[/]",
                  CARRIED: "[cyan]earlier run[/]", INTERRUPTED: "[yellow]interrupted[/]"}.get(
            s.status, "[dim]not run[/]")
        secs = f"{s.duration:.1f}" if s.duration is not None else ""
        table.add_row(s.step.stem, status, secs, escape(s.summary(plan)))
    return table


def print_result(console: Console, result: RunResult, resume_with: list[str] | None = None) -> None:
    """The summary table, the record, and for a failed run what failed and the command that resumes it.

    ``resume_with``: the command that ran (program, parameter file, and every option it needs
    to run again as printed); ``--resume`` is added to it.
    """
    console.print(summary_table(result))
    console.print(f"Record: [bold]{escape(str(result.record_dir))}[/] ({result.status})", highlight=False)
    if result.mode != "plan":
        console.print(f"Run page: {escape(str(result.record_dir / 'index.html'))}", highlight=False)
    failed = result.failed_step
    if failed is not None:
        console.print(f"[red]Step {failed.step.id} ({failed.step.notebook}) {failed.status}:[/] "
                      f"{escape(failed.error or '')}", highlight=False)
        page = result.record_dir / f"{failed.step.stem}.html"
        console.print(f"Its notebook, with the error, is in the record: {escape(str(page))}", highlight=False)
        if resume_with is not None:
            command = command_line([*resume_with, "--resume"])
            console.print(f"After fixing the cause, resume with: {escape(command)}", highlight=False,
                          soft_wrap=True)
