"""A kernel zygote: one process with IPython, ipykernel and psbridge imported, forked for each kernel.

A step's kernel must be a process of its own (nothing of an earlier step in it), and starting one
costs about a second of imports on every step — more than most steps spend on the wire, and, in a
batch of hundreds of organizations, most of the CPU. A forked child starts with those imports done
and with its memory shared copy-on-write: its kernel is answering in a tenth of that time.

The zygote imports, never runs: no socket, thread or event loop exists in it when it forks, so
the child starts clean (ZeroMQ contexts and threads do not survive a fork). Each child puts itself
in a session of its own (signals meant for the zygote do not reach it, and its kernel manager
can signal its process group), takes the environment, folder and standard error given for it,
and starts an ipykernel on the connection file its kernel manager wrote. The zygote reaps its
children; a kernel manager sees its kernel through :class:`ForkedProcess`, as it would see a
process it had started itself.

Where there is no ``fork`` (Windows), psbridge starts kernels the ordinary way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

from psbridge.errors import RunbookError

SUPPORTED = hasattr(os, "fork")


class ZygoteError(RunbookError):
    """The zygote is gone or did not fork: the caller starts its kernel the ordinary way."""


# --- the client side: asks for kernels -------------------------------------------------------------


class Zygote:
    """A zygote process this process started, and the kernels forked from it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "psbridge.runbook.zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, connection_file: str, env: dict[str, str], cwd: str, stderr: str | None) -> int:
        """Fork a kernel for ``connection_file``; its pid."""
        request = {"connection_file": connection_file, "env": env, "cwd": cwd, "stderr": stderr}
        with self._lock:
            if not self.alive or self.process.stdin is None or self.process.stdout is None:
                raise ZygoteError("the kernel zygote is not running")
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                answer = self.process.stdout.readline()
            except (OSError, ValueError) as e:
                raise ZygoteError(f"the kernel zygote stopped answering: {e}") from None
        if not answer:
            raise ZygoteError("the kernel zygote exited")
        said = json.loads(answer)
        if "pid" not in said:
            raise ZygoteError(f"the kernel zygote could not fork: {said.get('error')}")
        return int(said["pid"])

    def preload(self, modules: tuple[str, ...]) -> None:
        """Have the zygote import ``modules`` before its next fork (no answer is awaited: requests
        are read in order, so the next kernel forked has them)."""
        with self._lock:
            if not self.alive or self.process.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.write(json.dumps({"preload": list(modules)}) + "\n")
                self.process.stdin.flush()

    def close(self) -> None:
        with self._lock:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            if self.alive:
                self.process.kill()


_shared: Zygote | None = None
_shared_lock = threading.Lock()


def shared() -> Zygote | None:
    """This process's zygote, started on first use (None where kernels cannot be forked)."""
    global _shared
    if not SUPPORTED:
        return None
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = Zygote()
            import atexit

            atexit.register(_shared.close)
        return _shared


