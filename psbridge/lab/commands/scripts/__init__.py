"""The official scripts in the CRM Tools folder, found by path as PowerShell finds a ``.ps1``.

A server runs ``CertificateReconfiguration.ps1`` and ``ConfigureCrmServerSideSync.ps1`` from
its Tools folder, in the generation its build ships (``current``: the Graph-era script with
``-ClientID``/``-ClientSecret``; ``legacy``: the MSOnline-era one without). The file must be
there: a removed script is not recognized any more, as on a real server.
"""

from __future__ import annotations

from pathlib import PureWindowsPath

from psbridge.lab.commands.filesystem import PathFormatError, ServerFiles, windows_path
from psbridge.lab.commands.registry import CommandSpec, Param
from psbridge.lab.commands.scripts import certificate_reconfiguration, server_side_sync
from psbridge.lab.runspace import CommandContext
from psbridge.lab.world import (
    CERTIFICATE_RECONFIGURATION,
    CONFIGURE_SERVER_SIDE_SYNC,
    TOOLS_FOLDER,
    World,
)

TOOLS = PureWindowsPath(TOOLS_FOLDER)


def script_spec(script: str, generation: str, path: PureWindowsPath) -> CommandSpec | None:
    params: tuple[Param, ...]
    if script.lower() == CERTIFICATE_RECONFIGURATION.lower():
        params, run = certificate_reconfiguration.PARAMS, certificate_reconfiguration.run
    elif script.lower() == CONFIGURE_SERVER_SIDE_SYNC.lower():
        if generation == "legacy":
            params, run = server_side_sync.LEGACY_PARAMS, server_side_sync.run_legacy
        else:
            params, run = server_side_sync.PARAMS, server_side_sync.run
    else:
        return None
    name = next(
        n for n in (CERTIFICATE_RECONFIGURATION, CONFIGURE_SERVER_SIDE_SYNC) if n.lower() == script.lower()
    )
    return CommandSpec(
        name=name,
        params=params,
        run=run,
        type_name=name,
        kind="ExternalScript",
        source=str(path),
        path=str(path),
        extra={"generation": generation},
    )


def script_at(ctx: CommandContext, world: World, text: str) -> CommandSpec | None:
    """The script a path names on this server, or None (not recognized)."""
    try:
        path = windows_path(text)
    except PathFormatError:
        return None
    if str(path.parent).lower() != str(TOOLS).lower():
        return None
    if not ServerFiles(ctx.state_dir, ctx.server).is_file(path):
        return None
    try:
        generation = world.server_generation(ctx.server)
    except KeyError:
        return None
    return script_spec(path.name, generation, TOOLS / path.name)
