"""The organization's email configuration over its Web API: the server profile, the defaults, mailboxes.

What the web client's Email Configuration pages do, as records and attributes of CRM 9.x
(Customer Engagement on-premises entity reference):

- an **email server profile** of type Exchange Online (Hybrid) (``servertype`` 3) with
  server-to-server authentication (``incoming``/``outgoingcredentialretrieval`` 2), the
  organization's default tenant id (``usedefaulttenantid``: its ``S2STenantId``) and autodiscover;
- the **organization's email settings**: that profile as ``defaultemailserverprofileid``,
  server-side sync as ``emailconnectionchannel`` (0) and as the delivery methods new users and
  queues get (``defaultemailsettings``);
- each **mailbox** pointed at the profile (``emailserverprofile@odata.bind``) with server-side
  sync for incoming and outgoing email (2) and for appointments, contacts and tasks
  (``actdeliverymethod`` 1 — a different code), its owner's address **approved**
  (``emailrouteraccessapproval`` 1 on the user or queue; the caller needs
  ``prvApproveRejectEmailAddress``), then **Test & Enable** (``testemailconfigurationscheduled``):
  an asynchronous job that sets the statuses minutes later and leaves an alert (``tracelog``)
  saying why it failed.

Every name is checked against the organization's ``$metadata`` before the first write
(:meth:`psbridge.crm.webapi.Metadata.require`); values travel as JSON, never as query text
built from input (``odata_quote`` quotes a literal where a filter needs one).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as xml_escape

if TYPE_CHECKING:
    from psbridge.crm.webapi import WebApi


class ServerType(enum.IntEnum):
    EXCHANGE_SERVER = 0
    POP3_SMTP = 1
    EXCHANGE_SERVER_HYBRID = 2
    EXCHANGE_ONLINE_HYBRID = 3


class CredentialRetrieval(enum.IntEnum):
    USER_OR_QUEUE = 0
    PROFILE = 1
    SERVER_TO_SERVER = 2
    WINDOWS_INTEGRATED = 3
    ANONYMOUS = 4


class Delivery(enum.IntEnum):
    """Incoming and outgoing email delivery methods."""

    NONE = 0
    OUTLOOK = 1
    SERVER_SIDE_SYNC = 2  # "Server-Side Synchronization or Email Router"
    FORWARD_MAILBOX = 3  # incoming only


class ActDelivery(enum.IntEnum):
    """Appointments, contacts and tasks: the same choices under other numbers."""

    OUTLOOK = 0
    SERVER_SIDE_SYNC = 1
    NONE = 2


class Approval(enum.IntEnum):
    EMPTY = 0
    APPROVED = 1
    PENDING = 2
    REJECTED = 3


class TestStatus(enum.IntEnum):
    NOT_RUN = 0
    SUCCESS = 1
    FAILURE = 2


class Channel(enum.IntEnum):
    SERVER_SIDE_SYNC = 0
    EMAIL_ROUTER = 1


LABELS: dict[type[enum.IntEnum], dict[int, str]] = {
    ServerType: {0: "Exchange Server", 1: "POP3/SMTP", 2: "Exchange Server (Hybrid)",
                 3: "Exchange Online (Hybrid)"},
    CredentialRetrieval: {0: "credentials of the user or queue", 1: "credentials in the profile",
                          2: "server-to-server authentication", 3: "Windows integrated", 4: "anonymous"},
    Delivery: {0: "none", 1: "Outlook", 2: "server-side sync", 3: "forward mailbox"},
    ActDelivery: {0: "Outlook", 1: "server-side sync", 2: "none"},
    Approval: {0: "empty", 1: "approved", 2: "pending approval", 3: "rejected"},
    TestStatus: {0: "not run", 1: "success", 2: "failure"},
    Channel: {0: "server-side sync", 1: "Email Router"},
}

APPROVE_EMAIL = "prvApproveRejectEmailAddress"
APPROVE_EMAIL_NAME = "Approve Email Addresses for Users or Queues"

# What Microsoft's page for this procedure says of its end (dates as published there): the
# feature rests on Exchange Web Services, which Exchange Online removes; new tenants are connected
# only once allow-listed; the CRM versions' support with Exchange Online ends.
RETIREMENT = (
    "Server-side sync with Exchange Online uses Exchange Web Services, which Microsoft removes from "
    "Exchange Online in April 2027. Since 1 October 2025 no new tenant is connected unless its Exchange "
    "Online administrator has Exchange Support allow-list the tenant id. Support with Exchange Online ends "
    "for CRM 8.0 on 25 May 2026 and for 9.0 on 1 April 2027: plan the move (Dynamics 365 online, or "
    "Exchange Server on-premises) and the clean removal of this integration.")
NOT_ALLOW_LISTED = (
    "the Exchange Online administrator's confirmation that Exchange Support allow-listed tenant {tenant} "
    "is not recorded (parameter exchange_allow_list): for a tenant connected since 1 October 2025, "
    "Test & Enable WILL FAIL (Exchange Online answers 403) until it is. Ask the administrator, then record "
    "who confirmed it and when.")


def label(kind: type[enum.IntEnum], value: Any) -> str:
    if value is None:
        return "-"
    return LABELS[kind].get(int(value), str(value))


def odata_quote(value: str) -> str:
    """An OData string literal: quotes doubled, so a name like O'Brien cannot break a filter."""
    return "'" + value.replace("'", "''") + "'"


