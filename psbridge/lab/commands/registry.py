"""Which commands a lab server knows, and what their parameters are.

A :class:`CommandSpec` is what ``Get-Command`` shows and what the binder binds against:
the real names, types, positions, aliases, parameter sets and mandatory flags.
Commands register themselves with :func:`cmdlet`; scripts are found by path
(:mod:`psbridge.lab.commands.scripts`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psbridge.lab.commands.runtime import Call

STRING = "System.String"
STRINGS = "System.String[]"
SECURE = "System.Security.SecureString"
SWITCH = "System.Management.Automation.SwitchParameter"
INT = "System.Int32"
GUID = "System.Guid"
OBJECT = "System.Object"
OBJECTS = "System.Object[]"
PSOBJECT = "System.Management.Automation.PSObject"
PSCREDENTIAL = "System.Management.Automation.PSCredential"
ALL_SETS = "__AllParameterSets"


@dataclass(frozen=True)
class Param:
    name: str
    type: str = STRING
    mandatory: bool = False
    position: int | None = None
    aliases: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()  # empty: every parameter set
    pipeline: bool = False  # ValueFromPipeline
    by_property_name: bool = False  # ValueFromPipelineByPropertyName
    choices: tuple[str, ...] = ()  # [ValidateSet(...)]
    enum: tuple[str, ...] = ()  # an enum type's names: binding converts by name
    not_null_or_empty: bool = False
    range: tuple[int, int] | None = None  # [ValidateRange(min, max)]
    help: str | None = None  # [Parameter(HelpMessage=...)]

    @property
    def is_switch(self) -> bool:
        return self.type == SWITCH

    def in_set(self, name: str) -> bool:
        return not self.sets or name in self.sets


def _action_preference() -> tuple[str, ...]:
    return ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")


COMMON: tuple[Param, ...] = (
    Param("Verbose", SWITCH, aliases=("vb",)),
    Param("Debug", SWITCH, aliases=("db",)),
    Param(
        "ErrorAction",
        "System.Management.Automation.ActionPreference",
        aliases=("ea",),
        enum=_action_preference(),
    ),
    Param(
        "WarningAction",
        "System.Management.Automation.ActionPreference",
        aliases=("wa",),
        enum=_action_preference(),
    ),
    Param(
        "InformationAction",
        "System.Management.Automation.ActionPreference",
        aliases=("infa",),
        enum=_action_preference(),
    ),
    Param("ErrorVariable", STRING, aliases=("ev",)),
    Param("WarningVariable", STRING, aliases=("wv",)),
    Param("InformationVariable", STRING, aliases=("iv",)),
    Param("OutVariable", STRING, aliases=("ov",)),
    Param("OutBuffer", INT, aliases=("ob",)),
    Param("PipelineVariable", STRING, aliases=("pv",)),
)
SHOULD_PROCESS: tuple[Param, ...] = (
    Param("WhatIf", SWITCH, aliases=("wi",)),
    Param("Confirm", SWITCH, aliases=("cf",)),
)


@dataclass
class CommandSpec:
    """One command as PowerShell describes it."""

    name: str
    params: tuple[Param, ...]
    run: Callable[[Call], None]
    type_name: str  # the implementing type, as in a FullyQualifiedErrorId
    kind: str = "Cmdlet"  # Cmdlet | ExternalScript
    source: str = "Microsoft.PowerShell.Core"  # snap-in or module
    default_set: str | None = None
    should_process: bool = False
    path: str | None = None  # for a script: its full path on the server
    needs_snapin: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def all_params(self) -> tuple[Param, ...]:
        return self.params + COMMON + (SHOULD_PROCESS if self.should_process else ())

    @property
    def set_names(self) -> list[str]:
        names: list[str] = [self.default_set] if self.default_set else []
        for p in self.params:
            for s in p.sets:
                if s not in names:
                    names.append(s)
        return names or [ALL_SETS]


CMDLETS: dict[str, CommandSpec] = {}


def cmdlet(
    name: str,
    type_name: str,
    *params: Param,
    source: str = "Microsoft.PowerShell.Core",
    default_set: str | None = None,
    should_process: bool = False,
    needs_snapin: str | None = None,
) -> Callable[[Callable[[Call], None]], Callable[[Call], None]]:
    """Register a command implementation under its PowerShell name."""

    def register(fn: Callable[[Call], None]) -> Callable[[Call], None]:
        CMDLETS[name.lower()] = CommandSpec(
            name=name,
            params=tuple(params),
            run=fn,
            type_name=type_name,
            source=source,
            default_set=default_set,
            should_process=should_process,
            needs_snapin=needs_snapin,
        )
        return fn

    return register
