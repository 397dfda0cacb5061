"""The decommission: server-side sync with Exchange Online taken down cleanly, with evidence of each part.

For a migration off the integration (Dynamics 365 online, Exchange Server on-premises, or the end
of Exchange Web Services in Exchange Online in April 2027), in the reverse order of the setup:

1. the mailboxes on the Exchange Online (Hybrid) profile leave server-side sync (delivery methods
   none), or move to another profile (``move_mailboxes_to``); the profile is deactivated;
2. the organization's ``S2STenantId`` is emptied;
3. the S2S certificate leaves the configuration database and every server's store — unless another
   organization of the deployment still uses server-to-server authentication, or SharePoint
   server-based integration signs with it (``sharepoint_integration``): then it stays, and the record
   says why;
4. the Dynamics CRM service principal's key credential for that certificate is removed (same rule),
   and the setup app registration is deleted.

Nothing changes without ``confirm`` set to the organization's unique name: the first step refuses
before anything is touched, and every step checks it again (a step run on its own too). A plan
needs no confirmation: it reads, and says what each step would do. Every change is journalled
(Web API, Graph, cmdlets) and every step reads before it acts, so a resume does nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psbridge.crm.settings import S2S_TENANT_ID
from psbridge.errors import ParameterError
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    Action,
    StepError,
    graph_client,
    norm_thumbprint,
    sign_in,
    web_api,
    web_api_target,
)
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.cloud import GraphClient
    from psbridge.crm import CrmCertificate
    from psbridge.crm.webapi import WebApi

__all__ = ["Confirmation", "Remaining", "StepError", "deactivate_profile", "delete_setup_app", "graph_client",
           "mailboxes_off", "remaining", "remove_certificate", "remove_key_credential",
           "require_confirmation",
           "s2s_certificates", "sign_in", "tenant_id_off", "users_of_s2s", "web_api", "web_api_target"]

S2S_TYPES = ("S2STokenIssuer", "AlternativeS2STokenIssuer")


class Confirmation(ParameterError):
    """The decommission was not confirmed (``confirm`` must be the organization's unique name)."""


def require_confirmation(organization: str, confirm: str, *, plan: bool) -> str:
    """Refuse, before anything changes, a decommission that was not confirmed; a plan needs none."""
    if plan:
        return "plan: nothing changes, so no confirmation is needed"
    if confirm.strip().lower() != organization.strip().lower():
        given = f"it is {confirm!r}" if confirm else "it is empty"
        raise Confirmation(
            f"the decommission of {organization} is not confirmed: set confirm: {organization} (the "
            f"organization's unique name; {given}). Nothing was changed. Run 'psbridge plan' first to see "
            "what would be removed.")
    return f"confirmed: confirm is {organization!r}"


# --- what is there ------------------------------------------------------------------------------


def s2s_certificates(dep: Deployment) -> list[CrmCertificate]:
    """The configuration database's S2S certificates (S2STokenIssuer and AlternativeS2STokenIssuer)."""
    from psbridge.crm import crm_certificates

    return [c for c in crm_certificates(dep.session(dep.deployment_server))
            if c.certificate_type.lower() in (t.lower() for t in S2S_TYPES)]


def users_of_s2s(dep: Deployment) -> list[str]:
    """The other organizations of the deployment whose ``S2STenantId`` is set: they still use the chain."""
    from psbridge.crm import get_advanced_setting, list_organizations

    session = dep.session(dep.deployment_server)
    return [o.unique_name for o in list_organizations(session)
            if o.unique_name.lower() != dep.organization.lower()
            and get_advanced_setting(session, "Organization", S2S_TENANT_ID, o.id)]


@dataclass(frozen=True)
class RemainingRow:
    where: str
    what: str
    now: str
    left: bool  # still a part of the integration
    kept_why: str = ""  # left on purpose, and why


@dataclass
class Remaining:
    """What of the integration is there: every part, and whether it is (still) there."""

    rows: list[RemainingRow] = field(default_factory=list)
    COLUMNS = ("where", "what", "now", "left", "kept because")

    def add(self, where: str, what: str, now: str, left: bool, kept_why: str = "") -> None:
        self.rows.append(RemainingRow(where, what, now, left, kept_why))

    @property
    def left(self) -> list[RemainingRow]:
        """What is still there and was not kept on purpose."""
        return [r for r in self.rows if r.left and not r.kept_why]

    @property
    def kept(self) -> list[RemainingRow]:
        return [r for r in self.rows if r.left and r.kept_why]

    @property
    def clean(self) -> bool:
        return not self.left

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"where": r.where, "what": r.what, "now": r.now, "left": r.left, "kept because": r.kept_why}
                for r in self.rows]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), list(self.COLUMNS))

    def _repr_html_(self) -> str:
        head = ("<p><b>Nothing of the integration is left.</b></p>" if self.clean and not self.kept else
                f"<p><b>{len(self.left)} part(s) left, {len(self.kept)} kept on purpose.</b></p>")
        return head + html_table(self._dicts(), list(self.COLUMNS))

    def __repr__(self) -> str:
        return "\n".join(f"{'LEFT' if r.left else 'gone'} {r.where}: {r.what}: {r.now}"
                         + (f" (kept: {r.kept_why})" if r.kept_why else "") for r in self.rows)


