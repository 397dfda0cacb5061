"""Secret references and the masked :class:`Secret` value.

A secret is written down anywhere (parameters, notebooks, manifests, logs) only as a
*reference*: ``scheme:locator``. The value is fetched at the last moment, wrapped in
:class:`Secret` whose ``str``/``repr`` are masked, and unwrapped with :meth:`Secret.reveal`
only at the call that needs it (a PowerShell parameter, an msal call).

Schemes form a registry, like papermill's I/O handlers: ``env:NAME``, ``file:PATH``,
``keyring:SERVICE/NAME`` and ``lab:NAME`` (the embedded lab's own store) are built in;
:func:`register_backend` adds more (a vault, a password manager).

Every revealed value is remembered for this process so that :func:`redact` can scrub it
from any text about to be written (tracebacks, captured streams): a second line of defence
behind "never format a secret into text".
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from psbridge import files, secretforms
from psbridge.errors import SecretError as SecretError  # re-exported for its callers

MASK = "********"

_REF_RE = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*):(?P<locator>.+)$", re.DOTALL)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: ``scheme:locator``. Safe to print, store and compare."""

    scheme: str
    locator: str

    @classmethod
    def parse(cls, text: str | SecretRef) -> SecretRef:
        if isinstance(text, SecretRef):
            return text
        if not isinstance(text, str):
            raise SecretError(f"a secret reference must be text like 'env:NAME', not {type(text).__name__}")
        m = _REF_RE.match(text.strip())
        if not m:
            raise SecretError(
                "not a secret reference: expected 'scheme:locator' such as 'env:NAME', "
                "'file:PATH', 'keyring:SERVICE/NAME' or 'lab:NAME'"
            )
        scheme, locator = m.group("scheme"), m.group("locator")
        if not _known(scheme):
            # Not even the scheme is repeated: "hunter:2" may be the password itself.
            known = ", ".join(f"{k}:" for k in sorted(_BACKENDS))
            raise SecretError(f"not a secret reference: its scheme is none of {known}")
        _BACKENDS[scheme].check(locator)
        return cls(scheme, locator)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.locator}"

    def resolve(self) -> Secret:
        return resolve(self)


class Secret:
    """A secret value whose text forms are masked. ``reveal()`` hands the value out."""

    __slots__ = ("_value", "ref")

    def __init__(self, value: str, ref: SecretRef | str | None = None) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        self._value = value
        self.ref = SecretRef.parse(ref) if isinstance(ref, str) else ref

    def reveal(self) -> str:
        _remember(self._value)
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        where = f" from {self.ref}" if self.ref else ""
        return f"Secret({MASK}{where})"

    def __format__(self, spec: str) -> str:
        return MASK

    def _repr_html_(self) -> str:
        return f"<code>{self!r}</code>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would put the value in a byte stream that nobody redacts.
        raise TypeError("a Secret cannot be pickled; pass its reference instead")


class SecretBackend(Protocol):
    """One scheme of secret references."""

    writable: bool

    def check(self, locator: str) -> None:
        """Raise SecretError if the locator is malformed (no I/O)."""

    def get(self, locator: str) -> str: ...

    def put(self, locator: str, value: str) -> None: ...

    def delete(self, locator: str) -> None: ...


_BACKENDS: dict[str, SecretBackend] = {}


# Backends that live elsewhere, imported the first time their scheme is used: the lab's own
# (``lab:``), which the lab registers when imported, so that the product imports nothing of the
# lab until a lab reference is met.
_LAZY = {"lab": "psbridge.lab.secretstore"}
ENTRY_POINTS = "psbridge.secret_backends"


def register_backend(scheme: str, backend: SecretBackend) -> None:
    """Add (or replace) the backend for ``scheme:`` references."""
    _BACKENDS[scheme] = backend


def _known(scheme: str) -> bool:
    """Whether ``scheme:`` has a backend, loading it if it is one known to live elsewhere.

    Another package adds a scheme through the ``psbridge.secret_backends`` entry-point group:
    ``vault = "mypackage.secrets:VaultBackend"`` (a class, made once, or an instance).
    """
    if scheme in _BACKENDS:
        return True
    import importlib

    if scheme in _LAZY:
        importlib.import_module(_LAZY[scheme])
        return scheme in _BACKENDS
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS, name=scheme):
        loaded = ep.load()
        register_backend(scheme, loaded() if isinstance(loaded, type) else loaded)
        return True
    return False


def backend(scheme: str) -> SecretBackend:
    """The backend of ``scheme:`` references (SecretError if there is none)."""
    if not _known(scheme):
        raise SecretError(f"no secret backend for '{scheme}:'")
    return _BACKENDS[scheme]


def resolve(ref: SecretRef | str) -> Secret:
    """Read the value a reference names, as a masked :class:`Secret`."""
    r = SecretRef.parse(ref)
    value = _BACKENDS[r.scheme].get(r.locator)
    _remember(value)
    return Secret(value, r)