# --- the names this module reads and writes, checked against $metadata ------------------------------

PROFILE_ATTRIBUTES = ("name", "servertype", "incomingcredentialretrieval", "outgoingcredentialretrieval",
                      "useautodiscover", "usedefaulttenantid", "exchangeonlinetenantid",
                      "usesamesettingsforoutgoingconnections", "incomingusessl", "outgoingusessl",
                      "statecode", "statuscode", "lasttestexecutionstatus", "lastcrmmessage")
ORG_ATTRIBUTES = ("_defaultemailserverprofileid_value", "emailconnectionchannel", "defaultemailsettings",
                  "requireapprovalforuseremail", "requireapprovalforqueueemail")
MAILBOX_ATTRIBUTES = ("name", "emailaddress", "_emailserverprofile_value", "incomingemaildeliverymethod",
                      "outgoingemaildeliverymethod", "actdeliverymethod", "emailrouteraccessapproval",
                      "incomingemailstatus", "outgoingemailstatus", "actstatus", "mailboxstatus",
                      "testemailconfigurationscheduled", "testemailconfigurationretrycount",
                      "testmailboxaccesscompletedon", "_regardingobjectid_value")
USER_ATTRIBUTES = ("fullname", "domainname", "internalemailaddress", "isdisabled", "accessmode",
                   "emailrouteraccessapproval", "_defaultmailbox_value")
QUEUE_ATTRIBUTES = ("name", "emailaddress", "emailrouteraccessapproval", "_defaultmailbox_value")


def check_names(api: WebApi) -> None:
    """Every attribute and bind name used here exists in this organization (MetadataMismatch if not)."""
    meta = api.metadata
    meta.require("emailserverprofiles", PROFILE_ATTRIBUTES)
    meta.require("organizations", ORG_ATTRIBUTES, ["defaultemailserverprofileid"])
    meta.require("mailboxes", MAILBOX_ATTRIBUTES, ["emailserverprofile"])
    meta.require("systemusers", USER_ATTRIBUTES)
    meta.require("queues", QUEUE_ATTRIBUTES)
    meta.require("tracelogs", ("text", "level", "_regardingobjectid_value", "createdon"))


# --- the email server profile -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileSpec:
    """The Exchange Online (Hybrid) profile server-side sync with S2S authentication needs."""

    name: str
    autodiscover: bool = True
    # Empty: the organization's own S2STenantId ("Use Default Tenant Id", as Microsoft recommends).
    tenant_id: str = ""

    def attributes(self) -> dict[str, Any]:
        wanted: dict[str, Any] = {
            "servertype": int(ServerType.EXCHANGE_ONLINE_HYBRID),
            "incomingcredentialretrieval": int(CredentialRetrieval.SERVER_TO_SERVER),
            "outgoingcredentialretrieval": int(CredentialRetrieval.SERVER_TO_SERVER),
            "usesamesettingsforoutgoingconnections": True,
            "useautodiscover": self.autodiscover,
            "usedefaulttenantid": not self.tenant_id,
            "incomingusessl": True,
            "outgoingusessl": True,
        }
        if self.tenant_id:
            wanted["exchangeonlinetenantid"] = self.tenant_id
        return wanted