def _keep_why(others: list[str], sharepoint: bool) -> str:
    why = []
    if others:
        why.append("server-to-server authentication is still used by " + ", ".join(others))
    if sharepoint:
        why.append("SharePoint server-based integration signs with it (sharepoint_integration)")
    return "; ".join(why)


def remaining(dep: Deployment, graph: GraphClient | None, api: WebApi | None, profile_name: str,
              app_name: str, thumbprints: list[str], *, sharepoint_integration: bool = False) -> Remaining:
    """Every part of the integration read where it lives (each reader only reads)."""
    from psbridge.cloud import get_app, read_crm_service_principal
    from psbridge.crm import email, get_advanced_setting, get_organization, store_certificates

    out = Remaining()
    session = dep.session(dep.deployment_server)
    others = users_of_s2s(dep)
    keep = _keep_why(others, sharepoint_integration)
    if api is not None:
        for p in email.find_profiles(api, profile_name):
            out.add("CRM Web API", f"email server profile {profile_name!r}",
                    "active" if p.active else "inactive", p.active)
            for m in _mailboxes_on(api, p.id):
                on = _on_server_side_sync(m)
                out.add("CRM Web API", f"mailbox {m.name}",
                        "server-side sync" if on else "off server-side sync", on)
    org = get_organization(session, dep.organization)
    tid = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
    out.add("configuration database", f"{org.unique_name} {S2S_TENANT_ID}", str(tid or "empty"), bool(tid))
    wanted = [norm_thumbprint(t) for t in thumbprints if t]
    for c in s2s_certificates(dep):
        out.add("configuration database", f"{c.certificate_type} certificate", c.thumbprint, True, keep)
        if c.thumbprint not in wanted:
            wanted.append(c.thumbprint)
    for name in dep.servers:
        for t in wanted:
            there = bool(store_certificates(dep.session(name), thumbprint=t))
            out.add(f"{name} LocalMachine\\My", f"S2S certificate {t}", "present" if there else "removed",
                    there, keep if there else "")
    if graph is not None:
        sp = read_crm_service_principal(graph)
        for t in wanted:
            there = any((k.thumbprint or "").upper() == t for k in sp.key_credentials)
            out.add("Entra ID", f"Dynamics CRM service principal key credential {t}",
                    "present" if there else "removed", there, keep if there else "")
        app = get_app(graph, app_name)
        out.add("Entra ID", f"setup app {app_name!r}", f"registered ({app.app_id})" if app else "deleted",
                app is not None)
    return out


# --- what changes --------------------------------------------------------------------------------


def _mailboxes_on(api: WebApi, profile_id: str) -> list[Any]:
    from psbridge.crm import email

    rows = api.get_all("mailboxes", {"$select": ",".join(email.MAILBOX_ATTRIBUTES),
                                     "$filter": f"_emailserverprofile_value eq {profile_id}"})
    return [email.Mailbox.of(r) for r in rows]


def _on_server_side_sync(m: Any) -> bool:
    from psbridge.crm import email

    return bool(m.incoming == email.Delivery.SERVER_SIDE_SYNC or m.outgoing == email.Delivery.SERVER_SIDE_SYNC
                or m.act == email.ActDelivery.SERVER_SIDE_SYNC)


