"""An organization's CRM records as plain functions over the lab world: seed, read, create, update.

Each organization of ``world.json`` carries a ``crm`` section: its records by entity set, the
security roles, the roles of each user and the privileges. Records hold logical attribute names
(a lookup as ``{"id", "type"}``); what a client sees is made by :func:`shown`. Every write is
checked as CRM checks it — unknown names, option values out of range, text too long, lookups to
records that do not exist, the caller's privileges — and fails with CRM's error code and words
(:class:`CrmError`). These functions never see a socket or a token: the service hands them the
caller, a ``systemuser`` id.

Setting ``testemailconfigurationscheduled`` on a mailbox is Test & Enable: the record is marked
due at ``now + test_delay`` and the asynchronous service (:mod:`psbridge.lab.webapi.serversidesync`)
finishes the job later.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from psbridge.errors import TwinAnswer
from psbridge.lab.webapi import odata
from psbridge.lab.webapi.schema import BY_LOGICAL, ENTITIES, NAMESPACE, Attr, Entity

PRIVILEGES = (
    "prvReadEmailServerProfile", "prvCreateEmailServerProfile", "prvWriteEmailServerProfile",
    "prvReadOrganization", "prvWriteOrganization", "prvReadUser", "prvWriteUser", "prvCreateUser",
    "prvReadQueue", "prvWriteQueue", "prvCreateQueue", "prvReadMailbox", "prvWriteMailbox",
    "prvCreateMailbox", "prvReadTraceLog", "prvApproveRejectEmailAddress",
)
# A privilege's id is the same in every organization of every deployment: derived, not random.
_PRV_NAMESPACE = uuid.UUID("6f1d4a8e-2b1c-4d5e-9a7b-0c3e5f6a7b8c")

READS = ("prvReadEmailServerProfile", "prvReadOrganization", "prvReadUser", "prvReadQueue", "prvReadMailbox",
         "prvReadTraceLog")
ROLES: dict[str, dict[str, str]] = {
    "System Administrator": dict.fromkeys(PRIVILEGES, "Global"),
    # A salesperson reads, and may edit their own mailbox (Basic depth), but approves nothing.
    "Salesperson": {**dict.fromkeys(READS, "Global"), "prvWriteMailbox": "Basic"},
}

APPROVED = 1
DNS_SUFFIX = "local"  # LAB\user is user@lab.local, as the lab's WinRM accounts are


class CrmError(TwinAnswer):
    """What CRM answers a request it refuses: HTTP status, its error code (hex) and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Ctx:
    """What a write needs besides the request: the time and the lab's Test & Enable delay."""

    now: float
    test_delay: float = 0.0
    # The asynchronous service itself writes statuses no client may set.
    system: bool = False


def privilege_id(name: str) -> str:
    return str(uuid.uuid5(_PRV_NAMESPACE, name))


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(entity: Entity, rid: str) -> CrmError:
    return CrmError(404, "0x80040217", f"{entity.logical} With Id = {rid} Does Not Exist")


# --- seeding -----------------------------------------------------------------------------------


def _settings_xml(incoming: int, outgoing: int, act: int) -> str:
    # The shape of defaultemailsettings (inferred from the delivery method attributes it carries).
    return (f"<EmailSettings><IncomingEmailDeliveryMethod>{incoming}</IncomingEmailDeliveryMethod>"
            f"<OutgoingEmailDeliveryMethod>{outgoing}</OutgoingEmailDeliveryMethod>"
            f"<ACTDeliveryMethod>{act}</ACTDeliveryMethod></EmailSettings>")


# The organization's people: SYSTEM and INTEGRATION have no mailbox anyone configures; the lab's
# two Windows accounts (crmadmin signs in, operator may not approve) and two users who only have
# mailboxes.
SEED_USERS = (
    ("SYSTEM", "", "", None, 0, ""),
    ("INTEGRATION", "", "", None, 0, ""),
    ("CRM", "Admin", "crmadmin", "System Administrator", 0, "crmadmin"),
    ("Lab", "Operator", "operator", "Salesperson", 0, "operator"),
    ("Alice", "Adams", "alice", "Salesperson", 0, "alice"),
    ("Bob", "Brown", "bob", "Salesperson", 0, "bob"),
)