def describe_value(attr: str, value: Any) -> str:
    kinds: dict[str, type[enum.IntEnum]] = {
        "servertype": ServerType, "incomingcredentialretrieval": CredentialRetrieval,
        "outgoingcredentialretrieval": CredentialRetrieval}
    if attr in kinds:
        return label(kinds[attr], value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None or value == "" else str(value)


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.values.get("statecode", 0) == 0)


def find_profiles(api: WebApi, name: str) -> list[Profile]:
    """The email server profiles of this name (CRM does not make names unique)."""
    rows = api.get_all("emailserverprofiles", {"$select": ",".join(PROFILE_ATTRIBUTES),
                                               "$filter": f"name eq {odata_quote(name)}"})
    return [Profile(str(r["emailserverprofileid"]).lower(), str(r["name"]),
                    {k: r.get(k) for k in PROFILE_ATTRIBUTES}) for r in rows]


def profile_differences(profile: Profile | None, spec: ProfileSpec) -> dict[str, Any]:
    """The attributes to write (all of them for a profile that does not exist yet)."""
    wanted = spec.attributes()
    if profile is None:
        return {"name": spec.name, **wanted}
    out = {k: v for k, v in wanted.items() if profile.values.get(k) != v}
    if not profile.active:
        out.update({"statecode": 0, "statuscode": 1})
    return out


def create_profile(api: WebApi, spec: ProfileSpec) -> str:
    return api.create("emailserverprofiles", {"name": spec.name, **spec.attributes()})


def update_profile(api: WebApi, profile_id: str, changes: dict[str, Any]) -> None:
    api.update("emailserverprofiles", profile_id, changes)


# --- the organization's email settings ------------------------------------------------------------------

_SETTING = {"incoming": "IncomingEmailDeliveryMethod", "outgoing": "OutgoingEmailDeliveryMethod",
            "act": "ACTDeliveryMethod"}


@dataclass(frozen=True)
class EmailSettings:
    organization_id: str
    default_profile_id: str | None
    channel: int | None
    incoming: int | None
    outgoing: int | None
    act: int | None
    xml: str
    approve_users: bool
    approve_queues: bool


def _setting(xml: str, element: str) -> int | None:
    m = re.search(rf"<{element}>\s*(\d+)\s*</{element}>", xml or "")
    return int(m.group(1)) if m else None


def settings_xml(current: str, incoming: int, outgoing: int, act: int) -> str:
    """``defaultemailsettings`` with the three delivery methods set, other elements kept."""
    xml = current.strip() or "<EmailSettings></EmailSettings>"
    for element, value in ((_SETTING["incoming"], incoming), (_SETTING["outgoing"], outgoing),
                           (_SETTING["act"], act)):
        tag = f"<{element}>{xml_escape(str(value))}</{element}>"
        if re.search(rf"<{element}>.*?</{element}>", xml, re.DOTALL):
            xml = re.sub(rf"<{element}>.*?</{element}>", tag, xml, flags=re.DOTALL)
        else:
            xml = xml.replace("</EmailSettings>", tag + "</EmailSettings>")
    return xml


def email_settings(api: WebApi, organization_id: str | None = None) -> EmailSettings:
    org_id = organization_id or api.whoami().organization_id
    r = api.get(f"organizations({org_id})", {"$select": ",".join(ORG_ATTRIBUTES)})
    xml = str(r.get("defaultemailsettings") or "")
    default = r.get("_defaultemailserverprofileid_value")
    return EmailSettings(org_id, str(default).lower() if default else None, r.get("emailconnectionchannel"),
                         _setting(xml, _SETTING["incoming"]), _setting(xml, _SETTING["outgoing"]),
                         _setting(xml, _SETTING["act"]), xml, bool(r.get("requireapprovalforuseremail")),
                         bool(r.get("requireapprovalforqueueemail")))


def settings_changes(settings: EmailSettings, profile_id: str) -> dict[str, Any]:
    """What the organization must be told: default profile, channel, default delivery methods."""
    out: dict[str, Any] = {}
    if settings.default_profile_id != profile_id:
        out["defaultemailserverprofileid@odata.bind"] = f"/emailserverprofiles({profile_id})"
    if settings.channel != Channel.SERVER_SIDE_SYNC:
        out["emailconnectionchannel"] = int(Channel.SERVER_SIDE_SYNC)
    if (settings.incoming, settings.outgoing, settings.act) != (
            Delivery.SERVER_SIDE_SYNC, Delivery.SERVER_SIDE_SYNC, ActDelivery.SERVER_SIDE_SYNC):
        out["defaultemailsettings"] = settings_xml(settings.xml, Delivery.SERVER_SIDE_SYNC,
                                                   Delivery.SERVER_SIDE_SYNC, ActDelivery.SERVER_SIDE_SYNC)
    return out


def set_email_settings(api: WebApi, organization_id: str, changes: dict[str, Any]) -> None:
    api.update("organizations", organization_id, changes)


# --- mailboxes --------------------------------------------------------------------------------------------

ALL = "all"
QUEUE_PREFIX = "queue:"
# Who "all active users" are: enabled, interactive (not support or application users), with an address.
ACTIVE_USERS = "isdisabled eq false and accessmode ne 3 and accessmode ne 4 and internalemailaddress ne null"


@dataclass(frozen=True)
class Owner:
    """A user or queue whose mailbox is configured."""

    kind: str  # systemuser | queue
    id: str
    name: str
    address: str
    approval: int | None
    mailbox_id: str | None

    @property
    def entity_set(self) -> str:
        return "systemusers" if self.kind == "systemuser" else "queues"


def _owner(kind: str, r: dict[str, Any]) -> Owner:
    key = "systemuserid" if kind == "systemuser" else "queueid"
    name = r.get("fullname") if kind == "systemuser" else r.get("name")
    address = r.get("internalemailaddress") if kind == "systemuser" else r.get("emailaddress")
    box = r.get("_defaultmailbox_value")
    return Owner(kind, str(r[key]).lower(), str(name or ""), str(address or ""),
                 r.get("emailrouteraccessapproval"), str(box).lower() if box else None)


def select_owners(api: WebApi, entries: list[str], query: str = "") -> tuple[list[Owner], list[str]]:
    """The users and queues whose mailboxes to configure, and every entry that names none.

    ``entries``: empty or ``["all"]`` for every active user; else ``DOMAIN\\user`` or an email
    address (a user, else a queue) or ``queue:NAME``. ``query``: an OData ``$filter`` on
    systemusers chosen instead of the list, e.g. ``startswith(internalemailaddress,'sales')``.
    """
    users = ",".join(USER_ATTRIBUTES)
    queues = ",".join(QUEUE_ATTRIBUTES)
    if query:
        rows = api.get_all("systemusers", {"$select": users, "$filter": f"({query}) and isdisabled eq false"})
        return [_owner("systemuser", r) for r in rows], []
    wanted = [e.strip() for e in entries if e.strip()]
    if not wanted or [w.lower() for w in wanted] == [ALL]:
        rows = api.get_all("systemusers", {"$select": users, "$filter": ACTIVE_USERS})
        return [_owner("systemuser", r) for r in rows], []
    found: dict[str, Owner] = {}
    problems: list[str] = []
    for entry in wanted:
        if entry.lower() == ALL:
            problems.append("'all' stands alone: give it, or a list of users and queues, not both")
            continue
        if entry.lower().startswith(QUEUE_PREFIX):
            name = entry[len(QUEUE_PREFIX):].strip()
            rows = api.get_all("queues", {"$select": queues, "$filter": f"name eq {odata_quote(name)}"})
            kind = "queue"
        elif "@" in entry:
            rows = api.get_all("systemusers", {"$select": users,
                                               "$filter": f"internalemailaddress eq {odata_quote(entry)}"})
            kind = "systemuser"
            if not rows:
                text = f"emailaddress eq {odata_quote(entry)}"
                rows = api.get_all("queues", {"$select": queues, "$filter": text})
                kind = "queue"
        else:
            text = f"domainname eq {odata_quote(entry)}"
            rows = api.get_all("systemusers", {"$select": users, "$filter": text})
            kind = "systemuser"
        if len(rows) != 1:
            what = "users" if kind == "systemuser" else "queues"
            problems.append(f"{entry}: {'no' if not rows else len(rows)} {what} match")
            continue
        owner = _owner(kind, rows[0])
        if owner.mailbox_id is None:
            problems.append(f"{entry}: {owner.name} has no mailbox")
            continue
        found[owner.id] = owner
    return list(found.values()), problems


