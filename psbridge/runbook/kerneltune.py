"""How a step's kernel is started: the arguments the runner gives ipykernel, and an extension.

Both ways a runner starts a kernel (forked from the zygote, or ``python -m ipykernel_launcher``)
give ipykernel :data:`KERNEL_ARGS`, so both kernels behave alike. JupyterLab's and plain
papermill's kernels (the installed kernelspec) get none of this: they are ipykernel as shipped.

The extension takes two fixed costs off every executed cell, found with a sampling profiler on the
kernel's main thread (a trivial cell's round trip, two kernels in one process taking turns, 2-core
machine: 4.1–4.6 ms with both against 4.6–5.1 ms as shipped):

- ipykernel sleeps 0.5 ms after each execute (``Kernel._execute_sleep``) so that a client reading
  the reply before the outputs does not miss them. Papermill's client (nbclient) reads a cell's
  outputs on IOPub until the kernel's ``idle`` status for that cell, which ipykernel publishes on
  the same socket after the outputs, so it loses nothing without the sleep.
- traitlets configures the application's logger at DEBUG and filters at its handler (WARNING
  unless ``--log-level`` says otherwise), so ipykernel's debug lines for each message are built
  as records and then dropped. The logger is set to the handler's level: what is shown is the
  same, and nothing is built that is not.
"""

from __future__ import annotations

from typing import Any

EXTENSION = __name__

# No IPython history in a step's kernel: its record is its notebook, and kernels running side by
# side would contend for one history database.
KERNEL_ARGS = ["--HistoryManager.enabled=False", f"--IPKernelApp.extra_extensions={EXTENSION}"]


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
