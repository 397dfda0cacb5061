"""The two official scripts in the CRM Tools folder, and what parameters the installed copy takes.

Older CRM 9.1 builds ship a ConfigureCrmServerSideSync.ps1 from the MSOnline era without
``-ClientID``/``-ClientSecret``. Rather than guess from a build number, the bridge asks the
server: ``Get-Command`` on the script path exposes its parameters. Remoting serializes at depth
1, so the parameter metadata is unrolled on the server with ``Select-Object -ExpandProperty``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath, PureWindowsPath

from psbridge.remote.command import Cmd
from psbridge.remote.errors import ScriptNotFound, UnsupportedScript
from psbridge.remote.session import Session

TOOLS_FOLDER = PureWindowsPath(r"C:\Program Files\Microsoft Dynamics CRM\Tools")
CERTIFICATE_RECONFIGURATION = "CertificateReconfiguration.ps1"
CONFIGURE_SERVER_SIDE_SYNC = "ConfigureCrmServerSideSync.ps1"

# What the current scripts take (DOMAIN.md step 2 and 4); only these are ever sent.
RECONFIGURATION_PARAMETERS = ("certificateFile", "password", "certificateType", "serviceAccount", "updateCrm")
SERVER_SIDE_SYNC_PARAMETERS = (
    "privateKeyPassword",
    "pfxFilePath",
    "organizationName",
    "microsoftEntraIdTenantIdOrDomainName",
    "ClientID",
    "ClientSecret",
)


@dataclass(frozen=True)
class ScriptParameter:
    """One parameter of an installed script, as ``Get-Command`` reports it."""

    name: str
    type_name: str
    switch: bool
    aliases: tuple[str, ...] = ()


def script_path(name: str, tools_folder: str | PurePath = TOOLS_FOLDER) -> PureWindowsPath:
    return PureWindowsPath(tools_folder) / name


def script_parameters(session: Session, path: str | PurePath) -> dict[str, ScriptParameter]:
    """The installed script's parameters by lower-case name (PowerShell names are case-insensitive)."""
    chain = (
        Cmd("Get-Command", Name=str(path))
        | Cmd("Select-Object", ExpandProperty="Parameters")
        | Cmd("Select-Object", ExpandProperty="Values")
    )
    result = session.invoke(chain)
    if not result.output and result.errors:
        raise ScriptNotFound(result, str(path))
    params: dict[str, ScriptParameter] = {}
    for item in result.output:
        get = getattr(item, "get_ci", None)
        if get is None:
            continue
        name = str(get("Name") or "")
        if not name:
            continue
        aliases = get("Aliases") or []
        params[name.lower()] = ScriptParameter(
            name=name,
            type_name=str(get("ParameterType") or ""),
            switch=bool(get("SwitchParameter")),
            aliases=tuple(str(a) for a in aliases) if isinstance(aliases, list) else (),
        )
    return params


def require_parameters(
    session: Session, path: str | PurePath, needed: tuple[str, ...]
) -> dict[str, ScriptParameter]:
    """The script's parameters; :class:`UnsupportedScript` when any of ``needed`` is missing."""
    params = script_parameters(session, path)
    missing = [n for n in needed if n.lower() not in params]
    if missing:
        raise UnsupportedScript(PureWindowsPath(path).name, missing, session.server)
    return params
