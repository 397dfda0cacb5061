"""How a step's kernel is started: the arguments the runner gives ipykernel, and an extension.

Both ways a runner starts a kernel (forked from the zygote, or ``python -m
psbridge.runbook.kernelmain``) give its application :data:`KERNEL_ARGS`, so both kernels behave
alike. JupyterLab's and plain papermill's kernels (the installed kernelspec) get none of this:
they are ipykernel as shipped.

The extension takes fixed costs off every executed cell, found with a sampling profiler on the
kernel's main thread. A step runs some 70 cells, most of them a line or two around one call, and
their round trips were a third of a no-change run's own time. Each change keeps what the cell
does and what the notebook records exactly as they were:

- ipykernel sleeps 0.5 ms after each execute (``Kernel._execute_sleep``) so that a client reading
  the reply before the outputs does not miss them. Papermill's client (nbclient) reads a cell's
  outputs on IOPub until the kernel's ``idle`` status for that cell, which ipykernel publishes on
  the same socket after the outputs, so it loses nothing without the sleep.
- traitlets configures the application's logger at DEBUG and filters at its handler (WARNING
  unless ``--log-level`` says otherwise), so ipykernel's debug lines for each message are built
  as records and then dropped. The logger is set to the handler's level: what is shown is the
  same, and nothing is built that is not.
- After each execute ipykernel flushes standard output and error, each flush a round trip
  through its IOPub thread even when nothing was written. A stream with nothing buffered and no
  flush pending is not flushed: there is nothing to send, and the order nbclient relies on (the
  outputs, then ``idle``, on one socket) does not depend on the round trip.
- IPython passes every cell through its input transformers (magics, ``!`` commands, ``?`` help,
  pasted prompts), which tokenize it line by line. A cell that is already Python, starts on its
  first line and has no line that could be a pasted prompt (``In [n]:``, ``...:``, ``>>>``,
  ``...``, some of which Python also reads) is what those transformers return for it; such a cell
  skips them.
- IPython compiles every cell once more to learn whether it needs a coroutine runner; a cell
  without the words ``await`` or ``async`` cannot.
- ipykernel names each cell's code after a pure-Python MurmurHash of its text (for the debugger,
  which a runbook's kernel never has attached); the name is the same file in the same folder,
  numbered after a BLAKE2 digest instead.
- IPython builds its display formatters at the first result a cell shows; they are built as the
  extension loads, before the kernel is taken.

Measured with bench/kernel_cells.py (a tuned and a shipped kernel taking turns, 300 executions
each, 2-core machine), median round trip: a step's parameters cell 6.3 ms against 10.1 (0.62),
a one-line cell 4.7 ms against 6.5 (0.73).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
from typing import Any

EXTENSION = __name__

# No IPython history in a step's kernel: its record is its notebook, and kernels running side by
# side would contend for one history database.
KERNEL_ARGS = ["--HistoryManager.enabled=False", f"--IPKernelApp.extra_extensions={EXTENSION}"]

# IPython's prompt transformers strip these from pasted cells (on the first line, and on every
# line when the second has one). Some are also valid Python — ``In [1]: x = 5`` an annotated
# assignment, ``...`` and ``...: 1`` an Ellipsis — so a cell with one on any line is left to IPython.
_PASTED_PROMPT = re.compile(r"^(In \[\d+\]: |\s*\.{3,}: ?|\s*(>>>|\.\.\.))", re.MULTILINE)


def load_ipython_extension(shell: Any) -> None:
    """IPython's extension hook: tune the kernel ``shell`` belongs to (nothing else is touched)."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:  # not an ipykernel shell (a terminal IPython loading it by hand)
        return
    kernel._execute_sleep = 0.0
    log = kernel.log
    handlers = [h.level for h in log.handlers]
    if handlers:
        log.setLevel(min(handlers))
    for stream in (sys.stdout, sys.stderr):  # the kernel's OutStreams, set up before extensions
        _flush_only_when_pending(stream)
    _skip_transforms_for_python(shell.input_transformer_manager)
    _async_only_when_asked(shell)
    _name_cells_by_digest(shell.compile)
    _formatters_ready(shell)


def _formatters_ready(shell: Any) -> None:
    """Build IPython's display formatters now, while the kernel waits to be taken.

    They are made lazily, at the first result a cell shows (about 2.5 ms of traitlets
    configuration here), which would be in the step's first displaying cell.
    """
    formatter = getattr(shell, "display_formatter", None)
    if formatter is not None:
        formatter.format(0)


def _flush_only_when_pending(stream: Any) -> None:
    """``stream.flush()`` does nothing when nothing is buffered and no flush is pending."""
    needed = ("_buffers", "_buffer_lock", "_flush_pending", "_subprocess_flush_pending", "echo")
    if stream is None or not all(hasattr(stream, a) for a in needed):
        return  # another ipykernel's stream: flushed as shipped
    flush = stream.flush

    def flush_when_pending() -> None:
        if stream.echo is None and not stream._flush_pending and not stream._subprocess_flush_pending:
            with stream._buffer_lock:
                empty = all(b.tell() == 0 for b in stream._buffers.values())
            if empty:
                return
        flush()

    stream.flush = flush_when_pending


def python_unchanged(cell: str) -> bool:
    """Whether IPython's input transformers would return ``cell`` as it is (a newline added)."""
    if not cell or cell[0] in " \t\r\n" or _PASTED_PROMPT.search(cell):
        return False
    try:
        ast.parse(cell)
    except (SyntaxError, ValueError):
        return False
    return True


def _skip_transforms_for_python(manager: Any) -> None:
    transform = manager.transform_cell

    def transform_cell(cell: str) -> str:
        if python_unchanged(cell):
            return cell if cell.endswith("\n") else cell + "\n"
        return str(transform(cell))

    manager.transform_cell = transform_cell


def _async_only_when_asked(shell: Any) -> None:
    should_run_async = shell.should_run_async

    def only_when_asked(raw_cell: str, *, transformed_cell: str | None = None,
                        preprocessing_exc_tuple: Any = None) -> bool:
        text = transformed_cell if transformed_cell is not None else raw_cell
        if "await" not in text and "async" not in text:
            return False
        return bool(should_run_async(raw_cell, transformed_cell=transformed_cell,
                                     preprocessing_exc_tuple=preprocessing_exc_tuple))

    shell.should_run_async = only_when_asked


def _name_cells_by_digest(compiler: Any) -> None:
    if not hasattr(compiler, "get_code_name"):
        return
    try:
        from ipykernel.compiler import get_tmp_directory
    except ImportError:
        return
    folder = str(get_tmp_directory())  # type: ignore[no-untyped-call]

    def get_code_name(raw_code: str, code: str, number: int) -> str:
        named = os.environ.get("IPYKERNEL_CELL_NAME")  # as ipykernel: one name for every cell
        if named is not None:
            return named
        digest = hashlib.blake2b(raw_code.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        return f"{folder}{os.sep}{int.from_bytes(digest, 'little')}.py"

    compiler.get_code_name = get_code_name
