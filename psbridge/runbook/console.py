"""How a run looks on a terminal: one line a step as it starts and ends, then a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from psbridge.runbook.runner import CARRIED, FAILED, INTERRUPTED, SUCCEEDED, RunResult, StepOutcome
from psbridge.text import terminal_safe

_MARK = {SUCCEEDED: "[green]✔[/]", FAILED: "[red]✘[/]", CARRIED: "[cyan]↷[/]", INTERRUPTED: "[yellow]■[/]"}


def escape(text: str) -> str:
    """Text from anywhere (a parameter, a server's message) as rich markup: no markup, no control codes."""
    return rich_escape(terminal_safe(text))


class ConsoleProgress:
    def __init__(self, console: Console, plan: bool = False) -> None:
        self.console = console
        self.plan = plan

    def __call__(self, event: str, outcome: StepOutcome) -> None:
        step = outcome.step
        if event == "start":
            self.console.print(f"  [bold]▶[/] {step.stem:<24} {step.title}", highlight=False)
            return
        mark = _MARK.get(outcome.status, "·")
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
    import shlex

    console.print(summary_table(result))
    console.print(f"Record: [bold]{escape(str(result.record_dir))}[/] ({result.status})", highlight=False)
    failed = result.failed_step
    if failed is not None:
        console.print(f"[red]Step {failed.step.id} ({failed.step.notebook}) {failed.status}:[/] "
                      f"{escape(failed.error or '')}", highlight=False)
        page = result.record_dir / f"{failed.step.stem}.html"
        console.print(f"Its notebook, with the error, is in the record: {escape(str(page))}", highlight=False)
        if resume_with is not None:
            command = shlex.join([*resume_with, "--resume"])
            console.print(f"After fixing the cause, resume with: {escape(command)}", highlight=False,
                          soft_wrap=True)