class ForkedProcess:
    """A kernel forked by the zygote, with the part of :class:`subprocess.Popen` jupyter_client uses."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                # Reaped by the zygote; its exit status went there. Gone is what matters here.
                self.returncode = 0
            except PermissionError:  # pragma: no cover - a reused pid of another user
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(getattr(signal, "SIGKILL", signal.SIGTERM))


# --- the zygote itself ------------------------------------------------------------------------------


# What an IPKernelApp imports as it initializes (its shell, debugger, streams, magics): imported
# in the zygote, a forked kernel is answering in some 30 ms rather than 150.
_KERNEL_MODULES = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
    "ipykernel.heartbeat", "ipykernel.iostream", "ipykernel.parentpoller", "ipykernel.comm",
    "IPython.core.completerlib", "IPython.core.debugger", "IPython.core.oinspect",
    "IPython.extensions.storemagic", "tornado.platform.asyncio", "faulthandler",
    "psbridge.runbook.kerneltune", "psbridge.runbook.kernelmain",
    "IPython.core.logger",  # imported by a kernel's first cell otherwise (its shell's logger, made lazily)
)


# What the steps import as they run, beyond their own modules (measured with py-spy over a run:
# each of these cost every forked kernel 10–100 ms): the CRM Web API client, httpx's transport,
# cryptography's OpenSSL backend, the codecs PSRP's UTF-16 strings use, netrc (requests reads it).
STEP_MODULES = (
    "psbridge.runbook", "psbridge.runbook.deployment", "psbridge.remote.session", "psbridge.crm",
    "psbridge.crm.webapi", "psbridge.cloud", "psbridge.certs", "httpx", "httpcore",
    "cryptography.hazmat.backends.openssl", "encodings.utf_16_le", "encodings.utf_16_be", "netrc",
    "msal_extensions", "psbridge.runbook.timing", "psbridge.runbook.throttles",
)

# A run against the lab reads its lab.json and its ``lab:`` secrets in every step: the runner asks
# for these (:meth:`Zygote.preload`) only then, so that a customer's run loads nothing of the lab.
LAB_MODULES = ("psbridge.lab.config", "psbridge.lab.secretstore")


def _import_all(names: list[str] | tuple[str, ...]) -> None:
    import importlib

    for name in names:
        # One that cannot be imported here fails in the step that needs it, with its own message.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _preload() -> None:
    """Everything a step kernel imports, imported once here (no code of a step runs)."""
    import importlib
    import pkgutil

    # debugpy (imported by ipykernel's debugger) warns about frozen modules on every import;
    # step kernels are not debugged.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for name in _KERNEL_MODULES:
        importlib.import_module(name)

    import psbridge.runbook.steps as steps

    for found in pkgutil.iter_modules(steps.__path__, steps.__name__ + "."):
        importlib.import_module(found.name)
    _import_all(STEP_MODULES)


# What a kernel's command line and configuration files say, read in the zygote once for the
# kernels it forks rather than by each of them: parsing the command line alone builds an argparse
# parser of every option of every configurable class, 10 ms of a forked kernel's 40 ms start.
# It is read as the kernel would read it, in the request's folder (where some IPython releases
# look for config files) and environment (IPYTHONDIR, HOME), and used only for requests with that
# folder and an environment the same but for psbridge's own variables, which IPython does not read.
# A config file runs here, then, not in each kernel.
_prepared: tuple[str, tuple[tuple[str, str], ...]] | None = None
# psbridge's own environment variables: a run's (its journal, its timings, the lab's state), read by
# psbridge alone and never as a kernel starts, so two kernels that differ only in them start alike.
OWN_PREFIX = "PSBRIDGE_"


def _config_key(request: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    env = request["env"]
    return str(request["cwd"]), tuple(sorted((k, v) for k, v in env.items() if not k.startswith(OWN_PREFIX)))


def _kernel_app_class() -> Any:
    from copy import deepcopy

    from psbridge.runbook.kernelmain import RunbookKernelApp

    class PreparedKernelApp(RunbookKernelApp):  # type: ignore[misc]
        """An IPKernelApp whose command line and config files were read before it forked
        (:meth:`prepare`); its ``initialize`` then reads them no more and does the rest."""

        prepared = False

        def prepare(self, argv: list[str]) -> None:
            # What BaseIPythonApplication.initialize does first, in its order; the crash
            # handler stays the child's (initialize installs it).
            self.parse_command_line(argv)
            from_command_line = deepcopy(self.config)
            self.init_profile_dir()
            self.init_config_files()  # type: ignore[no-untyped-call]
            self.load_config_file()  # type: ignore[no-untyped-call]
            self.update_config(from_command_line)  # the command line wins over config files
            self.prepared = True

        def parse_command_line(self, argv: Any = None) -> None:
            if not self.prepared:
                super().parse_command_line(argv)

        def init_profile_dir(self) -> None:
            if not self.prepared:
                super().init_profile_dir()  # type: ignore[no-untyped-call]

        def init_config_files(self) -> None:
            if not self.prepared:
                super().init_config_files()  # type: ignore[no-untyped-call]

        def load_config_file(self, *args: Any, **kwargs: Any) -> None:
            if not self.prepared:
                super().load_config_file(*args, **kwargs)  # type: ignore[no-untyped-call]

    return PreparedKernelApp


def _forget_app() -> None:
    """No kernel application left as the singleton. traitlets keeps the instance on every class of
    its own class's MRO, and a class's ``clear_instance`` clears only that class and its bases: an
    instance of a subclass stays on the subclass, for its ``instance()`` to hand out again."""
    from ipykernel.kernelapp import IPKernelApp

    if IPKernelApp.initialized():
        type(IPKernelApp.instance()).clear_instance()


def _prepare(request: dict[str, Any]) -> None:
    """In the zygote, before it forks for ``request``: the kernel app prepared for its folder and
    environment, unless it is already. Where that fails, each kernel reads them itself."""
    global _prepared
    key = _config_key(request)
    if _prepared == key:
        return
    from psbridge.runbook.kerneltune import KERNEL_ARGS

    _prepared = None
    _forget_app()
    here, environ = os.getcwd(), dict(os.environ)
    try:
        os.chdir(key[0])
        os.environ.clear()
        os.environ.update(request["env"])
        _kernel_app_class().instance().prepare(list(KERNEL_ARGS))
        _prepared = key
    except Exception:  # the kernel reads its configuration itself, and says what is wrong
        _forget_app()
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(here)


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the kernel the request asks for; never returns."""
    code = 1
    try:
        os.setsid()
        # The zygote's pipes are replaced, not closed through their file objects (the zygote
        # still owns those buffers): descriptors 0, 1 and 2 become the kernel's own.
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) \
            if request.get("stderr") else null
        os.dup2(err, 1)
        os.dup2(err, 2)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # an interrupt stops the cell
        env = dict(request["env"])
        # The kernel leaves when the zygote does (ipykernel polls its parent), and the zygote
        # when the runner does (its standard input closes).
        env["JPY_PARENT_PID"] = str(os.getppid())
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        # A PYTHONPATH the runner set for this kernel counts as it would at interpreter start.
        for entry in reversed([e for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        from ipykernel.kernelapp import IPKernelApp

        from psbridge.runbook.kernelmain import RunbookKernelApp
        from psbridge.runbook.kerneltune import KERNEL_ARGS

        # parent_handle is read from JPY_PARENT_PID when ipykernel is imported — in the zygote,
        # before any kernel had a parent to watch — so it is given here: without it the kernel
        # would outlive a zygote (and a runner) killed with SIGKILL.
        if _prepared == _config_key(request):
            app = IPKernelApp.instance()  # the runner's kernel arguments read already (_prepare)
            app.connection_file = request["connection_file"]
            app.parent_handle = os.getppid()
            app.initialize([])  # type: ignore[no-untyped-call]
        else:
            _forget_app()
            app = RunbookKernelApp.instance()  # the application an ordinary start runs
            # The runner's kernel arguments, as an ordinary start has them (psbridge.runbook.kerneltune).
            app.initialize(["-f", request["connection_file"], *KERNEL_ARGS,  # type: ignore[no-untyped-call]
                            f"--IPKernelApp.parent_handle={os.getppid()}"])
        app.start()  # type: ignore[no-untyped-call]
        code = 0
    except BaseException:
        traceback.print_exc()  # to the kernel's standard error: kernels.log of the run
    finally:
        os._exit(code)


def _reap(*_: Any) -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return


def _freeze() -> None:
    """Move what the imports made out of the garbage collector's reach: a child's collections
    then neither walk nor write to the pages it shares with the zygote (each write would copy one)."""
    import gc

    gc.collect()
    gc.freeze()


def main() -> None:
    _preload()
    _freeze()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the runner's to handle
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if "preload" in request:
                _import_all([str(n) for n in request["preload"]])
                _freeze()
                continue
            _prepare(request)
            pid = os.fork()
        except (ValueError, OSError) as e:
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
            continue
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    main()
