"""A papermill engine, ``psbridge``, that executes a notebook in a warm kernel handed to it.

Registered by name as papermill registers its own engines (``papermill_engines.register``, on
import; not through the ``papermill.engine`` entry points, which would have papermill import
this module while it is itself being imported — and the plain papermill CLI has no warm kernel
to hand it anyway), so a run is still
``papermill.execute_notebook(..., engine_name="psbridge", kernel=warm)``: the parameters cell is
injected and the executed notebook carries papermill's metadata exactly as with papermill's
default engine, which the plain ``papermill`` CLI and JupyterLab keep using unchanged.

The engine only executes: it neither starts nor stops the kernel (the runner's
:class:`~psbridge.runbook.warm.KernelPool` does both, off the critical path); it closes its own
client's channels.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import sys
import threading
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


class _NoPyarrowHere:
    """A finder that fails ``import pyarrow`` in one thread only, while papermill is imported.

    papermill's I/O module imports pyarrow for ``hdfs://`` paths, which psbridge never uses; pyarrow
    and numpy with it cost the runner about 40 MB resident and 0.15 s. Failing the import in the
    importing thread alone (not ``sys.modules["pyarrow"] = None``, which every thread would see)
    leaves pyarrow to anything else that wants it — pandas writing a Parquet summary — at any time.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if (name == "pyarrow" or name.startswith("pyarrow.")) and threading.get_ident() == self.thread:
            raise ImportError("pyarrow is not imported with papermill in psbridge")
        return None


def _import_papermill() -> None:
    if "papermill.iorw" in sys.modules or "pyarrow" in sys.modules:
        return
    finder = _NoPyarrowHere()
    sys.meta_path.insert(0, finder)
    try:
        import papermill.iorw  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


_import_papermill()

from papermill.clientwrap import PapermillNotebookClient  # noqa: E402
from papermill.engines import Engine, papermill_engines  # noqa: E402
from papermill.log import logger  # noqa: E402
from papermill.utils import merge_kwargs, remove_args  # noqa: E402

from psbridge.runbook import nbvalidation  # noqa: E402

ENGINE_NAME = "psbridge"


class WarmKernelEngine(Engine):  # type: ignore[misc]  # papermill has no annotations
    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: Any = None, **kwargs: Any) -> Any:
        # Papermill's manager would write the whole notebook out (serialized, validated) as each
        # cell starts and ends; the runner's output is in memory and read once the step is over,
        # and papermill writes the executed notebook there itself when execution ends.
        del output_path
        return super().execute_notebook(nb, kernel_name, output_path=None, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 stdout_file: Any = None, stderr_file: Any = None, start_timeout: float = 60,
                                 execution_timeout: float | None = None, kernel: Any = None,
                                 on_first_cell: Callable[[], None] | None = None, **kwargs: Any) -> Any:
        if kernel is None:
            raise TypeError("the psbridge engine runs in a warm kernel: pass kernel=KernelPool.take()")
        if on_first_cell is not None:
            _call_at_first_cell(nb_man, on_first_cell)
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output,
                             stdout_file=stdout_file, stderr_file=stderr_file)
        _durations_from_isoformat(nb_man)
        client = _WarmNotebookClient(nb_man, km=kernel.manager, **final)
        client.language_info = getattr(kernel, "language_info", None)
        warmed = kernel.take_client() if hasattr(kernel, "take_client") else None
        if warmed is not None:
            # The client that warmed this kernel, connected: nbclient makes none of its own.
            warmed.allow_stdin = False
            client.kc = warmed
        try:
            return client.execute()
        finally:
            # With a kernel manager of its own handing, nbclient leaves the client open.
            if client.kc is not None:
                client.kc.stop_channels()


class _WarmNotebookClient(PapermillNotebookClient):  # type: ignore[misc]  # papermill has no annotations
    """Papermill's client, taking the notebook's ``language_info`` from the kernel_info reply the
    kernel gave while it warmed, instead of asking that same kernel again after the last cell (a
    round trip at the end of every step). Papermill's ``execute`` otherwise, as shipped."""

    language_info: dict[str, Any] | None = None

    def execute(self, **kwargs: Any) -> Any:
        if not self.language_info:
            return super().execute(**kwargs)
        self.reset_execution_trackers()
        if sys.platform.startswith("win"):  # papermill's own choice there (bpo-37373)
            asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined]
        with self.setup_kernel(**kwargs):
            self.log.info(f"Executing notebook with kernel: {self.kernel_name}")
            self.papermill_execute_cells()
            self.nb.metadata["language_info"] = copy.deepcopy(self.language_info)
            self.set_widgets_metadata()
        return self.nb


def _call_at_first_cell(nb_man: Any, call: Callable[[], None]) -> None:
    """``call()`` once, as the first cell starts: the kernel's client is connected, papermill has
    read and parameterized the notebook, and what remains is the cells."""
    start = nb_man.cell_start
    pending = [call]

    def cell_start(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        try:
            return start(cell, cell_index=cell_index, **kwargs)
        finally:
            while pending:
                pending.pop()()

    nb_man.cell_start = cell_start


def _durations_from_isoformat(nb_man: Any) -> None:
    """Papermill's manager, which takes each cell's duration without dateutil's parser.

    Papermill's ``cell_complete`` reads the cell's start time back with dateutil's general date
    parser (about 0.9 ms a cell here, a no-change run's 71 cells 60 ms of the runner's main thread)
    to subtract it from the end. Both times are its own ``isoformat()`` strings, which
    ``datetime.fromisoformat`` reads; the duration is the same subtraction, written after papermill's
    ``cell_complete`` has done the rest of its work as shipped.
    """
    complete = nb_man.cell_complete

    def cell_complete(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        meta = cell.metadata.papermill
        started = meta.pop("start_time", None)  # papermill takes no duration without one
        try:
            return complete(cell, cell_index=cell_index, **kwargs)
        finally:
            if started is not None:
                meta["start_time"] = started
                ended = meta.get("end_time")
                if started and ended:
                    meta["duration"] = (dt.datetime.fromisoformat(ended)
                                        - dt.datetime.fromisoformat(started)).total_seconds()

    nb_man.cell_complete = cell_complete


def register_io(scheme: str, handler: Any) -> None:
    """Register a papermill I/O handler for paths starting with ``scheme`` (papermill imported the
    way this module imports it, without pyarrow)."""
    from papermill.iorw import papermill_io

    papermill_io.register(scheme, handler)


def register() -> None:
    """Make ``engine_name="psbridge"`` known to papermill (again: registering is idempotent)."""
    papermill_engines.register(ENGINE_NAME, WarmKernelEngine)


register()
# Imported with papermill, on the thread that imports it while the zygote starts: off the critical path.
nbvalidation.install()
