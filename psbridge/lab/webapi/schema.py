"""The entities the CRM Web API twin serves, with the names and option values of CRM 9.x.

Taken from the Customer Engagement (on-premises) entity reference: entity set names, primary
keys, logical attribute names, string lengths, the values each choice (picklist) accepts, which
attributes are set on create or update, and the lookups with the navigation property a client
binds them through (``emailserverprofile@odata.bind``). Only the attributes the server-side sync
setup touches, or shows, are modelled; the ``$metadata`` document is generated from this table,
so a client that checks its names against ``$metadata`` checks them against the same facts the
twin enforces.

Where the reference says nothing (a lookup's navigation property name on ``organization``, the
exact error codes), the choice is marked *inferred* next to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

Kind = Literal["String", "Memo", "Integer", "BigInt", "Boolean", "Picklist", "State", "Status", "DateTime",
               "Uniqueidentifier", "Lookup"]

NAMESPACE = "Microsoft.Dynamics.CRM"

_EDM = {"String": "Edm.String", "Memo": "Edm.String", "Integer": "Edm.Int32", "BigInt": "Edm.Int64",
        "Boolean": "Edm.Boolean", "Picklist": "Edm.Int32", "State": "Edm.Int32", "Status": "Edm.Int32",
        "DateTime": "Edm.DateTimeOffset", "Uniqueidentifier": "Edm.Guid", "Lookup": "Edm.Guid"}


@dataclass(frozen=True)
class Attr:
    """One attribute: its logical name, type and what a client may do with it."""

    name: str
    kind: Kind
    max_length: int | None = None
    options: tuple[int, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    create: bool = True
    update: bool = True
    default: Any = None
    # Lookups: the entities it may point at and the single-valued navigation property bound to it.
    targets: tuple[str, ...] = ()
    nav: str | None = None

    @property
    def read_name(self) -> str:
        """What a GET answers with: ``_name_value`` for a lookup, the name otherwise."""
        return f"_{self.name}_value" if self.kind == "Lookup" else self.name


@dataclass(frozen=True)
class Entity:
    logical: str
    set_name: str
    key: str
    primary_name: str
    attrs: tuple[Attr, ...]
    creatable: bool = True
    # Privileges a caller needs, by operation (CRM's prv names).
    privileges: dict[str, str] = field(default_factory=dict)

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)

    def by_nav(self, nav: str) -> Attr | None:
        return next((a for a in self.attrs if a.nav == nav), None)

    def by_read_name(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.read_name == name), None)

    @property
    def read_names(self) -> list[str]:
        return [a.read_name for a in self.attrs]


def _s(name: str, length: int, **kw: Any) -> Attr:
    return Attr(name, "String", max_length=length, **kw)


def _b(name: str, default: bool | None = None, **kw: Any) -> Attr:
    return Attr(name, "Boolean", default=default, **kw)


def _p(name: str, options: tuple[int, ...], default: int | None = None, **kw: Any) -> Attr:
    return Attr(name, "Picklist", options=options, default=default, **kw)


_CREDENTIALS = (0, 1, 2, 3, 4)  # user or queue, profile, server to server, Windows integrated, anonymous
_PROTOCOLS = (0, 1, 2, 3)  # auto detect, Negotiate, NTLM, Basic
_TEST_STATUS = (0, 1, 2)  # not run, success, failure
_APPROVAL = (0, 1, 2, 3)  # empty, approved, pending approval, rejected

_COMMON_READONLY = (
    Attr("createdon", "DateTime", create=False, update=False),
    Attr("modifiedon", "DateTime", create=False, update=False),
    Attr("versionnumber", "BigInt", create=False, update=False),
)

EMAIL_SERVER_PROFILE = Entity(
    "emailserverprofile", "emailserverprofiles", "emailserverprofileid", "name",
    (
        Attr("emailserverprofileid", "Uniqueidentifier", update=False),
        _s("name", 100),
        Attr("description", "Memo", max_length=2000),
        # Exchange Server, POP3/SMTP, Exchange Server (Hybrid), Exchange Online (Hybrid)
        _p("servertype", (0, 1, 2, 3)),
        _p("incomingcredentialretrieval", _CREDENTIALS),
        _p("outgoingcredentialretrieval", _CREDENTIALS),
        _p("incomingauthenticationprotocol", _PROTOCOLS),
        _p("outgoingauthenticationprotocol", _PROTOCOLS),
        _b("usesamesettingsforoutgoingconnections", True),
        _b("useautodiscover", False),
        _b("usedefaulttenantid", True),
        _s("exchangeonlinetenantid", 36),
        _s("incomingserverlocation", 2084),
        _s("outgoingserverlocation", 2084),
        _b("incomingusessl", True),
        _b("outgoingusessl", True),
        Attr("minpollingintervalinminutes", "Integer", minimum=0, maximum=1440),
        Attr("processemailsreceivedafter", "DateTime"),
        _b("moveundeliveredemails", False),
        _b("timeoutmailboxconnection", True),
        _b("sendemailalert", False),
        _p("lasttestexecutionstatus", (0, 1, 2)),
        _p("lastauthorizationstatus", (0, 1)),
        Attr("lastcrmmessage", "Memo", max_length=2084),
        Attr("lastteststarttime", "DateTime"),
        Attr("statecode", "State", options=(0, 1), create=False, default=0),
        Attr("statuscode", "Status", options=(1, 2), default=1),
        Attr("ownerid", "Lookup", targets=("systemuser",), nav="ownerid", update=False),
        Attr("organizationid", "Lookup", targets=("organization",), create=False, update=False),
        *_COMMON_READONLY,
    ),
    privileges={"create": "prvCreateEmailServerProfile", "write": "prvWriteEmailServerProfile",
                "read": "prvReadEmailServerProfile"},
)

ORGANIZATION = Entity(
    "organization", "organizations", "organizationid", "name",
    (
        Attr("organizationid", "Uniqueidentifier", update=False),
        _s("name", 160, update=False),
        # The navigation property is named as the lookup (inferred: the reference names the
        # attribute; a client should check $metadata before binding, as psbridge does).
        Attr("defaultemailserverprofileid", "Lookup", targets=("emailserverprofile",),
             nav="defaultemailserverprofileid"),
        _p("emailconnectionchannel", (0, 1), 0),  # server-side sync, Email Router
        Attr("defaultemailsettings", "String", max_length=1073741823),
        _b("requireapprovalforuseremail", True),
        _b("requireapprovalforqueueemail", True),
        *_COMMON_READONLY,
    ),
    creatable=False,
    privileges={"write": "prvWriteOrganization", "read": "prvReadOrganization"},
)

SYSTEM_USER = Entity(
    "systemuser", "systemusers", "systemuserid", "fullname",
    (
        Attr("systemuserid", "Uniqueidentifier", update=False),
        _s("fullname", 200, create=False, update=False),
        _s("firstname", 256),
        _s("lastname", 256),
        _s("domainname", 1024),
        _s("internalemailaddress", 100),
        _b("isdisabled", False, create=False),
        _p("accessmode", (0, 1, 2, 3, 4, 5), 0),
        _p("emailrouteraccessapproval", _APPROVAL, 0),
        Attr("defaultmailbox", "Lookup", targets=("mailbox",), create=False, update=False),
        Attr("businessunitid", "Lookup", targets=("businessunit",), nav="businessunitid"),
        *_COMMON_READONLY,
    ),
    privileges={"create": "prvCreateUser", "write": "prvWriteUser", "read": "prvReadUser"},
)

QUEUE = Entity(
    "queue", "queues", "queueid", "name",
    (
        Attr("queueid", "Uniqueidentifier", update=False),
        _s("name", 400),
        _s("emailaddress", 100),
        _p("emailrouteraccessapproval", _APPROVAL, 0),
        Attr("defaultmailbox", "Lookup", targets=("mailbox",), create=False, update=False),
        Attr("statecode", "State", options=(0, 1), create=False, default=0),
        *_COMMON_READONLY,
    ),
    privileges={"create": "prvCreateQueue", "write": "prvWriteQueue", "read": "prvReadQueue"},
)

MAILBOX = Entity(
    "mailbox", "mailboxes", "mailboxid", "name",
    (
        Attr("mailboxid", "Uniqueidentifier", update=False),
        _s("name", 200),
        _s("emailaddress", 100),
        Attr("emailserverprofile", "Lookup", targets=("emailserverprofile",), nav="emailserverprofile"),
        _p("incomingemaildeliverymethod", (0, 1, 2, 3)),  # none, Outlook, server-side sync, forward mailbox
        _p("outgoingemaildeliverymethod", (0, 1, 2)),  # none, Outlook, server-side sync
        _p("actdeliverymethod", (0, 1, 2)),  # Outlook, server-side sync, none: a different code
        _p("emailrouteraccessapproval", _APPROVAL, 0),
        _p("incomingemailstatus", _TEST_STATUS, 0, create=False),
        _p("outgoingemailstatus", _TEST_STATUS, 0, create=False),
        _p("actstatus", _TEST_STATUS, 0, create=False),
        _p("mailboxstatus", _TEST_STATUS, 0, create=False, update=False),
        _b("testemailconfigurationscheduled", False),
        Attr("testemailconfigurationretrycount", "Integer", minimum=0, create=False, update=False,
             default=0),
        Attr("testmailboxaccesscompletedon", "DateTime", create=False, update=False),
        _b("enabledforincomingemail", True, create=False),
        _b("enabledforoutgoingemail", True, create=False),
        _b("enabledforact", True, create=False),
        _b("isforwardmailbox", False),
        Attr("regardingobjectid", "Lookup", targets=("queue", "systemuser"), update=False),
        Attr("ownerid", "Lookup", targets=("systemuser",), nav="ownerid", update=False),
        Attr("statecode", "State", options=(0, 1), create=False, default=0),
        *_COMMON_READONLY,
    ),
    privileges={"create": "prvCreateMailbox", "write": "prvWriteMailbox", "read": "prvReadMailbox"},
)

TRACE_LOG = Entity(
    "tracelog", "tracelogs", "tracelogid", "text",
    (
        Attr("tracelogid", "Uniqueidentifier", update=False),
        _s("text", 2000, update=False),
        _p("level", (1, 2, 3), update=False),  # information, warning, error
        Attr("tracecode", "Integer", minimum=0, maximum=1000000000, update=False),
        _s("machinename", 320, update=False),
        Attr("regardingobjectid", "Lookup", targets=("emailserverprofile", "mailbox"), update=False),
        Attr("createdon", "DateTime", create=False, update=False),
    ),
    privileges={"read": "prvReadTraceLog"},
)

PRIVILEGE = Entity(
    "privilege", "privileges", "privilegeid", "name",
    (Attr("privilegeid", "Uniqueidentifier", create=False, update=False),
     _s("name", 100, create=False, update=False)),
    creatable=False,
)

BUSINESS_UNIT = Entity(
    "businessunit", "businessunits", "businessunitid", "name",
    (Attr("businessunitid", "Uniqueidentifier", create=False, update=False),
     _s("name", 160, update=False)),
    creatable=False,
)

ENTITIES: dict[str, Entity] = {e.set_name: e for e in (
    EMAIL_SERVER_PROFILE, ORGANIZATION, SYSTEM_USER, QUEUE, MAILBOX, TRACE_LOG, PRIVILEGE, BUSINESS_UNIT)}
BY_LOGICAL: dict[str, Entity] = {e.logical: e for e in ENTITIES.values()}


def metadata_document() -> str:
    """The service's CSDL ``$metadata``: entity types, their properties, navigation properties,
    the entity container and the two functions the setup calls (``WhoAmI``, ``RetrieveUserPrivileges``)."""
    ns = NAMESPACE
    types = []
    for e in ENTITIES.values():
        props = [f'<Key><PropertyRef Name={quoteattr(e.key)}/></Key>']
        for a in e.attrs:
            props.append(f"<Property Name={quoteattr(a.read_name)} Type={quoteattr(_EDM[a.kind])}/>")
        for a in e.attrs:
            if a.kind == "Lookup" and a.nav:
                target = a.targets[0]
                props.append(f"<NavigationProperty Name={quoteattr(a.nav)} "
                             f"Type={quoteattr(f'{ns}.{target}')}/>")
        types.append(f"<EntityType Name={quoteattr(e.logical)}>{''.join(props)}</EntityType>")
    sets = "".join(
        f"<EntitySet Name={quoteattr(e.set_name)} EntityType={quoteattr(f'{ns}.{e.logical}')}/>"
        for e in ENTITIES.values())
    complex_types = (
        '<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid"/>'
        '<Property Name="UserId" Type="Edm.Guid"/><Property Name="OrganizationId" '
        'Type="Edm.Guid"/></ComplexType>'
        '<ComplexType Name="RolePrivilege"><Property Name="Depth" Type="Edm.String"/>'
        '<Property Name="PrivilegeId" Type="Edm.Guid"/><Property Name="BusinessUnitId" Type="Edm.Guid"/>'
        '</ComplexType>'
        '<ComplexType Name="RetrieveUserPrivilegesResponse">'
        f'<Property Name="RolePrivileges" Type="Collection({ns}.RolePrivilege)"/></ComplexType>'
    )
    functions = (
        f'<Function Name="WhoAmI"><ReturnType Type="{ns}.WhoAmIResponse" Nullable="false"/></Function>'
        f'<Function Name="RetrieveUserPrivileges" IsBound="true"><Parameter Name="entity" '
        f'Type="{ns}.systemuser" Nullable="false"/><ReturnType Type="{ns}.RetrieveUserPrivilegesResponse" '
        'Nullable="false"/></Function>'
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
        '<edmx:DataServices>'
        f'<Schema Namespace="{ns}" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        + "".join(types) + complex_types + functions
        + f'<EntityContainer Name="System">{sets}'
        f'<FunctionImport Name="WhoAmI" Function="{ns}.WhoAmI"/></EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )
