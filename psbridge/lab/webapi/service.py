"""The CRM Web API (OData v4) and the discovery service, as a service that never touches a socket.

The HTTP layer (:mod:`psbridge.lab.webapi.http`) settles who is calling — a Windows account
after a Negotiate/NTLM handshake on an Active Directory deployment, or a bearer token on an
Internet-facing (IFD) one, which this module checks: AD FS's signature, the organization as
audience, expiry, a user (UPN) CRM knows. Then it routes:

- ``/api/discovery/v9.0/Instances`` (and ``Instances(UniqueName='org')``): the organizations the
  caller belongs to, with their Web API URLs;
- ``/api/data/v9.0/``: the service document, ``$metadata``, ``WhoAmI``, the entity sets of
  :mod:`psbridge.lab.webapi.schema` (GET with ``$select``/``$filter``/``$orderby``/``$top``/
  ``$count``, paging by ``Prefer: odata.maxpagesize``; POST answering 204 with ``OData-EntityId``
  or, with ``Prefer: return=representation``, 201 and the record; PATCH, upserting unless
  ``If-Match: *``; DELETE of email server profiles), and ``RetrieveUserPrivileges``.

Errors have CRM's body, ``{"error": {"code", "message"}}``, and every answer a ``REQ_ID``.
Records are read and changed through :mod:`psbridge.lab.webapi.records`, inside one
``World.change`` per write.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from psbridge.errors import TwinAnswer
from psbridge.lab.entra.wire import Request
from psbridge.lab.webapi import records
from psbridge.lab.webapi.knobs import JsonKnobs
from psbridge.lab.webapi.records import CrmError, Ctx
from psbridge.lab.webapi.schema import BY_LOGICAL, ENTITIES, metadata_document

API_VERSIONS = ("v9.0", "v9.1")
ODATA_JSON = "application/json; odata.metadata=minimal"
TEST_DELAY = 2.0  # seconds Test & Enable takes at the lab's pace 1 (a real server: minutes)


class TokenRefused(TwinAnswer):
    """A bearer token CRM refuses (401); the message goes into ``error_description``."""


Verifier = Callable[[str, str], dict[str, Any]]  # (token, audience) -> claims, or TokenRefused


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> Reply:
        return cls(status, json.dumps(payload).encode("utf-8"),
                   [("Content-Type", f"{ODATA_JSON}; charset=utf-8"), ("OData-Version", "4.0"),
                    *(extra or [])])


def crm_error(e: CrmError) -> Reply:
    return Reply.json(e.status, {"error": {"code": e.code, "message": e.message}})


def unauthorized(challenges: list[str]) -> Reply:
    body = (b"<html><body><h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>"
            b"</body></html>")
    return Reply(401, body, [("Content-Type", "text/html"), *[("WWW-Authenticate", c) for c in challenges]])


@dataclass
class Site:
    """What a listener serves: the deployment kind and, for IFD, the one organization of its host."""

    deployment: str  # "ad" | "ifd"
    base_url: str  # scheme://host:port of the listener
    organization: str | None = None  # IFD: this host's organization; AD: from the path


class WebApiService:
    def __init__(self, state_dir: Path, knobs: JsonKnobs, *, pace: float = 1.0,
                 verifier: Verifier | None = None, authorization_uri: str = "",
                 org_urls: dict[str, str] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.knobs = knobs
        self.pace = pace
        self.verifier = verifier
        self.authorization_uri = authorization_uri
        # organization name -> its URL (what discovery answers, what an IFD token's audience is)
        self.org_urls = dict(org_urls or {})

    # --- world ---------------------------------------------------------------------------------

    def _world(self) -> Any:
        from psbridge.lab.world import World

        return World.shared(self.state_dir)

    def _org(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        for o in data["organizations"]:
            if o["name"].lower() == name.lower():
                if "crm" not in o:
                    raise CrmError(503, "0x80040216", "The organization is being prepared; try again.")
                found: dict[str, Any] = o
                return found
        raise CrmError(404, "0x8004a101", f"The organization '{name}' does not exist.")

    def _ctx(self) -> Ctx:
        delay = self.knobs.get("test_delay")
        return Ctx(now=time.time(), test_delay=TEST_DELAY * self.pace if delay is None else float(delay))

    # --- sign-in -------------------------------------------------------------------------------

    def bearer_challenge(self, org: str, error: str | None = None) -> str:
        parts = [f'authorization_uri="{self.authorization_uri}"', f'resource_id="{self.resource(org)}"']
        if error:
            parts += ['error="invalid_token"', f'error_description="{error}"']
        return "Bearer " + ", ".join(parts)

    def resource(self, org: str) -> str:
        return self.org_urls.get(org.lower(), "").rstrip("/") + "/"

    def account_from_bearer(self, token: str, org: str | None) -> str:
        """The Windows account (``LAB\\user``) a valid AD FS token names; TokenRefused otherwise."""
        if self.verifier is None:
            raise TokenRefused("bearer tokens are not accepted here")
        audiences = [self.resource(o) for o in ([org] if org else list(self.org_urls))]
        claims = None
        last = TokenRefused("no organization is served here")
        for audience in audiences:
            try:
                claims = self.verifier(token, audience)
                break
            except TokenRefused as e:
                last = e
                if "audience" not in str(e).lower():
                    raise
        if claims is None:
            raise last
        early = float(claims.get("iat", 0)) < float(self.knobs.get("expire_tokens_before") or 0)
        if self.knobs.get("refuse_tokens") or early or self.knobs.take("expire_next"):
            raise TokenRefused("The access token has expired")
        upn = str(claims.get("upn") or "")
        if not upn:
            raise TokenRefused("The token names no user (upn): Dynamics 365 accepts only a user's token")
        return upn

    # --- routing -------------------------------------------------------------------------------

    def handle(self, req: Request, site: Site, account: str) -> Reply:
        """Answer ``req`` for the signed-in ``account`` (``LAB\\user`` or a UPN)."""
        rid = str(uuid.uuid4())
        try:
            reply = self._route(req, site, account)
        except CrmError as e:
            reply = crm_error(e)
        reply.headers.append(("REQ_ID", rid))
        return reply

    def _route(self, req: Request, site: Site, account: str) -> Reply:
        path = req.path
        org = site.organization
        if site.deployment == "ad":
            m = re.match(r"^/(?P<org>[^/]+)(?P<rest>/api/data/.*)$", path)
            if m and m.group("org").lower() != "api":
                org, path = m.group("org"), m.group("rest")
        if path.lower().startswith("/api/discovery/"):
            return self._discovery(req, path, account, site)
        m = re.match(r"^/api/data/(?P<version>v9\.\d)(?:/(?P<rest>.*))?$", path)
        if not m or org is None:
            raise CrmError(404, "0x80060888", f"No HTTP resource was found that matches the request URI "
                           f"'{site.base_url}{req.path}'.")
        if m.group("version") not in API_VERSIONS:
            raise CrmError(404, "0x80060888", f"The version {m.group('version')} of the Web API is not "
                           "supported by this server.")
        base = self._base(site, org, m.group("version"))
        fail = self._injected(req, m.group("rest") or "")
        if fail:
            raise CrmError(500, "0x80040216", fail)
        return self._api(req, org, account, base, m.group("rest") or "")

    def _base(self, site: Site, org: str, version: str) -> str:
        prefix = "" if site.deployment == "ifd" else f"/{org}"
        return f"{site.base_url}{prefix}/api/data/{version}"

    def _injected(self, req: Request, rest: str) -> str | None:
        failing: dict[str, str] = self.knobs.get("fail_requests") or {}
        head = re.split(r"[(/?]", rest, maxsplit=1)[0].lower()
        return failing.get(f"{req.method} {head}") or failing.get(f"{req.method} *")

    def _caller(self, data: dict[str, Any], org: str, account: str) -> str:
        crm = self._org(data, org)["crm"]
        user = records.user_by_domain_name(crm, account)
        if user is None or user.get("isdisabled"):
            raise CrmError(401, "0x8004a001", f"The user {account} is not a member of the organization {org} "
                           "(or the user is disabled).")
        return str(user["systemuserid"])

    def _api(self, req: Request, org: str, account: str, base: str, rest: str) -> Reply:
        world = self._world()
        caller = self._caller(world.data, org, account)
        if rest in ("", "/"):
            return Reply.json(200, {"@odata.context": f"{base}/$metadata", "value": [
                {"name": e.set_name, "kind": "EntitySet", "url": e.set_name} for e in ENTITIES.values()]})
        if rest == "$metadata":
            return Reply(200, metadata_document().encode("utf-8"),
                         [("Content-Type", "application/xml"), ("OData-Version", "4.0")])
        if rest in ("WhoAmI", "WhoAmI()"):
            self._only(req, "GET")
            crm = self._org(world.data, org)["crm"]
            context = f"{base}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
            return Reply.json(200, {"@odata.context": context,
                                    **records.whoami(crm, caller)})
        m = re.match(r"^(?P<set>[A-Za-z_]+)(?:\((?P<key>[^)]*)\))?(?:/(?P<tail>.+))?$", rest)
        if not m:
            raise CrmError(404, "0x80060888", f"Resource not found for the segment '{rest}'.")
        entity = ENTITIES.get(m.group("set"))
        if entity is None:
            raise CrmError(404, "0x80060888", f"Resource not found for the segment '{m.group('set')}'.")
        key = m.group("key")
        if key is not None:
            key = key.strip("'")
            if not re.fullmatch(r"[0-9a-fA-F-]{36}", key):
                raise CrmError(400, "0x80060888", f"Bad Request - Error in query syntax: '{m.group('key')}'.")
        tail = m.group("tail")
        if tail is not None:
            if entity.logical == "systemuser" and key and tail in (
                    "Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
                    "Microsoft.Dynamics.CRM.RetrieveUserPrivileges"):
                self._only(req, "GET")
                crm = self._org(world.data, org)["crm"]
                return Reply.json(200, {
                    "@odata.context":
                        f"{base}/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse",
                    "RolePrivileges": records.role_privileges(crm, key)})
            raise CrmError(404, "0x80060888", f"Resource not found for the segment '{tail}'.")
        if req.method == "GET":
            return self._get(req, world.data, org, caller, entity, key, base)
        if req.method == "POST" and key is None:
            return self._post(req, world, org, caller, entity, base)
        if req.method == "PATCH" and key is not None:
            return self._patch(req, world, org, caller, entity, key, base)
        if req.method == "DELETE" and key is not None:
            return self._delete(world, org, caller, entity, key)
        raise CrmError(405, "0x80060888", f"The HTTP method '{req.method}' is not allowed here.")

    @staticmethod
    def _only(req: Request, method: str) -> None:
        if req.method != method:
            raise CrmError(405, "0x80060888", f"The HTTP method '{req.method}' is not allowed here.")

    # --- reads ---------------------------------------------------------------------------------

    @staticmethod
    def _prefer(req: Request) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in req.headers.get("prefer", "").split(","):
            name, _, value = part.strip().partition("=")
            if name:
                out[name.strip().lower()] = value.strip().strip('"')
        return out

    def _get(self, req: Request, data: dict[str, Any], org: str, caller: str, entity: Any, key: str | None,
             base: str) -> Reply:
        crm = self._org(data, org)["crm"]
        prv = entity.privileges.get("read")
        if prv:
            records.require(crm, caller, prv)
        prefer = self._prefer(req)
        annotations = "odata.include-annotations" in prefer
        select = records.select_of(entity, req.query)
        fields = f"({','.join(select)})" if select else ""
        if key is not None:
            rec = records.find(crm, entity, key)
            return Reply.json(200, {"@odata.context": f"{base}/$metadata#{entity.set_name}{fields}/$entity",
                                    **records.shown(entity, rec, select, annotations)})
        page_size = int(self.knobs.get("page_size"))
        try:
            wanted = int(prefer.get("odata.maxpagesize") or page_size)
        except ValueError:
            wanted = page_size
        size = max(1, min(wanted, page_size))
        skip = records.offset_of(req.query["$skiptoken"]) if "$skiptoken" in req.query else 0
        chunk, nxt, total = records.query(crm, entity, req.query, size, skip)
        body: dict[str, Any] = {"@odata.context": f"{base}/$metadata#{entity.set_name}{fields}"}
        if req.query.get("$count", "").lower() == "true":
            body["@odata.count"] = total
        body["value"] = [records.shown(entity, r, select, annotations) for r in chunk]
        extra = []
        if nxt is not None:
            rest = {k: v for k, v in req.query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = records.skiptoken(nxt)
            body["@odata.nextLink"] = f"{base}/{entity.set_name}?{urlencode(rest, quote_via=quote)}"
        if "odata.maxpagesize" in prefer:
            extra.append(("Preference-Applied", f"odata.maxpagesize={size}"))
        return Reply.json(200, body, extra)

    # --- writes --------------------------------------------------------------------------------

    @staticmethod
    def _body(req: Request) -> Any:
        try:
            return json.loads(req.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            raise CrmError(400, "0x80060888", "The request body is not valid JSON.") from None

    def _written(self, req: Request, entity: Any, rec: dict[str, Any], base: str, created: bool) -> Reply:
        location = f"{base}/{entity.set_name}({rec[entity.key]})"
        headers = [("OData-EntityId", location)]
        if created and "return=representation" in req.headers.get("prefer", "").replace(" ", ""):
            return Reply.json(201, {"@odata.context": f"{base}/$metadata#{entity.set_name}/$entity",
                                    **records.shown(entity, rec)}, headers)
        return Reply(204, b"", [("OData-Version", "4.0"), *headers])

    def _post(self, req: Request, world: Any, org: str, caller: str, entity: Any, base: str) -> Reply:
        body = self._body(req)
        with world.change() as data:
            rec = records.create(self._org(data, org)["crm"], entity, body, caller, self._ctx())
        return self._written(req, entity, rec, base, True)

    def _patch(self, req: Request, world: Any, org: str, caller: str, entity: Any, key: str,
               base: str) -> Reply:
        body = self._body(req)
        with world.change() as data:
            rec, created = records.update(self._org(data, org)["crm"], entity, key, body, caller, self._ctx(),
                                          req.headers.get("if-match"))
        return self._written(req, entity, rec, base, created)

    def _delete(self, world: Any, org: str, caller: str, entity: Any, key: str) -> Reply:
        if entity is not BY_LOGICAL["emailserverprofile"]:
            raise CrmError(405, "0x80040800", f"The 'Delete' method does not support entities of type "
                           f"'{entity.logical}' in this lab.")
        with world.change() as data:
            crm = self._org(data, org)["crm"]
            records.require(crm, caller, "prvWriteEmailServerProfile")
            rec = records.find(crm, entity, key)
            crm["records"]["emailserverprofiles"].remove(rec)
            for box in crm["records"]["mailboxes"]:
                if (box.get("emailserverprofile") or {}).get("id") == rec["emailserverprofileid"]:
                    box["emailserverprofile"] = None
            settings = crm["records"]["organizations"][0]
            if (settings.get("defaultemailserverprofileid") or {}).get("id") == rec["emailserverprofileid"]:
                settings["defaultemailserverprofileid"] = None
        return Reply(204, b"", [("OData-Version", "4.0")])

    # --- discovery -----------------------------------------------------------------------------

    def _discovery(self, req: Request, path: str, account: str, site: Site) -> Reply:
        m = re.match(r"^/api/discovery/(?P<version>v9\.\d)/Instances(?:\((?P<key>[^)]*)\))?/?$", path)
        if not m:
            raise CrmError(404, "0x80060888", f"Resource not found for the segment '{path}'.")
        data = self._world().data
        instances = []
        for o in data["organizations"]:
            crm = o.get("crm")
            if crm is None or records.user_by_domain_name(crm, account) is None:
                continue
            url = self.org_urls.get(o["name"].lower(), "")
            instances.append({
                "Id": o["id"], "UniqueName": o["name"], "UrlName": o["name"],
                "FriendlyName": o["friendly_name"],
                "State": 0 if o.get("state", "Enabled") == "Enabled" else 1, "Version": o.get("version", ""),
                "Url": url, "ApiUrl": f"{url.rstrip('/')}/api/data/{m.group('version')}",
                "LastUpdated": records.iso(time.time()),
            })
        context = f"{site.base_url}/api/discovery/{m.group('version')}/$metadata#Instances"
        key = m.group("key")
        if key is not None:
            km = re.fullmatch(r"UniqueName='(?P<name>[^']*)'|(?P<id>[0-9a-fA-F-]{36})", key)
            if not km:
                raise CrmError(400, "0x80060888", f"Bad Request - Error in query syntax: '{key}'.")
            wanted = (km.group("name") or km.group("id") or "").lower()
            found = next((i for i in instances if wanted in (i["UniqueName"].lower(), i["Id"].lower())), None)
            if found is None:
                raise CrmError(404, "0x80060888", "No organization matches the request.")
            return Reply.json(200, {"@odata.context": f"{context}/$entity", **found})
        return Reply.json(200, {"@odata.context": context, "value": instances})
