"""Where Entra ID and Microsoft Graph are: clouds as data.

A :class:`CloudSettings` names the authority host, the Graph host, and the resource a Graph
token is requested for. The national clouds differ only in these values, so they are data,
not code; the embedded lab is one more entry, read from its ``lab.json``::

    CloudSettings.named("global")                 # login.microsoftonline.com + graph.microsoft.com
    CloudSettings.named("usgov")                  # GCC High
    CloudSettings.from_lab("~/.local/state/psbridge/lab/lab.json")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from psbridge.errors import LabConfigError, ParameterError

# "Microsoft Graph Command Line Tools": Microsoft's public client for signing in to Graph with
# a device code, so a consultant needs no app registration of their own to start step 3.
GRAPH_CLI_CLIENT_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"

# The S2S authorization server's metadata (ServerSettings S2SDefaultAuthorizationServerMetadataUrl).
# Commercial: what the official script sets. GCC High: Microsoft's page for this procedure names
# login.microsoftonline.us. DoD shares GCC High's sign-in host, so the same document is taken
# there; Microsoft's page says nothing of 21Vianet's cloud, whose sign-in host is taken by the
# same rule — both marked as inferred in preflight's record of the cloud.
ACS_METADATA_GLOBAL = "https://accounts.accesscontrol.windows.net/metadata/json/1"
ACS_METADATA_USGOV = "https://login.microsoftonline.us/metadata/json/1"
ACS_METADATA_CHINA = "https://login.chinacloudapi.cn/metadata/json/1"


@dataclass(frozen=True)
class CloudSettings:
    name: str
    authority_host: str
    graph_url: str
    graph_resource: str
    # The lab's authority is not one msal knows: it must skip instance discovery, which would
    # otherwise ask the public cloud about it.
    instance_discovery: bool = True
    ca_bundle: str | None = None
    timeout: float = 30.0
    device_code_client_id: str = GRAPH_CLI_CLIENT_ID
    # What CRM's ServerSettings S2SDefaultAuthorizationServerMetadataUrl must name in this cloud.
    acs_metadata_url: str = ACS_METADATA_GLOBAL
    # Whether the official ConfigureCrmServerSideSync.ps1 can do its work here: it hard-codes
    # login.microsoftonline.com and graph.microsoft.com, so only in the commercial cloud.
    script_reaches: bool = True

    def authority(self, tenant: str) -> str:
        return f"{self.authority_host.rstrip('/')}/{tenant}"

    @property
    def graph_default_scope(self) -> str:
        return f"{self.graph_resource}/.default"

    def graph_scope(self, name: str) -> str:
        return f"{self.graph_resource}/{name}"

    @property
    def graph_v1(self) -> str:
        return f"{self.graph_url.rstrip('/')}/v1.0"

    @classmethod
    def named(cls, name: str) -> CloudSettings:
        try:
            return CLOUDS[name.lower()]
        except KeyError:
            raise ParameterError(f"unknown cloud {name!r}; known: {', '.join(CLOUDS)} (or the lab: "
                             "CloudSettings.from_lab)") from None

    @classmethod
    def from_lab(cls, lab: str | Path | Mapping[str, Any]) -> CloudSettings:
        """The embedded lab's Entra twin, from ``lab.json`` (a path or a state directory), its
        parsed content, or its ``entra`` section."""
        if isinstance(lab, Mapping):
            data: Mapping[str, Any] = lab
            where = "the lab description"
        else:
            from psbridge.lab.config import LabConfig  # the one reader of lab.json

            data = LabConfig.load(lab).model_dump(mode="json")
            where = str(LabConfig.path_for(lab))
        # lab.json, or its "entra" section alone (what EntraTwin.describe() gives)
        entra = data.get("entra") or (data if "login_url" in data else None)
        if not entra:
            raise LabConfigError(
                f"{where} describes no Entra ID twin (was the lab started without the cloud?)")
        return cls(
            name="lab",
            authority_host=entra["login_url"],
            graph_url=entra["graph_url"],
            # The lab's CRM servers ask for the real scope string, and the twin honours it.
            graph_resource="https://graph.microsoft.com",
            instance_discovery=False,
            ca_bundle=str(entra.get("ca_bundle") or data.get("ca_bundle") or "") or None,
            device_code_client_id=entra.get("device_code_client_id", GRAPH_CLI_CLIENT_ID),
        )

    def with_(self, **changes: Any) -> CloudSettings:
        return replace(self, **changes)


CLOUDS: dict[str, CloudSettings] = {
    "global": CloudSettings("global", "https://login.microsoftonline.com", "https://graph.microsoft.com",
                            "https://graph.microsoft.com"),
    "usgov": CloudSettings("usgov", "https://login.microsoftonline.us", "https://graph.microsoft.us",
                           "https://graph.microsoft.us", acs_metadata_url=ACS_METADATA_USGOV,
                           script_reaches=False),
    "usgov-dod": CloudSettings("usgov-dod", "https://login.microsoftonline.us",
                               "https://dod-graph.microsoft.us", "https://dod-graph.microsoft.us",
                               acs_metadata_url=ACS_METADATA_USGOV, script_reaches=False),
    "china": CloudSettings("china", "https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn",
                           "https://microsoftgraph.chinacloudapi.cn", acs_metadata_url=ACS_METADATA_CHINA,
                           script_reaches=False),
}