def seed_crm(org: dict[str, Any], netbios: str, tenant_domain: str, now: float) -> dict[str, Any]:
    """A new organization's CRM data: what an upgraded 9.x organization holds before the setup."""
    stamp = iso(now)
    base = {"createdon": stamp, "modifiedon": stamp, "versionnumber": 1000}
    bu = {"businessunitid": str(uuid.uuid4()), "name": org["name"], **base}
    records: dict[str, list[dict[str, Any]]] = {e.set_name: [] for e in ENTITIES.values()}
    records["businessunits"].append(bu)
    records["privileges"] = [{"privilegeid": privilege_id(p), "name": p} for p in PRIVILEGES]
    records["organizations"].append({
        "organizationid": org["id"], "name": org.get("friendly_name") or org["name"],
        "defaultemailserverprofileid": None,
        # An organization upgraded from CRM 2016 still names the Email Router.
        "emailconnectionchannel": 1, "defaultemailsettings": _settings_xml(1, 1, 0),
        "requireapprovalforuseremail": True, "requireapprovalforqueueemail": True, **base,
    })
    user_roles: dict[str, list[str]] = {}
    owners: list[tuple[str, dict[str, Any]]] = []
    for first, last, account, role, access, mail in SEED_USERS:
        uid = str(uuid.uuid4())
        user = {
            "systemuserid": uid, "firstname": first, "lastname": last,
            "fullname": f"{first} {last}".strip(),
            "domainname": f"{netbios}\\{account}" if account else "",
            "internalemailaddress": f"{mail}@{tenant_domain}" if mail else None,
            "isdisabled": False, "accessmode": access, "emailrouteraccessapproval": 0,
            "defaultmailbox": None, "businessunitid": {"id": bu["businessunitid"], "type": "businessunit"},
            **base,
        }
        records["systemusers"].append(user)
        # SYSTEM and INTEGRATION hold every privilege, as in CRM.
        user_roles[uid] = [role] if role else ["System Administrator"]
        if user["internalemailaddress"]:
            owners.append(("systemuser", user))
    admin_id = next(u["systemuserid"] for u in records["systemusers"]
                    if u["domainname"].endswith("\\crmadmin"))
    queue = {"queueid": str(uuid.uuid4()), "name": "Support", "emailaddress": f"support@{tenant_domain}",
             "emailrouteraccessapproval": 0, "defaultmailbox": None, "statecode": 0, **base}
    records["queues"].append(queue)
    owners.append(("queue", queue))
    for kind, owner in owners:
        mailbox = {
            "mailboxid": str(uuid.uuid4()),
            "name": owner.get("fullname") or owner.get("name"),
            "emailaddress": owner.get("internalemailaddress") or owner.get("emailaddress"),
            "emailserverprofile": None,
            "incomingemaildeliverymethod": 1, "outgoingemaildeliverymethod": 1, "actdeliverymethod": 0,
            "emailrouteraccessapproval": 0, "incomingemailstatus": 0, "outgoingemailstatus": 0,
            "actstatus": 0, "mailboxstatus": 0, "testemailconfigurationscheduled": False,
            "testemailconfigurationretrycount": 0, "testmailboxaccesscompletedon": None,
            "enabledforincomingemail": True, "enabledforoutgoingemail": True, "enabledforact": True,
            "isforwardmailbox": False, "statecode": 0,
            "regardingobjectid": {"id": owner[f"{kind}id"], "type": kind},
            "ownerid": {"id": owner.get("systemuserid") or admin_id, "type": "systemuser"}, **base,
        }
        records["mailboxes"].append(mailbox)
        owner["defaultmailbox"] = {"id": mailbox["mailboxid"], "type": "mailbox"}
    return {"records": records, "user_roles": user_roles}


def ensure_seeded(data: dict[str, Any], tenant_domain: str, now: float) -> bool:
    """Give every organization of the world its CRM data (an older lab state has none)."""
    changed = False
    for org in data["organizations"]:
        if "crm" not in org:
            org["crm"] = seed_crm(org, data.get("domain", "LAB"), tenant_domain, now)
            changed = True
    return changed


# --- who is calling --------------------------------------------------------------------------------


def user_by_domain_name(crm: dict[str, Any], account: str) -> dict[str, Any] | None:
    """The systemuser a Windows account (``LAB\\crmadmin``, ``crmadmin@lab.local``) signs in as."""
    a = account.strip().lower()
    if "@" in a:  # a UPN, as a claims token names its user
        name, _, dns = a.partition("@")
        a = f"{dns.split('.')[0]}\\{name}"
    for u in crm["records"]["systemusers"]:
        if u.get("domainname") and u["domainname"].lower() == a:
            found: dict[str, Any] = u
            return found
    return None


