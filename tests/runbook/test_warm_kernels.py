"""Warm kernels, forked or started the ordinary way: what a step can rely on.

- every step runs in a process of its own, started with the runner's kernel arguments, whose
  namespace, module state, environment and remembered secrets hold nothing of an earlier step's —
  forked from the zygote or not;
- a forked kernel is the zygote's child and runs this interpreter; a zygote that has died is
  started anew, and one that cannot fork leaves the kernel to start the ordinary way;
- a kernel that died while waiting for its step is not handed out: it is replaced, and the
  replacement is said (the pool's events, which the run's log and record carry).

The notebooks are made here and run in real kernels through papermill, as the steps do.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from psbridge.runbook import definition, zygote
from psbridge.runbook import kernel as kernel_module
from psbridge.runbook.kernel import KERNEL_NAME, kernel_manager_class
from psbridge.runbook.runner import Runner
from psbridge.runbook.warm import KernelPool

pytestmark = pytest.mark.skipif(not zygote.SUPPORTED, reason="kernels are forked only where os.fork is")

# Step one leaves every kind of state a step could leave; step two looks for each.
LEAVE = """\
import os, sys
import psbridge.runbook as runbook_module
from psbridge import secrets
from psbridge.runbook import record
LEFT_BEHIND = "a global of step one"
runbook_module._left_by_step_one = True
os.environ["PSBRIDGE_LEFT_BY_STEP_ONE"] = "1"
sys.modules["left_by_step_one"] = runbook_module
secrets.remember(["step-one-remembered-value"])
record("first_pid", os.getpid())
record("first_parent", os.getppid())
record("first_python", sys.executable)
record("first_cwd", os.getcwd())
# The runner's kernel arguments (psbridge.runbook.kerneltune): no sleep after each execute, and
# the kernel's logger no lower than its handler.
_kernel = get_ipython().kernel
record("first_tuning", [_kernel._execute_sleep, _kernel.log.level, [h.level for h in _kernel.log.handlers]])
# The runner's kernel application (psbridge.runbook.kernelmain): no shell channel thread, so no subshells.
import threading
record("first_app", [c.__name__ for c in type(_kernel.parent).__mro__])
record("first_shell_thread", [t.name for t in threading.enumerate() if t.name == "Shell channel"])
record("first_features", _kernel.kernel_info.get("supported_features", []))
record("first_journal", os.environ.get("PSBRIDGE_JOURNAL", ""))
record("first_timings", os.environ.get("PSBRIDGE_TIMINGS", ""))
del _kernel
"""
LOOK = """\
import os, sys
import psbridge.runbook as runbook_module
from psbridge import secrets
from psbridge.runbook import record
found = [what for what, there in [
    ("a global", "LEFT_BEHIND" in globals()),
    ("module state", hasattr(runbook_module, "_left_by_step_one")),
    ("an environment variable", "PSBRIDGE_LEFT_BY_STEP_ONE" in os.environ),
    ("a module", "left_by_step_one" in sys.modules),
    ("a remembered secret", "step-one-remembered-value" not in secrets.redact("step-one-remembered-value")),
] if there]
record("found", found)
record("second_pid", os.getpid())
record("second_parent", os.getppid())
record("second_cwd", os.getcwd())
"""


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (psbridge)",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell("plan: bool = False")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# step"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> definition.Runbook:
    root = tmp_path_factory.mktemp("isolation")
    (root / "nb").mkdir()
    _notebook(root / "nb" / "10-leave.ipynb", LEAVE)
    _notebook(root / "nb" / "20-look.ipynb", LOOK)
    spec = {
        "name": "isolation", "notebooks": "nb",
        "parameters": {"customer": {"type": "str", "required": True},
                       "org": {"type": "str", "required": True}},
        "facts": {"first_pid": {"type": "int"}, "first_parent": {"type": "int"},
                  "first_python": {"type": "str"}, "first_tuning": {"type": "list"},
                  "first_app": {"type": "list"}, "first_shell_thread": {"type": "list"},
                  "first_features": {"type": "list"}, "first_journal": {"type": "str"},
                  "first_timings": {"type": "str"},
                  "found": {"type": "list"},
                  "second_pid": {"type": "int"}, "second_parent": {"type": "int"},
                  "first_cwd": {"type": "str"}, "second_cwd": {"type": "str"}},
        "steps": [
            {"id": "leave", "notebook": "10-leave.ipynb",
             "produces": ["first_pid", "first_parent", "first_python", "first_tuning", "first_cwd",
                          "first_app", "first_shell_thread", "first_features", "first_journal",
                          "first_timings"]},
            {"id": "look", "notebook": "20-look.ipynb",
             "produces": ["found", "second_pid", "second_parent", "second_cwd"]},
        ],
    }
    (root / "isolation.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return definition.load(root / "isolation.yaml")


def _run(book: definition.Runbook, tmp_path: Path, **kw: Any) -> Any:
    result = Runner(book, {"customer": "c", "org": "o"}, records_root=tmp_path / "records", html=False,
                    **kw).run()
    assert result.ok, result.table().to_string()
    return result


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "ordinary"])
def test_a_step_sees_nothing_of_the_step_before(book: definition.Runbook, tmp_path: Path,
                                                forked: bool) -> None:
    facts = _run(book, tmp_path, forked_kernels=forked).facts
    assert facts["found"] == [], f"step two found {facts['found']} left by step one"
    assert facts["first_pid"] != facts["second_pid"]
    assert facts["first_python"] == sys.executable
    assert facts["first_tuning"] == [0.0, logging.WARNING, [logging.WARNING]], facts["first_tuning"]
    assert "RunbookKernelApp" in facts["first_app"], facts["first_app"]
    assert facts["first_shell_thread"] == []
    assert "kernel subshells" not in facts["first_features"]
    # Every step's kernel works in the notebooks' folder, as papermill's own kernels do (the first
    # kernel starts before any step, the others while papermill has changed this process's folder).
    assert facts["first_cwd"] == facts["second_cwd"] == str(book.notebook_dir)
    if forked:
        forks = zygote.shared()
        assert forks is not None
        assert facts["first_parent"] == facts["second_parent"] == forks.process.pid
    else:
        assert facts["first_parent"] == facts["second_parent"] == os.getpid()


def test_a_dead_zygote_is_started_anew(book: definition.Runbook, tmp_path: Path) -> None:
    before = zygote.shared()
    assert before is not None
    before.process.kill()
    before.process.wait(timeout=10)
    facts = _run(book, tmp_path).facts
    after = zygote.shared()
    assert after is not None and after is not before
    assert facts["first_parent"] == after.process.pid != before.process.pid


def test_a_zygote_that_cannot_fork_leaves_the_ordinary_start(book: definition.Runbook, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # A real zygote, killed: asked to fork, it cannot answer, as when it dies between two steps.
    dead = zygote.Zygote()
    dead.process.kill()
    dead.process.wait(timeout=10)
    monkeypatch.setattr(kernel_module, "shared_zygote", lambda: dead)
    monkeypatch.setattr(zygote, "shared", lambda: dead)
    with caplog.at_level("WARNING", logger=kernel_module.__name__):
        facts = _run(book, tmp_path).facts
    assert facts["found"] == []
    assert facts["first_parent"] == facts["second_parent"] == os.getpid()
    assert "starting the kernel the ordinary way" in caplog.text


def _managers(tmp_path: Path, forked: bool) -> Any:
    """A pool's ``manager_for``: each kernel's manager, forked or started the ordinary way."""
    def manager_for(number: int) -> tuple[Any, Path | None]:
        manager = kernel_manager_class({}, tmp_path / "kernels.log", forked=forked)
        return manager(kernel_name=KERNEL_NAME), None

    return manager_for


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "ordinary"])
def test_a_kernel_that_died_while_waiting_is_replaced_and_said(tmp_path: Path, forked: bool) -> None:
    with KernelPool(_managers(tmp_path, forked), ahead=1) as pool:
        waiting = pool._pending[0].result(timeout=120)  # the kernel started ahead of the first step
        doomed = waiting.pid
        assert doomed is not None and waiting.alive()
        os.kill(doomed, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while waiting.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        got = pool.take()
        try:
            assert got.alive() and got.pid != doomed
            assert len(pool.events) == 1 and f"(pid {doomed})" in pool.events[0]
            assert "had died; it was replaced" in pool.events[0]
        finally:
            pool.discard(got)


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "ordinary"])
def test_a_kernel_is_warm_with_the_step_modules_and_only_an_ordinary_one_runs_the_warming_code(
        tmp_path: Path, forked: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked kernel has the zygote's imports: the pool asks it only for its kernel_info (the
    warming code would be a round trip for nothing). A kernel started the ordinary way runs the
    warming code. Either way the step modules are imported when the step gets the kernel."""
    import asyncio

    sent: list[str] = []
    execute = kernel_module.ReadyClient.execute

    def counted(self: Any, code: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(code)
        return execute(self, code, *args, **kwargs)

    monkeypatch.setattr(kernel_module.ReadyClient, "execute", counted)

    with KernelPool(_managers(tmp_path, forked), ahead=1, needed=1) as pool:
        kernel = pool.take()
        try:
            assert kernel.manager.forked is forked
            assert kernel.language_info and kernel.language_info["name"] == "python"
            assert [code for code in sent if "_psbridge_warm" in code] == ([] if forked else [sent[0]])
            client = kernel.take_client()

            async def imported() -> Any:
                reply = await client.execute_interactive(
                    "import sys; print('psbridge.runbook.steps.s2s' in sys.modules)", timeout=60,
                    output_hook=lambda msg: said.append(msg["content"].get("text", "")))
                return reply["content"]["status"]

            said: list[str] = []
            assert asyncio.run(imported()) == "ok"
            assert "".join(said).strip() == "True"
        finally:
            pool.discard(kernel)


def test_a_pool_starts_no_kernel_beyond_those_needed_but_replaces_one_that_died(tmp_path: Path) -> None:
    """A run of two steps starts two kernels (none ahead of a step that does not come); the second
    dying while it waits is still replaced."""
    made: list[int] = []

    def manager_for(number: int) -> tuple[Any, Path | None]:
        made.append(number)
        return kernel_manager_class({}, tmp_path / "kernels.log", forked=True)(kernel_name=KERNEL_NAME), None

    with KernelPool(manager_for, ahead=1, needed=2) as pool:
        first = pool.take()
        pool.discard(first)
        waiting = pool._pending[0].result(timeout=120)
        assert waiting.pid is not None
        os.kill(waiting.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while waiting.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = pool.take()
        try:
            assert second.alive() and second.pid not in (first.pid, waiting.pid)
            assert not pool._pending and "had died; it was replaced" in pool.events[0]
        finally:
            pool.discard(second)
    assert made == [1, 2, 3]


def test_background_work_waits_for_the_next_steps_cells(book: definition.Runbook, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Step one's record is written only once the next step's cells run (its start does not share
    the runner with it); the run starts no kernel beyond its two steps."""
    import datetime as dt

    from psbridge import evidence

    written: dict[str, dt.datetime] = {}
    submitted: list[dt.datetime] = []
    write, submit = evidence.RecordWriter.write_notebook, KernelPool._submit

    def timed_write(self: Any, stem: str, *args: Any, **kwargs: Any) -> Any:
        written[stem] = dt.datetime.now(dt.UTC)
        return write(self, stem, *args, **kwargs)

    def timed_submit(self: Any) -> None:
        submitted.append(dt.datetime.now(dt.UTC))
        submit(self)

    monkeypatch.setattr(evidence.RecordWriter, "write_notebook", timed_write)
    monkeypatch.setattr(KernelPool, "_submit", timed_submit)
    result = _run(book, tmp_path)

    def first_cell(stem: str) -> dt.datetime:
        nb = nbformat.read(result.record_dir / f"{stem}.ipynb", as_version=4)
        return dt.datetime.fromisoformat(nb.cells[0].metadata.papermill["start_time"])

    assert written["10-leave"] >= first_cell("20-look")
    assert len(submitted) == 2


def test_the_kernel_behind_a_ready_one_starts_when_asked_and_behind_a_starting_one_at_once_unless_quick(
        tmp_path: Path) -> None:
    def manager_for(number: int) -> tuple[Any, Path | None]:
        return kernel_manager_class({}, tmp_path / "kernels.log", forked=True)(kernel_name=KERNEL_NAME), None

    with KernelPool(manager_for, ahead=1, needed=4) as pool:
        pool._pending[0].result(timeout=120)
        first = pool.take(start_next=False)  # ready: the runner starts the next once the step's cells run
        assert pool._count == 1 and not pool._pending
        pool.start_next()
        assert pool._count == 2
        assert not pool._pending[0].done()  # just submitted: a fork and a warm-up take far longer
        second = pool.take(start_next=False)  # waited for: the one behind it started meanwhile
        assert pool._count == 3 and len(pool._pending) == 1
        pool.start_next()  # nothing more: one waits ahead already
        assert pool._count == 3
        for kernel in (first, second):
            pool.discard(kernel)
    # A kernel that was not forked (the zygote failed) ends the quick way.
    def ordinary(number: int) -> tuple[Any, Path | None]:
        return kernel_manager_class({}, tmp_path / "kernels.log", forked=False)(kernel_name=KERNEL_NAME), None

    with KernelPool(ordinary, ahead=1, needed=1, quick=True) as pool:
        pool.discard(pool.take(start_next=False))
        assert not pool.quick
    # Forked kernels start quickly: a take that waits leaves the CPUs to the one it waits for.
    with KernelPool(manager_for, ahead=1, needed=4, quick=True) as pool:
        first = pool.take(start_next=False)
        assert pool._count == 1 and not pool._pending and first.manager.forked
        pool.start_next()
        second = pool.take(start_next=False)
        assert pool._count == 2 and pool.quick
        pool.start_next()
        assert pool._count == 3
        for kernel in (first, second):
            pool.discard(kernel)


def test_a_forked_kernel_leaves_when_its_zygote_is_killed(tmp_path: Path) -> None:
    """A runner killed with SIGKILL closes its zygote's standard input, and the zygote leaves; its
    kernels must leave too, not live on as orphans."""
    forks = zygote.Zygote()
    manager = kernel_manager_class({}, tmp_path / "kernels.log", forked=True)(kernel_name=KERNEL_NAME)
    original = kernel_module.shared_zygote
    kernel_module.shared_zygote = lambda: forks  # type: ignore[assignment]
    try:
        with KernelPool(lambda n: (manager, None), ahead=1) as pool:
            kernel = pool._pending[0].result(timeout=120)
            assert kernel.alive() and kernel.pid is not None
            os.kill(forks.process.pid, signal.SIGKILL)
            forks.process.wait(timeout=10)
            deadline = time.monotonic() + 15
            while kernel.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not kernel.alive(), f"kernel {kernel.pid} outlived its zygote"
            pool._pending.clear()
    finally:
        kernel_module.shared_zygote = original


def test_a_forked_kernel_has_its_configuration_read_in_the_zygote_as_it_would_read_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zygote reads the kernel arguments and config files for the kernels it forks (not each
    kernel), under the kernel's own environment: an IPython directory with an
    ipython_kernel_config.py configures the kernels started with it, and not those of the next
    environment; each kernel is configured as the runner asks (history off, the tuning extension
    loaded, its own connection file, the zygote watched as its parent)."""
    import asyncio

    configured, plain = tmp_path / "configured", tmp_path / "plain"
    (configured / "profile_default").mkdir(parents=True)
    plain.mkdir()
    (configured / "profile_default" / "ipython_kernel_config.py").write_text(
        "c.InteractiveShell.autocall = 2\n", encoding="utf-8")
    forks = zygote.Zygote()
    monkeypatch.setattr(kernel_module, "shared_zygote", lambda: forks)
    probe = ("import os; from ipykernel.kernelapp import IPKernelApp; app = IPKernelApp.instance(); "
             "ip = get_ipython(); print(getattr(app, 'prepared', None), ip.autocall, "
             "ip.history_manager.enabled, 'psbridge.runbook.kerneltune' in ip.extension_manager.loaded, "
             "app.parent_handle == os.getppid(), app.connection_file)")

    async def said_in(ipython_dir: Path) -> list[str]:
        manager = kernel_manager_class({"IPYTHONDIR": str(ipython_dir)}, tmp_path / "kernels.log",
                                       forked=True)(kernel_name=KERNEL_NAME)
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        out: list[str] = []
        try:
            await client.wait_for_ready(timeout=60)
            await client.execute_interactive(
                probe, timeout=60, output_hook=lambda msg: out.append(msg["content"].get("text", "")))
            assert manager.forked
            return [*"".join(out).split(), manager.connection_file]
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    try:
        for ipython_dir, autocall in ((configured, "2"), (plain, "0"), (plain, "0"), (configured, "2")):
            prepared, seen, history, tuned, watched, connection, expected = asyncio.run(
                said_in(ipython_dir))
            assert (prepared, seen, history, tuned, watched) == ("True", autocall, "False", "True", "True")
            assert connection == expected
    finally:
        forks.close()


def test_the_zygote_forgets_a_prepared_kernel_application_entirely() -> None:
    """traitlets keeps a singleton on every class of its own class's MRO; clearing it from a base
    class leaves it on the subclasses. A kernel application prepared for one environment must not
    be handed to a kernel of another (it would skip reading that kernel's command line, its
    connection file among it, and the runner would wait for a kernel it cannot reach)."""
    import subprocess

    code = (
        "from ipykernel.kernelapp import IPKernelApp\n"
        "from psbridge.runbook import zygote\n"
        "from psbridge.runbook.kernelmain import RunbookKernelApp\n"
        "first = zygote._kernel_app_class().instance()\n"
        "first.prepared = True\n"
        "zygote._forget_app()\n"
        "plain = RunbookKernelApp.instance()\n"
        "assert plain is not first and not getattr(plain, 'prepared', False), plain\n"
        "zygote._forget_app()\n"
        "again = zygote._kernel_app_class().instance()\n"  # a fresh class inherits no instance
        "assert again is not first and again is IPKernelApp.instance()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def _gone(pid: int, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "ordinary"])
def test_a_run_takes_the_kernel_the_run_before_left_and_makes_it_its_own(
        book: definition.Runbook, tmp_path: Path, forked: bool) -> None:
    """A run that leaves a kernel (a batch's worker, org after org) starts it while its last step
    runs; the next run's first step runs in it, with that run's journal and timings, seeing
    nothing of any step before (it never ran one)."""
    from psbridge import intents
    from psbridge.runbook import warm

    warm.retire_left()
    try:
        one = _run(book, tmp_path, forked_kernels=forked, leave_kernel=True)
        assert warm._left is not None
        left_pid = warm._left[1].pid
        assert left_pid not in (one.facts["first_pid"], one.facts["second_pid"])
        two = _run(book, tmp_path, forked_kernels=forked, leave_kernel=True)
        facts = two.facts
        assert facts["first_pid"] == left_pid
        assert facts["found"] == []
        assert facts["first_journal"] == str((two.record_dir / intents.JOURNAL).resolve())
        assert facts["first_timings"].endswith(f"timings-{two.run_id}-1.jsonl")
        said = (two.record_dir / "run.log").read_text(encoding="utf-8")
        assert f"kernel (pid {left_pid}) was started by the run before in this process" in said
        assert warm._left is not None and warm._left[1].pid not in (left_pid, facts["second_pid"])
    finally:
        pid = warm._left[1].pid if warm._left else None
        warm.retire_left()
    assert warm._left is None
    assert pid is not None and _gone(pid), f"the left kernel {pid} was not shut down"


def test_a_kernel_left_for_other_kernels_is_not_taken_and_is_shut_down(
        book: definition.Runbook, tmp_path: Path) -> None:
    """A left kernel is taken only by a run whose kernels would start the same way: another
    environment (beyond psbridge's own variables) starts its own, and the left one is shut down.
    A run that does not leave one leaves nothing."""
    from psbridge.runbook import warm

    warm.retire_left()
    _run(book, tmp_path, leave_kernel=True)
    assert warm._left is not None
    left_pid = warm._left[1].pid
    assert left_pid is not None
    other = _run(book, tmp_path, env={"SOME_SETTING_OF_THE_KERNELS": "another"})
    assert other.facts["first_pid"] != left_pid
    assert warm._left is None
    assert _gone(left_pid), f"the kernel {left_pid} left for other kernels was not shut down"