@dataclass(frozen=True)
class Mailbox:
    id: str
    name: str
    address: str
    profile_id: str | None
    incoming: int | None
    outgoing: int | None
    act: int | None
    approval: int | None
    incoming_status: int | None
    outgoing_status: int | None
    act_status: int | None
    status: int | None
    scheduled: bool
    retries: int
    tested_on: str | None

    @classmethod
    def of(cls, r: dict[str, Any]) -> Mailbox:
        profile = r.get("_emailserverprofile_value")
        return cls(str(r["mailboxid"]).lower(), str(r.get("name") or ""), str(r.get("emailaddress") or ""),
                   str(profile).lower() if profile else None, r.get("incomingemaildeliverymethod"),
                   r.get("outgoingemaildeliverymethod"), r.get("actdeliverymethod"),
                   r.get("emailrouteraccessapproval"), r.get("incomingemailstatus"),
                   r.get("outgoingemailstatus"), r.get("actstatus"),
                   r.get("mailboxstatus"), bool(r.get("testemailconfigurationscheduled")),
                   int(r.get("testemailconfigurationretrycount") or 0), r.get("testmailboxaccesscompletedon"))

    def configured_for(self, profile_id: str) -> bool:
        return (self.profile_id == profile_id and self.incoming == Delivery.SERVER_SIDE_SYNC
                and self.outgoing == Delivery.SERVER_SIDE_SYNC and self.act == ActDelivery.SERVER_SIDE_SYNC)

    @property
    def enabled(self) -> bool:
        """Test & Enable succeeded for every part server-side sync handles."""
        return (not self.scheduled and self.status == TestStatus.SUCCESS
                and TestStatus.FAILURE not in (self.incoming_status, self.outgoing_status, self.act_status))

    @property
    def failed(self) -> bool:
        return not self.scheduled and self.status == TestStatus.FAILURE


def mailboxes(api: WebApi, ids: list[str]) -> dict[str, Mailbox]:
    """The mailboxes of these ids, read now (in pages of forty ids a query)."""
    out: dict[str, Mailbox] = {}
    for i in range(0, len(ids), 40):
        part = ids[i:i + 40]
        text = " or ".join(f"mailboxid eq {mid}" for mid in part)
        for r in api.get_all("mailboxes", {"$select": ",".join(MAILBOX_ATTRIBUTES), "$filter": text}):
            box = Mailbox.of(r)
            out[box.id] = box
    return out


def configure_mailbox(api: WebApi, mailbox_id: str, profile_id: str) -> None:
    """The profile and server-side sync for email (2) and for appointments, contacts and tasks (1)."""
    api.update("mailboxes", mailbox_id, {
        "emailserverprofile@odata.bind": f"/emailserverprofiles({profile_id})",
        "incomingemaildeliverymethod": int(Delivery.SERVER_SIDE_SYNC),
        "outgoingemaildeliverymethod": int(Delivery.SERVER_SIDE_SYNC),
        "actdeliverymethod": int(ActDelivery.SERVER_SIDE_SYNC),
    })


def approve(api: WebApi, owner: Owner) -> None:
    """Approve the owner's email address (the web client's Approve Email)."""
    api.update(owner.entity_set, owner.id, {"emailrouteraccessapproval": int(Approval.APPROVED)})


def test_and_enable(api: WebApi, mailbox_id: str) -> None:
    """Schedule Test & Enable: the asynchronous service tests the mailbox and enables it (or says why not)."""
    api.update("mailboxes", mailbox_id, {"testemailconfigurationscheduled": True})


def has_privilege(api: WebApi, user_id: str, name: str) -> bool:
    """Whether the user's roles grant a privilege (``RetrieveUserPrivileges``, matched by privilege id)."""
    text = f"name eq {odata_quote(name)}"
    found = api.get_all("privileges", {"$select": "privilegeid,name", "$filter": text})
    if not found:
        return False
    wanted = str(found[0]["privilegeid"]).lower()
    held = api.get(f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")
    return any(str(p.get("PrivilegeId", "")).lower() == wanted for p in held.get("RolePrivileges", []))


def last_alert(api: WebApi, mailbox_id: str) -> str:
    """The newest error the server recorded for the mailbox (its alert: a ``tracelog`` of level Error)."""
    rows = api.get_all("tracelogs", {"$select": "text,level,createdon",
                                     "$filter": f"_regardingobjectid_value eq {mailbox_id} and level eq 3",
                                     "$orderby": "createdon desc", "$top": "1"})
    return str(rows[0].get("text") or "") if rows else ""