def privileges_of(crm: dict[str, Any], user_id: str) -> dict[str, str]:
    """Privilege name -> the deepest depth the user's roles give."""
    order = {"Basic": 1, "Local": 2, "Deep": 3, "Global": 4}
    out: dict[str, str] = {}
    for role in crm["user_roles"].get(user_id, []):
        for prv, depth in ROLES.get(role, {}).items():
            if prv not in out or order[depth] > order[out[prv]]:
                out[prv] = depth
    return out


def require(crm: dict[str, Any], caller: str, prv: str, owner: str | None = None) -> None:
    """CRM's privilege check: refused unless the caller's roles grant ``prv`` (Basic depth: own records)."""
    depth = privileges_of(crm, caller).get(prv)
    if depth is None or (depth == "Basic" and owner is not None and owner != caller):
        raise CrmError(403, "0x80040220", f"Principal user (Id={caller}, type=8) is missing {prv} privilege "
                                          f"(Id={privilege_id(prv)})")


# --- reading -----------------------------------------------------------------------------------------


def _records(crm: dict[str, Any], entity: Entity) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = crm["records"].setdefault(entity.set_name, [])
    return recs


def find(crm: dict[str, Any], entity: Entity, rid: str) -> dict[str, Any]:
    key = rid.strip().lower()
    for r in _records(crm, entity):
        if str(r[entity.key]).lower() == key:
            return r
    raise not_found(entity, rid)


def _read_value(attr: Attr, rec: dict[str, Any]) -> Any:
    value = rec.get(attr.name, attr.default)
    if attr.kind == "Lookup":
        if isinstance(value, dict):
            return value.get("id")
        return value  # a bare id (an owner)
    return value


