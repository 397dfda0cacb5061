"""Running statements: command lookup, binding, streams, error actions, ``exit``.

Statements run in order; within a statement, each command's output is the next command's
input and the last command's output goes to the client, shaped as remoting serializes it.
A non-terminating error goes to the error stream unless ``-ErrorAction`` (or
``$ErrorActionPreference``) says ``Stop`` (then it ends the pipeline) or
``SilentlyContinue``/``Ignore``. A script's ``exit N`` sets ``$LASTEXITCODE`` and the
pipeline goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PureWindowsPath
from typing import Any, NoReturn

from psbridge.errors import TwinAnswer
from psbridge.lab.commands import errors
from psbridge.lab.commands.binder import Bound, bind
from psbridge.lab.commands.objects import for_wire
from psbridge.lab.commands.registry import CMDLETS, CommandSpec
from psbridge.lab.runspace import CommandContext, ErrorRecord, Invocation, ScriptExit, TerminatingError
from psbridge.lab.world import World

# Runspace state that is not a PowerShell variable (Get-Variable never lists it).
SNAPINS = "\x00snapins"
CRM_SNAPIN = "Microsoft.Crm.PowerShell"


class PipelineStopped(TwinAnswer):
    """The client stopped the pipeline: no script ``catch`` sees it, the pipeline just ends."""


class Call:
    """One command being run: its bound parameters, its input, and where it writes."""

    def __init__(
        self, ctx: CommandContext, spec: CommandSpec, bound: Bound, input: list[Any] | None, world: World
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.bound = bound
        self.input = input
        self.world = world
        self.output: list[Any] = []

    # --- parameters --------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return self.bound.has(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self.bound.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.bound[name]

    # --- streams -----------------------------------------------------------------------------

    def write(self, value: Any, enumerate_collection: bool = True) -> None:
        if enumerate_collection and isinstance(value, list | tuple) and not isinstance(value, bytes):
            self.output.extend(value)
        else:
            self.output.append(value)

    @property
    def error_action(self) -> str:
        if self.bound.has("ErrorAction"):
            return str(self.bound["ErrorAction"])
        pref = self.ctx.variables.get("ErrorActionPreference")
        return str(pref) if pref else "Continue"

    def error(self, record: ErrorRecord) -> None:
        """A non-terminating error (``WriteError``), as ``-ErrorAction`` wants it."""
        if not record.command_name:
            record.command_name = self.spec.name
        action = self.error_action.lower()
        if action == "stop":
            raise TerminatingError(record)
        if action in ("silentlycontinue", "ignore"):
            return
        self.ctx.write_error(record)

    def fail(self, record: ErrorRecord) -> NoReturn:
        if not record.command_name:
            record.command_name = self.spec.name
        raise TerminatingError(record)

    def host(self, text: str, foreground: str | None = None) -> None:
        self.ctx.write_host(text, foreground=foreground)

    def record(
        self,
        message: str,
        category: str,
        fqid: str,
        *,
        target: Any = None,
        exception: str = "System.InvalidOperationException",
    ) -> ErrorRecord:
        type_name = self.spec.name if self.spec.kind == "ExternalScript" else self.spec.type_name
        return errors.record(
            message, category, fqid, self.spec.name, type_name, target=target, exception=exception
        )

    # --- runspace state ----------------------------------------------------------------------

    def snapins(self) -> list[str]:
        loaded = self.ctx.variables.setdefault(SNAPINS, [])
        assert isinstance(loaded, list)
        return loaded

    def run(self, name: str, *params: tuple[str | None, Any], input: list[Any] | None = None) -> list[Any]:
        """Run another command from inside this one (as a script does), returning its output."""
        return invoke(self.ctx, Invocation(name, list(params)), input, self.world)


def find_command(ctx: CommandContext, name: str, world: World) -> CommandSpec | None:
    """A cmdlet by name (if its snap-in is loaded), or one of the Tools scripts by path."""
    from psbridge.lab.commands.scripts import script_at

    text = name.strip()
    spec = CMDLETS.get(text.lower())
    if spec is not None:
        if spec.needs_snapin and spec.needs_snapin not in ctx.variables.get(SNAPINS, []):
            return None
        return spec
    if "\\" in text or "/" in text or text.lower().endswith(".ps1"):
        return script_at(ctx, world, text)
    return None


def _injected_fault(ctx: CommandContext, name: str) -> str | None:
    faults = {k.lower(): v for k, v in (ctx.fail_commands or {}).items()}
    low = name.strip().lower()
    leaf = PureWindowsPath(low).name
    return faults.get(low) or faults.get(leaf)


def invoke(ctx: CommandContext, invocation: Invocation, input: list[Any] | None, world: World) -> list[Any]:
    """Bind and run one command; its output is returned (not yet sent)."""
    if invocation.is_script:
        raise TerminatingError(
            errors.record(
                "The psbridge lab runs commands with parameters, not script text; send each command with "
                "its parameters.",
                "NotImplemented",
                "ScriptTextNotSupported",
                "",
                "",
                exception="System.Management.Automation.RuntimeException",
            )
        )
    spec = find_command(ctx, invocation.name, world)
    if spec is None:
        raise TerminatingError(errors.not_recognized(invocation.name))
    fault = _injected_fault(ctx, spec.name if spec.kind == "Cmdlet" else invocation.name)
    if fault:
        raise TerminatingError(errors.thrown(fault, spec.name))
    bound = bind(spec, invocation, has_input=bool(input))
    world.reload()  # another pipeline may have changed it since this one started
    call = Call(ctx, spec, bound, input, world)
    try:
        spec.run(call)
    except ScriptExit as e:
        if spec.kind != "ExternalScript":
            raise
        ctx.variables["LASTEXITCODE"] = e.code
    return call.output


def run_pipeline(
    ctx: CommandContext,
    statements: Sequence[Sequence[Invocation]],
    pipeline_input: Sequence[Any] | None = None,
) -> None:
    """Run a PSRP pipeline's statements; raises :class:`TerminatingError` when it fails."""
    world = World.shared(ctx.state_dir)
    first = True
    try:
        for statement in statements:
            objects: list[Any] | None = list(pipeline_input) if first and pipeline_input else None
            first = False
            for invocation in statement:
                if ctx.is_stopping():
                    return
                objects = invoke(ctx, invocation, objects, world)
            for obj in objects or []:
                ctx.write_output(for_wire(obj))
    except PipelineStopped:
        return
