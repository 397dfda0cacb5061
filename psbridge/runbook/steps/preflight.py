"""Step 0 — prerequisites, checked read-only on every server, the organization's Web API and the cloud.

Every check runs (one unreachable server is a row, not the end of the report), so the table
shows every problem together; :meth:`Preflight.require` then stops the run naming each one.
The Web API is probed for the sign-in it wants and signed in to (the later steps need it);
Exchange Online's retirement and its tenant allow-list are said here, before anything changes:
without the Exchange Online administrator's confirmation the record says plainly that Test &
Enable will fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psbridge import secrets
from psbridge.crm.organizations import get_organization
from psbridge.crm.scripts import CONFIGURE_SERVER_SIDE_SYNC, SERVER_SIDE_SYNC_PARAMETERS, require_parameters
from psbridge.crm.snapin import use_crm_snapin
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    StepError,
    WebApiTarget,
    discover_tenant_id,
    sweep_leftovers,
    web_api_target,
)
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Preflight", "PreflightCheck", "check", "check_web_api", "sweep_leftovers", "web_api_target"]

COLUMNS = ["server", "check", "ok", "detail"]


@dataclass(frozen=True)
class PreflightCheck:
    server: str
    check: str
    ok: bool | None  # None: could not be decided (said so in the detail)
    detail: str


@dataclass
class Preflight:
    """What step 0 found: every check, and what the later steps need from it."""

    checks: list[PreflightCheck] = field(default_factory=list)
    organization_id: str | None = None
    web_api_sign_in: str | None = None  # active-directory | claims, once the Web API answered

    def add(self, server: str, check: str, ok: bool | None, detail: str) -> None:
        self.checks.append(PreflightCheck(server, check, ok, secrets.redact(detail)))

    @property
    def failed(self) -> list[PreflightCheck]:
        return [c for c in self.checks if c.ok is False]

    def require(self) -> None:
        if self.failed:
            lines = [f"{c.check} on {c.server}: {c.detail}" for c in self.failed]
            raise StepError(f"{len(lines)} prerequisite(s) not met:\n  - " + "\n  - ".join(lines))

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"server": c.server, "check": c.check, "ok": c.ok, "detail": c.detail} for c in self.checks]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), COLUMNS)

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), COLUMNS)

    def __repr__(self) -> str:
        marks = {True: "ok", None: "??", False: "NO"}
        return "\n".join(f"[{marks[c.ok]}] {c.server} {c.check}: {c.detail}" for c in self.checks)


def check(dep: Deployment) -> Preflight:
    """Sessions, snap-in, rights, scripts, organization, the script's generation, tenant, cloud."""
    from psbridge.crm import check_prerequisites
    from psbridge.remote.errors import BridgeError

    found = Preflight()
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        # The snap-in is registered as the pool's initializer before it opens, so that the
        # checks below and the CRM operations of later cells share one loaded snap-in.
        session = use_crm_snapin(dep.session(name))
        try:
            session.open()
        except BridgeError as e:
            found.add(name, "PowerShell session", False, str(e))
            continue
        found.add(name, "PowerShell session", True, f"{session.profile.user} at {session.profile.endpoint}")
        for c in check_prerequisites(session, dep.tools_folder).checks:
            found.add(name, c.name, c.ok, c.detail)
    session = dep.session(dep.deployment_server)
    try:
        org = get_organization(session, dep.organization)
        found.organization_id = str(org.id)
        found.add(dep.deployment_server, "organization", True, f"{org.unique_name} ({org.id}), {org.state}")
        require_parameters(session, dep.script(CONFIGURE_SERVER_SIDE_SYNC), SERVER_SIDE_SYNC_PARAMETERS)
        found.add(dep.deployment_server, f"{CONFIGURE_SERVER_SIDE_SYNC} parameters", True,
                  "takes -ClientID and -ClientSecret (Microsoft Graph era)")
    except BridgeError as e:
        found.add(dep.deployment_server, "organization and script", False, str(e))
    _cloud(dep, found)
    return found


def check_web_api(found: Preflight, dep: Deployment, target: WebApiTarget,
                  exchange_allow_list: str = "") -> None:
    """The organization's Web API: reachable, which sign-in it wants, signed in to, the approve privilege;
    Exchange Online's retirement and the tenant's allow-list."""
    from psbridge.crm import email
    from psbridge.crm.webapi import WebApiError
    from psbridge.runbook.steps.common import probe_web_api, web_api

    where = "Web API"
    try:
        offer = probe_web_api(target)
    except WebApiError as e:
        found.add(where, "CRM Web API", False, str(e))
    else:
        found.web_api_sign_in = str(offer.kind)
        found.add(where, "CRM Web API", True, f"{target.url}/api/data/v9.0 asks for {offer.describe()}")
        try:
            api = web_api(dep, target)
        except WebApiError as e:
            found.add(where, "Web API sign-in", False, str(e))
        else:
            me = api.whoami()
            shown = api.describe().get("as", target.user)
            found.add(where, "Web API sign-in", True, f"signed in as {shown} (systemuser {me.user_id})")
            try:
                email.check_names(api)
                found.add(where, "attribute and bind names", True,
                          "every name steps 60 and 70 write is in the organization's $metadata")
                may = email.has_privilege(api, me.user_id, email.APPROVE_EMAIL)
                found.add(where, email.APPROVE_EMAIL_NAME, True if may else None,
                          f"{shown} holds {email.APPROVE_EMAIL}" if may else
                          f"{shown} lacks {email.APPROVE_EMAIL}: step 70 stops before approving a "
                          "mailbox that still needs it (give the account the System Administrator role, or "
                          "approve in the web client)")
            except WebApiError as e:
                found.add(where, "attribute and bind names", False, str(e))
            finally:
                api.close()
    tenant = dep.tenant or "the tenant"
    found.add("Exchange Online", "retirement", None, email.RETIREMENT)
    if exchange_allow_list.strip():
        found.add("Exchange Online", "tenant allow-list", True,
                  f"confirmed by the Exchange Online administrator: {exchange_allow_list.strip()}")
    else:
        found.add("Exchange Online", "tenant allow-list", None, email.NOT_ALLOW_LISTED.format(tenant=tenant))


def _cloud(dep: Deployment, found: Preflight) -> None:
    from psbridge.cloud.tenant import TenantLookupError

    try:
        tid = discover_tenant_id(dep)
        found.add("cloud", "Entra ID tenant", True,
                  f"{dep.tenant} is tenant {tid} ({dep.cloud.authority_host})")
    except (TenantLookupError, ValueError) as e:  # unreachable, unknown, or not a domain name
        found.add("cloud", "Entra ID tenant", False, str(e))
    if not dep.cloud.script_reaches:
        # Not a failure: step 4 does the script's work itself in this cloud. Said here, before anything.
        found.add("cloud", f"{dep.cloud.name}: {CONFIGURE_SERVER_SIDE_SYNC}", None,
                  f"the official script talks to the commercial cloud only (login.microsoftonline.com, "
                  f"graph.microsoft.com); in {dep.cloud.name} step 4 does its work through Microsoft Graph "
                  f"at {dep.cloud.graph_url} and sets S2SDefaultAuthorizationServerMetadataUrl to "
                  f"{dep.cloud.acs_metadata_url}, each recorded")
