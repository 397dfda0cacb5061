"""The commands a lab CRM server runs, as plain functions over the world state.

The transport calls :func:`run_pipeline` with the statements of a PSRP pipeline; each
command is looked up in :data:`CMDLETS` (or found by path, for the official scripts in the
Tools folder), bound as PowerShell binds parameters, and run against the world on disk.
Anything else is not recognized, as on a real server.

::

    run_pipeline(ctx, [[Invocation("Get-CrmOrganization", [("Name", "contoso")])]], None)
"""

from __future__ import annotations

# Importing the command modules registers their commands.
from psbridge.lab.commands import accounts, core, crm, getcommand, items, keyfiles, services  # noqa: F401
from psbridge.lab.commands.getcommand import command_metadata
from psbridge.lab.commands.registry import CMDLETS, CommandSpec, Param
from psbridge.lab.commands.runtime import CRM_SNAPIN, find_command, run_pipeline

__all__ = [
    "CMDLETS", "CRM_SNAPIN", "CommandSpec", "Param", "command_metadata", "find_command", "run_pipeline",
]
