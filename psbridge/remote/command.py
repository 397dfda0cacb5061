"""Commands as data: a cmdlet or script path, its parameters, pipelines and statements.

Nothing here ever becomes PowerShell *text*. A :class:`Cmd` is sent as a PSRP Command with its
parameters as typed values (pypsrp's ``add_cmdlet``/``add_parameter``), so a value full of
quotes, ``;``, ``$()`` or newlines arrives as that value and is never parsed by PowerShell.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from psbridge.errors import ParameterError
from psbridge.secrets import MASK, Secret

# Verbs whose commands only read. A pipeline made only of these may be re-sent after a dropped
# connection; anything else (Set-, New-, Remove-, a script) never is.
READ_ONLY_VERBS = frozenset({"get", "test", "select", "measure", "where", "sort", "format", "convertto"})


@dataclass(frozen=True)
class SecureString:
    """Send this secret as a System.Security.SecureString parameter (session key exchanged once)."""

    secret: Secret

    def __repr__(self) -> str:
        return f"SecureString({MASK})"


@dataclass(frozen=True)
class Cmd:
    """One command: ``Cmd("Get-CrmOrganization", Name="contoso")``.

    Keyword parameters keep their order. ``True`` sends a switch (``-Force``), ``None`` leaves a
    parameter out, ``args`` are positional arguments. ``Cmd(...) | Cmd(...)`` makes a pipeline.
    """

    name: str
    args: tuple[Any, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    def __init__(self, name: str, /, *args: Any, **params: Any) -> None:
        if not name or not name.strip():
            raise ParameterError("a command needs a name")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "params", tuple((k, v) for k, v in params.items() if v is not None))

    def __or__(self, other: Cmd | Pipeline) -> Pipeline:
        return Pipeline((self,)) | other

    @property
    def is_script_path(self) -> bool:
        return self.name.lower().endswith(".ps1")

    @property
    def read_only(self) -> bool:
        if self.is_script_path:
            return False
        verb, sep, _ = self.name.partition("-")
        return bool(sep) and verb.lower() in READ_ONLY_VERBS

    def display(self) -> str:
        """For people and records: never sent, secrets masked."""
        parts = [self.name]
        parts += [_show(a) for a in self.args]
        for k, v in self.params:
            parts.append(f"-{k}" if v is True else f"-{k} {_show(v)}")
        return " ".join(parts)


@dataclass(frozen=True)
class Pipeline:
    """Commands joined by ``|``: each one's output is the next one's input."""

    commands: tuple[Cmd, ...] = field(default_factory=tuple)

    def __or__(self, other: Cmd | Pipeline) -> Pipeline:
        more = (other,) if isinstance(other, Cmd) else other.commands
        return Pipeline(self.commands + more)

    def __iter__(self) -> Iterator[Cmd]:
        return iter(self.commands)

    @property
    def read_only(self) -> bool:
        return all(c.read_only for c in self.commands)

    def display(self) -> str:
        return " | ".join(c.display() for c in self.commands)


Command = str | Cmd | Pipeline | Sequence[Cmd | Pipeline]


def as_statements(command: Command, params: dict[str, Any]) -> list[Pipeline]:
    """Normalise what :meth:`Session.invoke` accepts into a list of statements."""
    if isinstance(command, str):
        return [Pipeline((Cmd(command, **params),))]
    if params:
        raise TypeError("keyword parameters go with a command name; build a Cmd for pipelines")
    if isinstance(command, Cmd):
        return [Pipeline((command,))]
    if isinstance(command, Pipeline):
        return [command]
    statements = [Pipeline((c,)) if isinstance(c, Cmd) else c for c in command]
    if not statements or any(not s.commands for s in statements):
        raise ParameterError("nothing to run")
    return statements


def display(statements: Sequence[Pipeline]) -> str:
    return "; ".join(s.display() for s in statements)


def _show(v: Any) -> str:
    if isinstance(v, Secret | SecureString):
        return MASK
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, str | PurePath):
        text = str(v)
        return "'" + text.replace("'", "''") + "'" if text else "''"
    if isinstance(v, bool):
        return "$true" if v else "$false"
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, list | tuple):
        return ",".join(_show(x) for x in v) or "@()"
    return str(v)