def store(ref: SecretRef | str, value: str | Secret) -> SecretRef:
    """Write a value where ``ref`` points (a secret a step created goes straight here)."""
    r = SecretRef.parse(ref)
    backend = _BACKENDS[r.scheme]
    if not backend.writable:
        raise SecretError(f"secret references with scheme '{r.scheme}:' cannot be written to ({r})")
    plain = value.reveal() if isinstance(value, Secret) else value
    _remember(plain)
    from psbridge.intents import intent  # the journal reads this module: imported here, not above

    with intent("store-secret", str(r), f"a secret value stored at {r}"):
        backend.put(r.locator, plain)
    return r


def delete(ref: SecretRef | str) -> None:
    """Remove a stored secret (a writable scheme); missing is not an error."""
    r = SecretRef.parse(ref)
    backend = _BACKENDS[r.scheme]
    if not backend.writable:
        raise SecretError(f"secret references with scheme '{r.scheme}:' cannot be deleted ({r})")
    from psbridge.intents import intent

    with intent("delete-secret", str(r), f"the secret value at {r} deleted"):
        backend.delete(r.locator)


def is_reference(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        SecretRef.parse(text)
    except SecretError:
        return False
    return True


# --- redaction ---------------------------------------------------------------------------

_seen: set[str] = set()
_seen_lock = threading.Lock()
# Very short values would turn ordinary words into asterisks; they are still masked by type.
_MIN_REDACT = 4
# Every form of every value seen, longest first; rebuilt only when a new value is seen.
_forms: list[str] = []
_forms_of: frozenset[str] = frozenset()


def _remember(value: str) -> None:
    if len(value) >= _MIN_REDACT:
        with _seen_lock:
            _seen.add(value)


def remember(values: Iterable[str]) -> None:
    """Tell the redactor about values known by other means (e.g. a lab's passwords)."""
    for v in values:
        _remember(v)


def _current_forms() -> list[str]:
    global _forms, _forms_of
    with _seen_lock:
        if _forms_of != _seen:
            _forms_of = frozenset(_seen)
            _forms = sorted(secretforms.all_forms(_forms_of), key=len, reverse=True)
        return _forms


def redact(text: str, keep: Iterable[str] = ()) -> str:
    """Replace every secret value this process has handled with the mask, in every form.

    The forms are those of :mod:`psbridge.secretforms`: as written, ``repr``/JSON/HTML/URL
    escaped (stacked as a notebook stacks them), UTF-16LE, base64 and hex. Texts in ``keep``
    (this run's secret references) stay whole even when a short value seen elsewhere is part
    of them: a record must say where its secrets live.
    """
    if not text:
        return text
    kept = [k for k in sorted(set(keep), key=len, reverse=True) if k and k in text]
    for i, k in enumerate(kept):
        text = text.replace(k, f"\0{i}\0")
    # One substring search a form is several times faster than one regex alternation of them all.
    for form in _current_forms():
        if form in text:
            text = text.replace(form, MASK)
    for i, k in enumerate(kept):
        text = text.replace(f"\0{i}\0", k)
    return text


# --- built-in backends --------------------------------------------------------------------


class EnvBackend:
    writable = False
    _NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

    def check(self, locator: str) -> None:
        if not self._NAME.match(locator):
            raise SecretError("an env: reference names an environment variable (letters, digits and _, "
                              "not starting with a digit)")

    def get(self, locator: str) -> str:
        try:
            return os.environ[locator]
        except KeyError:
            raise SecretError(f"environment variable {locator} is not set (secret env:{locator})") from None

    def put(self, locator: str, value: str) -> None:  # pragma: no cover - not writable
        raise SecretError("env: references are read-only")

    def delete(self, locator: str) -> None:  # pragma: no cover - not writable
        raise SecretError("env: references are read-only")


class FileBackend:
    """``file:PATH``: the whole file is the secret (trailing newline dropped)."""

    writable = True

    def check(self, locator: str) -> None:
        if not locator.strip():
            raise SecretError("'file:' needs a path")

    def get(self, locator: str) -> str:
        p = Path(locator).expanduser()
        try:
            return p.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise SecretError(f"secret file not found (secret file:{locator})") from None
        except OSError as e:
            raise SecretError(f"cannot read secret file:{locator}: {e.strerror}") from None

    def put(self, locator: str, value: str) -> None:
        _write_private(Path(locator).expanduser(), value)

    def delete(self, locator: str) -> None:
        Path(locator).expanduser().unlink(missing_ok=True)


class KeyringBackend:
    """``keyring:SERVICE/NAME``: the operating system's credential store."""

    writable = True

    def check(self, locator: str) -> None:
        service, sep, name = locator.partition("/")
        if not (service and sep and name):
            raise SecretError("a keyring: reference is written keyring:SERVICE/NAME")

    def get(self, locator: str) -> str:
        import keyring

        service, _, name = locator.partition("/")
        value = keyring.get_password(service, name)
        if value is None:
            raise SecretError(f"no secret stored in the keyring at keyring:{locator}")
        return value

    def put(self, locator: str, value: str) -> None:
        import keyring

        service, _, name = locator.partition("/")
        keyring.set_password(service, name, value)

    def delete(self, locator: str) -> None:
        import keyring
        import keyring.errors

        service, _, name = locator.partition("/")
        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            keyring.delete_password(service, name)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically (on Windows the mode is advisory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, text, private=True)


register_backend("env", EnvBackend())
register_backend("file", FileBackend())
register_backend("keyring", KeyringBackend())
