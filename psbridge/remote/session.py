"""One PowerShell runspace pool on one server, reused for every command: :class:`Session`.

Opening a pool costs several round trips and an authentication, so a session opens it once and
runs every command through it. Commands are data (:mod:`psbridge.remote.command`), sent with
pypsrp's ``add_cmdlet``/``add_parameter``. Each call has a timeout after which the remote
pipeline is stopped; Ctrl-C stops it too. When the connection drops, a read-only command is
re-sent once on a fresh pool; a state-changing one never is, because it may already have run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import requests
from psrpcore.types import PSInvocationState
from pypsrp.exceptions import AuthenticationError, WinRMError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import TaggedValue
from pypsrp.shell import SignalCode
from pypsrp.wsman import WSMan

from psbridge import intents
from psbridge.remote._pypsrp import session_cipher
from psbridge.remote.command import Cmd, Pipeline, SecureString, as_statements, display
from psbridge.remote.errors import (
    AuthenticationFailed,
    CommandFailed,
    CommandRefused,
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    ScriptFailed,
)
from psbridge.remote.profile import ConnectionProfile
from psbridge.remote.result import Result, build_result
from psbridge.secrets import Secret, redact

log = logging.getLogger(__name__)

# ERROR_WSMAN_OPERATION_TIMEDOUT: a Receive found nothing new within its operation timeout.
_WSMAN_TIMEOUT = 0x80338029
_FAILED_MARKER = "Process Failed."

# pypsrp's WSMan.__init__ registers its XML prefixes in ElementTree's process-wide namespace map
# every time; two constructions in two threads race on that dict ("dictionary keys changed
# during iteration"). Every WSMan of this process is built under one lock: use new_wsman().
_WSMAN_INIT = threading.Lock()


def new_wsman(server: str, **kwargs: Any) -> WSMan:
    """``pypsrp.wsman.WSMan(server, **kwargs)``, built under the process-wide lock (``_WSMAN_INIT``)."""
    with _WSMAN_INIT:
        return WSMan(server, **kwargs)


@dataclass(frozen=True)
class JournalEntry:
    """One thing the session did that a change record should show."""

    time: dt.datetime
    server: str
    event: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(), "server": self.server, "event": self.event, "detail": self.detail,
        }


@dataclass
class _Pool:
    wsman: WSMan
    pool: RunspacePool
    keys_exchanged: bool = False
    broken: bool = False
    opened_at: float = field(default_factory=time.monotonic)


class Session:
    """A PowerShell session on one server.

    >>> with Session(profile) as s:
    ...     org = s.invoke("Get-CrmOrganization", Name="contoso").scalar()

    ``invoke`` returns a :class:`Result`; a terminating error raises :class:`CommandFailed`
    (``check=False`` returns the failed Result instead). ``run_script`` also reads
    ``$LASTEXITCODE`` and raises :class:`ScriptFailed` when the script says it failed.
    """

    def __init__(self, profile: ConnectionProfile, *, open: bool = False) -> None:
        self.profile = profile
        self.journal: list[JournalEntry] = []
        self.on_running: Callable[[Session, str], None] | None = None
        self._pool: _Pool | None = None
        self._lock = threading.RLock()
        self.pools_opened = 0
        # Commands every new pool runs first (Add-PSSnapin): a reconnect must not lose them.
        self._initializers: list[tuple[Cmd, str | None]] = []
        for note in profile.security_notes:
            self._record("security", note)
        if open:
            self.open()

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return self.profile.server

    @property
    def is_open(self) -> bool:
        return self._pool is not None and not self._pool.broken

    def open(self) -> Session:
        with self._lock:
            if self._pool is None or self._pool.broken:
                self._discard_pool()
                self._pool = self._open_pool()
                try:
                    for cmd, already_done in self._initializers:
                        self._initialize(cmd, already_done)
                except BaseException:
                    self.close()
                    raise
            return self

    def on_open(self, cmd: Cmd, *, already_done: str | None = None) -> None:
        """Run ``cmd`` on this pool now (if open) and first thing on every pool opened later.

        For state a runspace keeps, such as a loaded snap-in: after a dropped connection the
        new pool gets it again before any other command. ``already_done`` is the start of the
        FullyQualifiedErrorId with which the command says its work was done before (a script
        may have loaded the snap-in already): such an error is not a failure.
        """
        with self._lock:
            if any(c == cmd for c, _ in self._initializers):
                return
            if self.is_open:
                self._initialize(cmd, already_done)
            self._initializers.append((cmd, already_done))

    def _initialize(self, cmd: Cmd, already_done: str | None) -> None:
        result = self._run_once([Pipeline((cmd,))], cmd.display(), self.profile.command_timeout, None)
        errors = [e for e in result.errors if not (already_done and e.fqid.startswith(already_done))]
        if result.state == "Failed" or errors:
            raise CommandFailed(result, errors[-1] if errors else None)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            if pool is None:
                return
            try:
                if not pool.broken:
                    pool.pool.close()
            except (WinRMError, requests.RequestException, OSError) as e:
                log.debug("closing the pool on %s: %s", self.server, e)
            finally:
                pool.wsman.close()
            self._record("close", "runspace pool closed")

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<Session {self.server} {self.profile.endpoint} {state}>"

    def _open_pool(self) -> _Pool:
        try:
            return self._open_pool_once()
        except _Dropped as e:
            # The server closed the connection before answering: opening a pool is safe to try
            # again once (a shell it may have made without telling us times out on its own).
            log.info("%s: %s; opening the pool once more", self.server, e)
            self._record("retry", f"the connection dropped while opening the pool ({e}); opened again")
            try:
                return self._open_pool_once()
            except _Dropped as again:
                raise ConnectError(str(again)) from None

    def _open_pool_once(self) -> _Pool:
        p = self.profile
        password = p.resolve_password()
        wsman = new_wsman(**p.wsman_kwargs(password))
        pool = RunspacePool(wsman, configuration_name=p.configuration_name, min_runspaces=1, max_runspaces=1)
        try:
            pool.open()
        except AuthenticationError:
            wsman.close()
            raise AuthenticationFailed(
                f"{p.server} ({p.endpoint}) refused the credentials of {p.user} ({p.auth}); "
                f"check the account and the secret {p.password}"
            ) from None
        except requests.exceptions.SSLError as e:
            wsman.close()
            raise ConnectError(
                f"TLS with {p.endpoint} failed: {_short(e)}. The server's certificate is not trusted; "
                "give its CA as ca_bundle (turning cert_validation off is possible but is recorded)"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            wsman.close()
            if _was_dropped(e):
                raise _Dropped(f"the connection to {p.server} ({p.endpoint}) dropped: {_short(e)}") from None
            raise ConnectError(f"cannot reach {p.server} at {p.endpoint}: {_short(e)}") from None
        except (WinRMError, OSError) as e:
            wsman.close()
            raise ConnectError(
                f"opening a PowerShell session on {p.endpoint} failed: {redact(str(e))}"
            ) from None
        self.pools_opened += 1
        # Who acted on the server, for the run page (nothing is written outside a run).
        intents.acted_as("winrm", p.user or "the current Windows user", p.server)
        notes = "; ".join(p.security_notes)
        self._record(
            "open",
            f"runspace pool opened on {p.endpoint} as {p.user or 'current user'} ({p.auth}"
            f"{', message encryption' if p.scheme == 'http' else ', TLS'}){'; ' + notes if notes else ''}",
        )
        return _Pool(wsman, pool)

    def _discard_pool(self) -> None:
        if self._pool is not None:
            # A broken transport may fail to close (what close() itself tolerates); it is dropped anyway.
            with contextlib.suppress(WinRMError, requests.RequestException, OSError):
                self._pool.wsman.close()
            self._pool = None

    # --- commands ----------------------------------------------------------------------------

    def invoke(
        self,
        command: str | Cmd | Pipeline | Sequence[Cmd | Pipeline],
        /,
        *,
        timeout: float | None = None,
        retry: bool | None = None,
        check: bool = True,
        input: list[Any] | None = None,  # PowerShell's own name for pipeline input
        **params: Any,
    ) -> Result:
        """Run a command (or pipeline, or statements) and return its :class:`Result`.

        ``timeout`` defaults to the profile's ``command_timeout``. ``retry`` says whether the
        command may be re-sent once after a dropped connection; by default only read-only
        pipelines (Get-, Test-, Select-Object, ...) are.
        """
        statements = as_statements(command, params)
        text = display(statements)
        may_retry = all(s.read_only for s in statements) if retry is None else retry
        limit = self.profile.command_timeout if timeout is None else timeout
        with self._lock:
            try:
                result = self._run_once(statements, text, limit, input)
            except ConnectionLost as lost:
                if not may_retry:
                    raise
                self._record(
                    "retry", f"connection dropped during read-only {text}; re-sent once on a new pool"
                )
                log.info("%s: %s; re-sending once on a new pool", self.server, lost)
                result = self._run_once(statements, text, limit, input)
        if check and result.state == "Failed":
            raise CommandFailed(result)
        return result

    def run_script(
        self,
        path: str | PurePath,
        /,
        *,
        timeout: float | None = None,
        check: bool = True,
        **params: Any,
    ) -> Result:
        """Run a script by its path on the server, with parameters, and read ``$LASTEXITCODE``.

        Scripts report failure by ``exit N`` and a "Process Failed." message while the pipeline
        completes normally, so the exit code is reset before and read after, in the same pool.
        With ``check`` a non-zero exit code or the failure message raises :class:`ScriptFailed`.
        Never retried: a script changes things.
        """
        script = str(path)
        with self._lock:
            # A script that ends without `exit` leaves $LASTEXITCODE as it was: reset it first.
            self.invoke(Cmd("Set-Variable", Name="LASTEXITCODE", Value=0), retry=False)
            result = self.invoke(Cmd(script, **params), timeout=timeout, retry=False, check=False)
            code = self.invoke(Cmd("Get-Variable", Name="LASTEXITCODE", ValueOnly=True), retry=False).output
        result.exit_code = int(code[-1]) if code and code[-1] is not None else None
        if check:
            if result.state == "Failed":
                raise CommandFailed(result)
            if result.exit_code or any(m.strip() == _FAILED_MARKER for m in result.messages()):
                raise ScriptFailed(result, script)
        return result

    def _run_once(
        self, statements: list[Pipeline], text: str, timeout: float | None, input: list[Any] | None
    ) -> Result:
        pool = self.open()._pool
        assert pool is not None
        ps = PowerShell(pool.pool)
        for i, statement in enumerate(statements):
            if i:
                ps.add_statement()
            for c in statement.commands:
                ps.add_cmdlet(c.name)
                for a in c.args:
                    ps.add_argument(self._wire_value(pool, a))
                for k, v in c.params:
                    ps.add_parameter(k, self._wire_value(pool, v))
        started = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        sent = False
        try:
            ps.begin_invoke(input=_one_batch([self._wire_value(pool, i) for i in input]) if input else None)
            sent = True
            if self.on_running is not None:
                self.on_running(self, text)
            stopped = self._wait(ps, pool, t0, timeout)
        except KeyboardInterrupt:
            self._stop(ps, pool, "Ctrl-C")
            self._record("stop", f"{text} stopped by Ctrl-C")
            raise
        except (*_DROPPED, AuthenticationError) as e:
            # A 401 in the middle of a pool's life is a connection that dropped and came back
            # unauthenticated (the NTLM context belongs to the old socket), not a wrong password.
            pool.broken = True
            self._discard_pool()
            raise ConnectionLost(
                f"the connection to {self.server} dropped while running {text}"
                + (": it may or may not have completed; check before running it again" if sent else ""),
                command=text,
                may_have_run=sent,
            ) from e
        except WSManFaultError as e:
            raise CommandRefused(f"{self.server} refused {text}: {redact(str(e.reason or e))}") from None
        duration = dt.timedelta(seconds=time.monotonic() - t0)
        result = build_result(
            ps, text, self.server, started, duration, cipher=session_cipher(pool.pool),
            state="Stopped" if stopped else None,
        )
        if not stopped:
            self._close_pipeline(ps, pool)
        if stopped:
            self._record("stop", f"{text} stopped after its timeout of {timeout:g} s")
            raise CommandTimeout(result, timeout or 0)
        return result

    def _wait(self, ps: PowerShell, pool: _Pool, t0: float, timeout: float | None) -> bool:
        """Poll until the pipeline ends; True when it had to be stopped for its timeout."""
        op = self.profile.operation_timeout
        while ps.state == PSInvocationState.Running:
            if timeout is not None:
                remaining = timeout - (time.monotonic() - t0)
                if remaining <= 0:
                    self._stop(ps, pool, "timeout")
                    return True
                op = max(1, min(self.profile.operation_timeout, math.ceil(remaining)))
            ps.poll_invoke(timeout=op)
        return False

    def _stop(self, ps: PowerShell, pool: _Pool, why: str) -> None:
        try:
            if ps.state == PSInvocationState.Running:
                ps.stop()
        except (WinRMError, requests.RequestException, OSError, KeyboardInterrupt) as e:
            # The pool cannot be trusted any more: the next command opens a new one.
            log.warning("stopping the pipeline on %s (%s) failed: %s", self.server, why, e)
            pool.broken = True
            self._stop_on_a_new_connection(ps, pool)
            self._discard_pool()

    def _stop_on_a_new_connection(self, ps: PowerShell, pool: _Pool) -> None:
        """Ctrl-C inside a Receive breaks that request's connection, and the NTLM/Kerberos context
        the server bound to it: the stop must go on a new connection, or the pipeline runs on.
        The pool's shell is closed there too, as the pool is given up."""
        shell = pool.pool.shell
        used = shell.wsman
        try:
            fresh = new_wsman(**self.profile.wsman_kwargs(self.profile.resolve_password()))
        except (WinRMError, requests.RequestException, OSError) as e:
            log.warning("no new connection to %s to stop the pipeline: %s", self.server, e)
            return
        shell.wsman = fresh
        try:
            shell.signal(SignalCode.PS_CTRL_C, str(ps.id).upper())
            shell.close()
        except (WinRMError, requests.RequestException, OSError) as e:
            log.warning("stopping the pipeline on %s on a new connection failed: %s", self.server, e)
        finally:
            shell.wsman = used
            with contextlib.suppress(Exception):
                fresh.close()

    def _close_pipeline(self, ps: PowerShell, pool: _Pool) -> None:
        try:
            ps.close()
        except (WinRMError, requests.RequestException, OSError) as e:
            log.debug("closing a pipeline on %s: %s", self.server, e)

    def _wire_value(self, pool: _Pool, value: Any) -> Any:
        if isinstance(value, SecureString):
            if not pool.keys_exchanged:
                pool.pool.exchange_keys()
                pool.keys_exchanged = True
                self._record("keys", "session key exchanged for SecureString parameters")
            return TaggedValue("SS", value.secret.reveal())
        if isinstance(value, Secret):
            return value.reveal()
        if isinstance(value, PurePath):
            return str(value)
        if isinstance(value, float):
            return TaggedValue("Db", value)  # pypsrp would send a float as Single and lose digits
        if isinstance(value, dt.datetime):
            return value.isoformat()  # PowerShell binds an ISO 8601 string to [datetime]
        if isinstance(value, list | tuple):
            return [self._wire_value(pool, v) for v in value]
        return value

    # --- file transfer (see psbridge.remote.transfer) -----------------------------------------

    @property
    def max_payload_size(self) -> int:
        """Bytes of base64 that fit one WSMan envelope on this pool."""
        pool = self.open()._pool
        assert pool is not None
        return int(pool.wsman.max_payload_size)

    def upload(self, local: Any, remote: str | PurePath, **kwargs: Any) -> Any:
        from psbridge.remote.transfer import upload

        return upload(self, local, remote, **kwargs)

    @contextmanager
    def uploaded(self, local: Any, remote: str | PurePath, **kwargs: Any) -> Iterator[Any]:
        from psbridge.remote.transfer import uploaded

        with uploaded(self, local, remote, **kwargs) as receipt:
            yield receipt

    # --- record ------------------------------------------------------------------------------

    def _record(self, event: str, detail: str) -> None:
        entry = JournalEntry(dt.datetime.now(dt.UTC), self.server, event, redact(detail))
        self.journal.append(entry)
        log.info("%s %s: %s", entry.server, event, entry.detail)

    def record(self, event: str, detail: str) -> None:
        """Add an entry to the journal (operations built on the session use this)."""
        self._record(event, detail)

    def journal_frame(self) -> Any:
        import pandas as pd

        columns = ["time", "server", "event", "detail"]
        return pd.DataFrame([e.as_dict() for e in self.journal], columns=columns)


# A read timeout leaves the command's fate as unknown as a reset connection does.
_DROPPED = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionResetError,
    BrokenPipeError,
)


class _Dropped(ConnectError):
    """The server closed the connection without an answer (not: could not be reached at all)."""


def _was_dropped(e: BaseException) -> bool:
    # requests wraps urllib3's wrap of http.client's RemoteDisconnected or a reset: look inside.
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ConnectionResetError | BrokenPipeError) or type(seen).__name__ in (
                "RemoteDisconnected", "ProtocolError"):
            return True
        args = getattr(seen, "args", ())
        inner = next((a for a in args if isinstance(a, BaseException)), None)
        seen = inner or seen.__cause__ or seen.__context__
    return False


def _one_batch(values: list[Any]) -> Iterator[list[Any]]:
    # pypsrp sends each item a generator yields as one Send; the whole input fits one.
    yield values


def _short(e: BaseException) -> str:
    text = redact(str(e))
    return text if len(text) <= 200 else text[:200] + "..."