def mailboxes_off(api: WebApi, profile_name: str, move_to: str = "", *, plan: bool = False) -> Action:
    """Every mailbox on the profile off server-side sync (delivery methods none), or onto ``move_to``."""
    from psbridge.crm import email
    profiles = email.find_profiles(api, profile_name)
    if not profiles:
        return Action([], plan, [f"there is no email server profile {profile_name!r}: no mailbox to move"])
    target = None
    if move_to:
        found = email.find_profiles(api, move_to)
        if len(found) != 1:
            count = len(found) or "no"
            raise StepError(f"move_mailboxes_to: {count} email server profiles are named {move_to!r}; "
                            "name one that exists (nothing was changed)")
        target = found[0]
    changes = []
    for profile in profiles:
        boxes = _mailboxes_on(api, profile.id)
        todo = boxes if target is not None else [m for m in boxes if _on_server_side_sync(m)]
        for m in todo:
            if target is not None:
                changes.append(f"move mailbox {m.name} to the email server profile {move_to!r}")
                if not plan:
                    email.configure_mailbox(api, m.id, target.id)
            else:
                changes.append(f"take mailbox {m.name} off server-side sync (email and appointments, "
                               "contacts and tasks: none)")
                if not plan:
                    api.update("mailboxes", m.id, {
                        "incomingemaildeliverymethod": int(email.Delivery.NONE),
                        "outgoingemaildeliverymethod": int(email.Delivery.NONE),
                        "actdeliverymethod": int(email.ActDelivery.NONE)})
    return Action(changes, plan)


def deactivate_profile(api: WebApi, profile_name: str, *, plan: bool = False) -> Action:
    from psbridge.crm import email

    changes = []
    for p in email.find_profiles(api, profile_name):
        if p.active:
            changes.append(f"deactivate the email server profile {profile_name!r} ({p.id})")
            if not plan:
                api.update("emailserverprofiles", p.id, {"statecode": 1, "statuscode": 2})
    return Action(changes, plan)


def tenant_id_off(dep: Deployment, *, plan: bool = False) -> Action:
    from psbridge.crm import get_advanced_setting, get_organization
    from psbridge.crm.removal import clear_tenant_id

    session = dep.session(dep.deployment_server)
    if plan:
        org = get_organization(session, dep.organization)
        now = get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id)
        return Action([f"empty {org.unique_name} {S2S_TENANT_ID} (now {now})"] if now else [], True)
    done = clear_tenant_id(session, dep.organization)
    return Action([f"emptied {dep.organization} {S2S_TENANT_ID}"] if done else [])


def remove_certificate(dep: Deployment, thumbprints: list[str], *, sharepoint_integration: bool = False,
                       plan: bool = False) -> Action:
    """The S2S certificates out of the configuration database and every server's store, unless kept."""
    from psbridge.crm import store_certificates
    from psbridge.crm.removal import remove_crm_certificate, remove_store_certificate

    keep = _keep_why(users_of_s2s(dep), sharepoint_integration)
    recorded = s2s_certificates(dep)
    wanted = list(dict.fromkeys([*(norm_thumbprint(t) for t in thumbprints if t),
                                 *(c.thumbprint for c in recorded)]))
    if keep:
        return Action([], plan, [f"The S2S certificate {', '.join(wanted) or '-'} stays in the configuration "
                                 f"database and on the servers: {keep}."])
    changes = []
    session = dep.session(dep.deployment_server)
    for c in recorded:
        changes.append(f"remove the {c.certificate_type} certificate {c.thumbprint} from the configuration "
                       "database (Remove-CrmCertificate)")
        if not plan:
            remove_crm_certificate(session, c)
    for name in dep.servers:
        for t in wanted:
            if store_certificates(dep.session(name), thumbprint=t):
                changes.append(f"remove {t} and its private key from {name} LocalMachine\\My")
                if not plan:
                    remove_store_certificate(dep.session(name), t)
    return Action(changes, plan)


def remove_key_credential(graph: GraphClient, thumbprints: list[str], others: list[str], *,
                          sharepoint_integration: bool = False, plan: bool = False) -> Action:
    from psbridge.cloud import read_crm_service_principal, untrust_certificate

    keep = _keep_why(others, sharepoint_integration)
    wanted = [norm_thumbprint(t) for t in thumbprints if t]
    sp = read_crm_service_principal(graph)
    there = [t for t in wanted if any((k.thumbprint or "").upper() == t for k in sp.key_credentials)]
    if keep and there:
        return Action([], plan, [f"The key credential {', '.join(there)} stays on the Dynamics CRM service "
                                 f"principal: {keep}."])
    changes: list[str] = []
    for t in there:
        if plan:
            changes.append(f"remove key credential {t} from the Dynamics CRM service principal")
        else:
            changes += untrust_certificate(graph, t)
    return Action(changes, plan)


def delete_setup_app(graph: GraphClient, app_name: str, *, plan: bool = False) -> Action:
    from psbridge.cloud import delete_app, get_app

    app = get_app(graph, app_name)
    if app is None:
        return Action([], plan)
    if not plan:
        delete_app(graph, app)
    verb = "delete" if plan else "deleted"
    return Action([f"{verb} the setup app registration {app_name!r} ({app.app_id}) and its service "
                   "principal"], plan)