def shown(entity: Entity, rec: dict[str, Any], select: list[str] | None = None,
          annotations: bool = False) -> dict[str, Any]:
    """A record as the Web API answers it: read names, ``@odata.etag``, lookup annotations on request."""
    out: dict[str, Any] = {"@odata.etag": f'W/"{rec.get("versionnumber", 0)}"'}
    for attr in entity.attrs:
        if select is not None and attr.read_name not in select and attr.name != entity.key:
            continue
        out[attr.read_name] = _read_value(attr, rec)
        if annotations and attr.kind == "Lookup":
            value = rec.get(attr.name)
            target = value.get("type") if isinstance(value, dict) else (attr.targets[0] if value else None)
            if target:
                out[f"{attr.read_name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = target
    return out


def _getter(entity: Entity, rec: dict[str, Any]) -> odata.Getter:
    def get(name: str) -> Any:
        attr = entity.by_read_name(name)
        if attr is None:
            raise KeyError(name)
        value = _read_value(attr, rec)
        return str(value).lower() if attr.kind in ("Lookup", "Uniqueidentifier") and value else value

    return get


def unknown_property(entity: Entity, name: str) -> CrmError:
    return CrmError(400, "0x80060888", f"Could not find a property named '{name}' on type "
                                       f"'{NAMESPACE}.{entity.logical}'.")


def query(crm: dict[str, Any], entity: Entity, params: dict[str, str], page_size: int,
          skip: int = 0) -> tuple[list[dict[str, Any]], int | None, int]:
    """The matching records (raw), the offset of the next page (None: last page) and the total."""
    items = list(_records(crm, entity))
    text = params.get("$filter")
    if text:
        try:
            tree = odata.parse(text)
            items = [r for r in items if odata.evaluate(tree, _getter(entity, r))]
        except KeyError as e:
            raise unknown_property(entity, str(e.args[0])) from None
        except odata.FilterError as e:
            raise CrmError(400, "0x80060888", str(e)) from None
    order = params.get("$orderby")
    if order:
        field, _, direction = order.strip().partition(" ")
        attr = entity.by_read_name(field)
        if attr is None:
            raise unknown_property(entity, field)
        items.sort(key=lambda r: (_read_value(attr, r) is None, str(_read_value(attr, r) or "").lower()),
                   reverse=direction.strip().lower() == "desc")
    total = len(items)
    if "$top" in params:
        try:
            items = items[: max(0, int(params["$top"]))]
        except ValueError:
            raise CrmError(400, "0x80060888", f"Invalid value '{params['$top']}' for $top query option found."
                           ) from None
    chunk = items[skip: skip + page_size]
    nxt = skip + page_size if skip + page_size < len(items) else None
    return chunk, nxt, total


def select_of(entity: Entity, params: dict[str, str]) -> list[str] | None:
    text = params.get("$select")
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if entity.by_read_name(n) is None:
            raise unknown_property(entity, n)
    return names


def skiptoken(offset: int) -> str:
    # CRM's token is a paging cookie; the lab's is an opaque offset in the same place.
    return base64.urlsafe_b64encode(f"<cookie page='{offset}'/>".encode()).decode()


def offset_of(token: str) -> int:
    try:
        m = re.search(r"page='(\d+)'", base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        m = None
    if not m:
        raise CrmError(400, "0x80060888", "The $skiptoken query option is not valid.")
    return int(m.group(1))


# --- writing -----------------------------------------------------------------------------------------

_BIND = re.compile(r"^(?:.*/)?(?P<set>[a-z_]+)\((?P<id>[0-9a-fA-F-]{36})\)$")
_EDM_OF = {"Integer": "Edm.Int32", "BigInt": "Edm.Int64", "Picklist": "Edm.Int32", "State": "Edm.Int32",
           "Status": "Edm.Int32", "Boolean": "Edm.Boolean", "String": "Edm.String", "Memo": "Edm.String",
           "DateTime": "Edm.DateTimeOffset", "Uniqueidentifier": "Edm.Guid"}


def _converted(entity: Entity, attr: Attr, value: Any) -> Any:
    if value is None:
        return None
    kind = attr.kind
    bad = CrmError(400, "0x80060888", f"Cannot convert the literal '{value}' to the expected type "
                                      f"'{_EDM_OF.get(kind, 'Edm.String')}'.")
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind in ("Integer", "BigInt", "Picklist", "State", "Status"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        if attr.options and value not in attr.options:
            raise CrmError(400, "0x8004431a", f"A validation error occurred.  The value {value} of "
                           f"'{attr.name}' on record of type '{entity.logical}' is outside the valid range. "
                           f"Accepted Values: {','.join(map(str, attr.options))}")
        low = attr.minimum is not None and value < attr.minimum
        if low or (attr.maximum is not None and value > attr.maximum):
            raise CrmError(400, "0x80044330", f"A validation error occurred. The value of '{attr.name}' on "
                           f"record of type '{entity.logical}' is outside the valid range.")
        return value
    if kind in ("String", "Memo", "DateTime", "Uniqueidentifier"):
        if not isinstance(value, str):
            raise bad
        if attr.max_length is not None and len(value) > attr.max_length:
            raise CrmError(400, "0x80044331", f"A validation error occurred. The length of the "
                           f"'{attr.name}' attribute of the '{entity.logical}' entity exceeded the maximum "
                           f"allowed length of '{attr.max_length}'.")
        return value
    raise bad


def _bound(crm: dict[str, Any], attr: Attr, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    m = _BIND.match(str(value))
    target = next((e for e in ENTITIES.values() if m and e.set_name == m.group("set")), None)
    if m is None or target is None or target.logical not in attr.targets:
        raise CrmError(400, "0x80060888", f"The URI '{value}' is not valid for binding to '{attr.nav}'; it "
                                          "must "
                       f"name a record of {', '.join(attr.targets)}.")
    find(crm, target, m.group("id"))
    return {"id": m.group("id").lower(), "type": target.logical}


def _changes(crm: dict[str, Any], entity: Entity, body: Any, creating: bool, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise CrmError(400, "0x80060888", "The request body is not a JSON object.")
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        if name.endswith("@odata.bind"):
            nav = name[: -len("@odata.bind")]
            attr = entity.by_nav(nav)
            if attr is None:
                raise CrmError(400, "0x80060888", f"An undeclared property '{nav}' which only has property "
                               "annotations in the payload but no property value was found in the payload. "
                               "In "
                               "OData, only declared navigation properties and declared named streams can be "
                               "represented as properties without values.")
            out[attr.name] = _bound(crm, attr, value)
            continue
        attr = entity.attr(name)
        if attr is None or attr.kind == "Lookup":
            raise unknown_property(entity, name)
        allowed = attr.create if creating else attr.update
        if not allowed and not ctx.system:
            raise CrmError(400, "0x80040203", f"The '{name}' attribute cannot be set on "
                           f"{'create' if creating else 'update'} of a {entity.logical} record.")
        out[name] = _converted(entity, attr, value)
    return out


def _stamp(rec: dict[str, Any], ctx: Ctx) -> None:
    rec["modifiedon"] = iso(ctx.now)
    rec["versionnumber"] = int(rec.get("versionnumber") or 0) + 1


def create(crm: dict[str, Any], entity: Entity, body: Any, caller: str, ctx: Ctx,
           rid: str | None = None) -> dict[str, Any]:
    if not entity.creatable:
        raise CrmError(405, "0x80040800", f"The 'Create' method does not support entities of type "
                       f"'{entity.logical}'.")
    prv = entity.privileges.get("create")
    if prv:
        require(crm, caller, prv)
    changes = _changes(crm, entity, body, True, ctx)
    if entity is BY_LOGICAL["emailserverprofile"]:
        for needed in ("name", "servertype"):
            if changes.get(needed) is None:
                raise CrmError(400, "0x80040203", f"Attribute '{needed}' cannot be NULL")
    key = (rid or changes.pop(entity.key, None) or str(uuid.uuid4())).lower()
    if any(str(r[entity.key]).lower() == key for r in _records(crm, entity)):
        raise CrmError(412, "0x80040237", "A record with matching key values already exists.")
    rec: dict[str, Any] = {a.name: a.default for a in entity.attrs if a.default is not None}
    rec.update(changes)
    rec[entity.key] = key
    rec.setdefault("createdon", iso(ctx.now))
    if entity.attr("ownerid") is not None and rec.get("ownerid") is None:
        rec["ownerid"] = {"id": caller, "type": "systemuser"}
    if entity.attr("organizationid") is not None:
        rec["organizationid"] = {"id": crm["records"]["organizations"][0]["organizationid"],
                                 "type": "organization"}
    rec["versionnumber"] = 1000
    _stamp(rec, ctx)
    _records(crm, entity).append(rec)
    return rec


def _owner_of(crm: dict[str, Any], entity: Entity, rec: dict[str, Any]) -> str | None:
    if entity.logical == "mailbox":
        regarding = rec.get("regardingobjectid") or {}
        if regarding.get("type") == "systemuser":
            return str(regarding.get("id"))
        return str((rec.get("ownerid") or {}).get("id"))
    if entity.logical == "systemuser":
        return str(rec["systemuserid"])
    return None


def update(crm: dict[str, Any], entity: Entity, rid: str, body: Any, caller: str, ctx: Ctx,
           if_match: str | None = None) -> tuple[dict[str, Any], bool]:
    """Update (or, as PATCH without ``If-Match: *`` does, create); the record and whether it is new."""
    try:
        rec = find(crm, entity, rid)
    except CrmError:
        if if_match == "*" or not entity.creatable:
            raise
        return create(crm, entity, body, caller, ctx, rid), True
    prv = entity.privileges.get("write")
    if prv and not ctx.system:
        require(crm, caller, prv, _owner_of(crm, entity, rec))
    changes = _changes(crm, entity, body, False, ctx)
    approval = changes.get("emailrouteraccessapproval")
    if approval is not None and approval != rec.get("emailrouteraccessapproval") and not ctx.system:
        require(crm, caller, "prvApproveRejectEmailAddress")
    rec.update(changes)
    if approval is not None:
        _mirror_approval(crm, entity, rec, approval)
    if entity.logical == "mailbox" and changes.get("testemailconfigurationscheduled") and not ctx.system:
        # Test & Enable: the asynchronous service runs it later; until then the statuses say "not run".
        rec.update({"incomingemailstatus": 0, "outgoingemailstatus": 0, "actstatus": 0, "mailboxstatus": 0,
                    "_test_due": ctx.now + ctx.test_delay})
    _stamp(rec, ctx)
    return rec, False


def _mirror_approval(crm: dict[str, Any], entity: Entity, rec: dict[str, Any], value: int) -> None:
    """A mailbox shows its owner's approval, and approving the mailbox approves its owner."""
    records = crm["records"]
    if entity.logical in ("systemuser", "queue"):
        box = rec.get("defaultmailbox") or {}
        for m in records["mailboxes"]:
            if m["mailboxid"] == box.get("id"):
                m["emailrouteraccessapproval"] = value
    elif entity.logical == "mailbox":
        regarding = rec.get("regardingobjectid") or {}
        kind = regarding.get("type")
        if kind in ("systemuser", "queue"):
            for o in records[f"{kind}s" if kind == "systemuser" else "queues"]:
                if o[f"{kind}id"] == regarding.get("id"):
                    o["emailrouteraccessapproval"] = value


def whoami(crm: dict[str, Any], caller: str) -> dict[str, Any]:
    user = find(crm, BY_LOGICAL["systemuser"], caller)
    bu = user.get("businessunitid") or {}
    return {"BusinessUnitId": bu.get("id"), "UserId": caller,
            "OrganizationId": crm["records"]["organizations"][0]["organizationid"]}


def role_privileges(crm: dict[str, Any], user_id: str) -> list[dict[str, Any]]:
    user = find(crm, BY_LOGICAL["systemuser"], user_id)
    bu = (user.get("businessunitid") or {}).get("id")
    return [{"Depth": depth, "PrivilegeId": privilege_id(name), "BusinessUnitId": bu}
            for name, depth in sorted(privileges_of(crm, user_id).items())]
