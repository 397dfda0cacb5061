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

from typing import Any

from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import Engine, papermill_engines
from papermill.log import logger
from papermill.utils import merge_kwargs, remove_args

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
                                 **kwargs: Any) -> Any:
        if kernel is None:
            raise TypeError("the psbridge engine runs in a warm kernel: pass kernel=KernelPool.take()")
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logger, log_output=log_output,
                             stdout_file=stdout_file, stderr_file=stderr_file)
        client = PapermillNotebookClient(nb_man, km=kernel.manager, **final)
        try:
            return client.execute()
        finally:
            # With a kernel manager of its own handing, nbclient leaves the client open.
            if client.kc is not None:
                client.kc.stop_channels()


def register() -> None:
    """Make ``engine_name="psbridge"`` known to papermill (again: registering is idempotent)."""
    papermill_engines.register(ENGINE_NAME, WarmKernelEngine)


register()
