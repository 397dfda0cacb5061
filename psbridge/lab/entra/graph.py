"""The Microsoft Graph v1.0 subset: what psbridge's cloud operations and ConfigureCrmServerSideSync call.

Every request needs a bearer token the twin issued (401 ``InvalidAuthenticationToken``
otherwise, expired or badly signed alike) holding a permission the operation accepts (403
``Authorization_RequestDenied`` "Insufficient privileges to complete the operation.", as
Graph answers). Injected faults (429 with ``Retry-After``, 503) come first, as a gateway
throttles before it authorizes.

Resources: ``/organization``, ``/me``, ``/applications`` (+ ``addPassword``/``removePassword``),
``/servicePrincipals`` (also ``servicePrincipals(appId='...')``) with ``appRoleAssignments``
and ``appRoleAssignedTo``, ``/oauth2PermissionGrants``.

Key credentials: a written entry carries ``key`` (base64 DER certificate); the twin fills
``customKeyIdentifier`` (SHA-1 thumbprint, upper-case hex) and the dates from the certificate.
As Graph does, ``key`` is returned only for a single object read with
``$select=keyCredentials``. An entry written back without ``key`` but with the ``keyId`` of a
credential already there keeps that credential (so a read-modify-write PATCH works).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import secrets
import string
from collections.abc import Callable
from typing import Any

from cryptography import x509

from psbridge.errors import TwinAnswer
from psbridge.lab.entra import odata
from psbridge.lab.entra.directory import Directory, graph_time, new_id, now_utc
from psbridge.lab.entra.knobs import Knobs
from psbridge.lab.entra.tokens import GRAPH_AUDIENCES, TokenIssuer, TokenRejected
from psbridge.lab.entra.wire import Request, Response, new_request_id

DENIED = "Insufficient privileges to complete the operation."

# Which permissions let a caller do what (application role values / delegated scope values).
READ_APPS = ({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
              "Directory.ReadWrite.All"},
             {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
              "Directory.AccessAsUser.All"})
WRITE_APPS = ({"Application.ReadWrite.All"}, {"Application.ReadWrite.All", "Directory.AccessAsUser.All"})
READ_ORG = ({"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All",
             "Directory.ReadWrite.All"},
            {"User.Read", "Organization.Read.All", "Directory.Read.All", "Directory.AccessAsUser.All"})
ASSIGN_ROLES = ({"AppRoleAssignment.ReadWrite.All"},
                {"AppRoleAssignment.ReadWrite.All", "Directory.AccessAsUser.All"})
GRANTS = ({"DelegatedPermissionGrant.ReadWrite.All"},
          {"DelegatedPermissionGrant.ReadWrite.All", "Directory.AccessAsUser.All"})
READ_GRANTS = ({"DelegatedPermissionGrant.ReadWrite.All", "Directory.Read.All"},
               {"DelegatedPermissionGrant.ReadWrite.All", "Directory.Read.All", "Directory.AccessAsUser.All"})

APP_WRITABLE = {"displayName", "signInAudience", "web", "publicClient", "spa", "requiredResourceAccess",
                "keyCredentials", "identifierUris", "tags", "notes", "description", "isFallbackPublicClient",
                "api", "appRoles", "info"}
SP_WRITABLE = {"displayName", "keyCredentials", "servicePrincipalNames", "tags", "accountEnabled",
               "appRoleAssignmentRequired", "notes", "description", "preferredSingleSignOnMode"}


class GraphError(TwinAnswer):
    """What Graph answers for a request it refuses: its status, error code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _bad(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def _not_found(object_id: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{object_id}' does not exist or one of its queried reference-property "
                      "objects are not present.")


def _thumbprint_form(given: str | None, thumb: str) -> str:
    """Graph shows a certificate's identifier as its hex thumbprint, however it was written.

    Scripts often send the hash base64-encoded (``[Convert]::ToBase64String($cert.GetCertHash())``).
    """
    if not given:
        return thumb
    try:
        if base64.b64decode(given, validate=True).hex().upper() == thumb:
            return thumb
    except (binascii.Error, ValueError):
        pass
    return given


class Graph:
    def __init__(self, directory: Directory, issuer: TokenIssuer, knobs: Knobs, graph_url: str) -> None:
        self.d = directory
        self.issuer = issuer
        self.knobs = knobs
        self.graph_url = graph_url
        self.audiences = (*GRAPH_AUDIENCES, graph_url)

    # --- envelope ------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        request_id = new_request_id()
        ids = {"request-id": request_id,
               "client-request-id": req.headers.get("client-request-id", request_id)}
        try:
            fault = self.knobs.take_fault()
            if fault:
                status, retry_after = fault
                code, msg = (("TooManyRequests", "Too many requests") if status == 429
                             else ("serviceNotAvailable", "Service unavailable"))
                raise GraphError(status, code, msg, {"Retry-After": str(retry_after)})
            claims = self._authenticate(req)
            payload, status = self._route(req, claims)
        except GraphError as e:
            body = {"error": {"code": e.code, "message": e.message, "innerError": {
                "date": graph_time(now_utc()), "request-id": request_id,
                "client-request-id": ids["client-request-id"]}}}
            headers = {**ids, **e.headers}
            if e.status == 401:
                headers["WWW-Authenticate"] = (
                    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                    'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
                )
            return Response.json(e.status, body, headers)
        if status == 204:
            return Response(204, b"", ids)
        return Response.json(status, payload, ids)

    def _authenticate(self, req: Request) -> dict[str, Any]:
        auth = req.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            return self.issuer.verify(token.strip(), self.audiences)
        except TokenRejected as e:
            raise GraphError(401, "InvalidAuthenticationToken", str(e)) from None

    @staticmethod
    def _require(claims: dict[str, Any], allowed: tuple[set[str], set[str]]) -> None:
        app_ok, delegated_ok = allowed
        if "scp" in claims:
            have = set(str(claims["scp"]).split())
            if have & delegated_ok:
                return
        elif set(claims.get("roles", [])) & app_ok:
            return
        raise GraphError(403, "Authorization_RequestDenied", DENIED)

    def _context(self, what: str, select: str | None = None) -> str:
        """``@odata.context``; with ``$select`` Graph names the fields: ``#servicePrincipals(id,appId)``."""
        if select:
            fields = ",".join(f.strip() for f in select.split(",") if f.strip())
            head, slash, rest = what.partition("/")
            what = f"{head}({fields}){slash}{rest}"
        return f"{self.graph_url}/v1.0/$metadata#{what}"

    def _route(self, req: Request, claims: dict[str, Any]) -> tuple[Any, int]:
        path = req.path
        if not path.startswith("/v1.0/"):
            version = path.split("/")[1] if "/" in path else path
            raise GraphError(400, "BadRequest", f"Invalid version: {version}")
        rest = path[len("/v1.0/"):].strip("/")
        m = re.fullmatch(r"servicePrincipals\(appId='([^']*)'\)(/.*)?", rest, flags=re.IGNORECASE)
        if m:
            sp = self.d.sp_by_app_id(m.group(1))
            if sp is None:
                raise _not_found(f"appId '{m.group(1)}'")
            rest = f"servicePrincipals/{sp['id']}{m.group(2) or ''}"
        parts = rest.split("/")
        method = req.method
        handler: Callable[..., tuple[Any, int]] | None = None
        args: tuple[Any, ...] = ()
        head = parts[0]
        if head == "organization" and len(parts) == 1 and method == "GET":
            handler = self._organization
        elif head == "me" and len(parts) == 1 and method == "GET":
            handler = self._me
        elif head in ("applications", "servicePrincipals"):
            handler, args = self._directory_objects(head, parts[1:], method)
        elif head == "oauth2PermissionGrants":
            handler, args = self._grants_route(parts[1:], method)
        if handler is None:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{parts[-1]}'.")
        return handler(req, claims, *args)

    # --- organization, me ----------------------------------------------------------------

    def _organization(self, req: Request, claims: dict[str, Any]) -> tuple[Any, int]:
        self._require(claims, READ_ORG)
        t = self.d.data["tenant"]
        org = {
            "id": t["id"],
            "displayName": t["displayName"],
            "tenantType": "AAD",
            "createdDateTime": t["createdDateTime"],
            "countryLetterCode": "US",
            "preferredLanguage": "en",
            "verifiedDomains": [
                {"name": t["domain"], "type": "Managed", "isDefault": True, "isInitial": True,
                 "capabilities": "Email, OfficeCommunicationsOnlineService"}
            ],
        }
        return {"@odata.context": self._context("organization"),
                "value": [odata.select(org, req.query.get("$select"))]}, 200

    def _me(self, req: Request, claims: dict[str, Any]) -> tuple[Any, int]:
        if "scp" not in claims:
            raise GraphError(400, "BadRequest",
                             "/me request is only valid with delegated authentication flow.")
        self._require(claims, ({"never"}, {"User.Read", "User.Read.All", "Directory.Read.All"}))
        user = self.d.user_by_id(claims["oid"])
        if user is None:
            raise _not_found(claims["oid"])
        shown = {k: v for k, v in user.items() if k != "directoryRoles"}
        return {"@odata.context": self._context("users/$entity"), **shown}, 200

    # --- applications and service principals -------------------------------------------

    def _directory_objects(self, head: str, parts: list[str], method: str
                           ) -> tuple[Callable[..., tuple[Any, int]] | None, tuple[Any, ...]]:
        if not parts:
            return {"GET": self._list_objects, "POST": self._create_object}.get(method), (head,)
        object_id, sub = parts[0], parts[1:]
        if not sub:
            return {"GET": self._get_object, "PATCH": self._patch_object,
                    "DELETE": self._delete_object}.get(method), (head, object_id)
        if head == "applications" and sub == ["addPassword"] and method == "POST":
            return self._add_password, (object_id,)
        if head == "applications" and sub == ["removePassword"] and method == "POST":
            return self._remove_password, (object_id,)
        if head == "servicePrincipals" and sub[0] in ("appRoleAssignments", "appRoleAssignedTo"):
            if len(sub) == 1 and method in ("GET", "POST"):
                fn = self._list_assignments if method == "GET" else self._assign_role
                return fn, (object_id, sub[0])
            if len(sub) == 2 and method == "DELETE":
                return self._unassign_role, (object_id, sub[1])
        return None, ()

    def _find(self, head: str, object_id: str) -> dict[str, Any]:
        obj = self.d.by_id(head, object_id)
        if obj is None:
            raise _not_found(object_id)
        return obj

    def _shown(self, obj: dict[str, Any], select: str | None, single: bool) -> dict[str, Any]:
        out = dict(obj)
        with_key = single and bool(select) and "keycredentials" in (select or "").lower()
        out["keyCredentials"] = [
            {**k, "key": k.get("key") if with_key else None} for k in obj.get("keyCredentials", [])
        ]
        out["passwordCredentials"] = [dict(p) for p in obj.get("passwordCredentials", [])]
        for internal in [k for k in out if k.startswith("_")]:
            del out[internal]
        return odata.select(out, select)

    def _list_objects(self, req: Request, claims: dict[str, Any], head: str) -> tuple[Any, int]:
        self._require(claims, READ_APPS)
        items = self.d.objects(head)
        if "$filter" in req.query:
            try:
                clauses = odata.parse_filter(req.query["$filter"], ("appId", "displayName", "id",
                                                                     "servicePrincipalType"), head[:-1])
            except odata.QueryError as e:
                raise _bad(str(e), "Request_UnsupportedQuery") from None
            items = [o for o in items if odata.matches(o, clauses)]
        shown = [self._shown(o, req.query.get("$select"), single=False) for o in items]
        return self._page(req, head, shown), 200

    def _page(self, req: Request, what: str, items: list[Any]) -> dict[str, Any]:
        try:
            body = odata.page(items, req.query, int(self.knobs.get("page_size")),
                              f"{self.graph_url}{req.path}")
        except odata.QueryError as e:
            raise _bad(str(e)) from None
        return {"@odata.context": self._context(what, req.query.get("$select")), **body}

    def _get_object(self, req: Request, claims: dict[str, Any], head: str, object_id: str) -> tuple[Any, int]:
        self._require(claims, READ_APPS)
        obj = self._find(head, object_id)
        return {"@odata.context": self._context(f"{head}/$entity", req.query.get("$select")),
                **self._shown(obj, req.query.get("$select"), single=True)}, 200

    def _create_object(self, req: Request, claims: dict[str, Any], head: str) -> tuple[Any, int]:
        self._require(claims, WRITE_APPS)
        body = req.json()
        if not isinstance(body, dict):
            raise _bad("Empty Payload. JSON content expected.")
        with self.d.change():
            obj = self._new_app(body) if head == "applications" else self._new_sp(body)
            self.d.data[head].append(obj)
        return {"@odata.context": self._context(f"{head}/$entity"), **self._shown(obj, None, True)}, 201

    def _new_app(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("displayName"):
            raise _bad("Invalid value specified for property 'displayName' of resource 'Application'.")
        unknown = set(body) - APP_WRITABLE
        if unknown:
            name = sorted(unknown)[0]
            raise _bad(f"Property '{name}' does not exist on type 'microsoft.graph.application'.")
        app: dict[str, Any] = {
            "id": new_id(),
            "appId": new_id(),
            "displayName": body["displayName"],
            # Graph's default when none is given: any organization and personal accounts.
            "signInAudience": body.get("signInAudience", "AzureADandPersonalMicrosoftAccount"),
            "createdDateTime": graph_time(now_utc()),
            "publisherDomain": self.d.domain,
            "identifierUris": [],
            "isFallbackPublicClient": None,
            "tags": [],
            "notes": None,
            "web": {"redirectUris": [], "homePageUrl": None, "logoutUrl": None,
                    "implicitGrantSettings": {"enableAccessTokenIssuance": False,
                                              "enableIdTokenIssuance": False}},
            "publicClient": {"redirectUris": []},
            "spa": {"redirectUris": []},
            "requiredResourceAccess": [],
            "keyCredentials": [],
            "passwordCredentials": [],
        }
        self._apply(app, {k: v for k, v in body.items() if k != "displayName"}, APP_WRITABLE, "application")
        return app

    def _new_sp(self, body: dict[str, Any]) -> dict[str, Any]:
        app_id = body.get("appId")
        app = self.d.app_by_app_id(app_id or "")
        if app is None:
            raise _bad(f"The appId '{app_id}' of the service principal does not reference a valid "
                       "application object.", "Request_BadRequest")
        if self.d.sp_by_app_id(app["appId"]) is not None:
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                             f"The service principal cannot be created, updated, or restored because the "
                             f"service principal name {app['appId']} is already in use.")
        return {
            "id": new_id(),
            "appId": app["appId"],
            "displayName": app["displayName"],
            "accountEnabled": True,
            "appOwnerOrganizationId": self.d.tenant_id,
            "servicePrincipalType": "Application",
            "signInAudience": app["signInAudience"],
            "servicePrincipalNames": [app["appId"], *app.get("identifierUris", [])],
            "replyUrls": list(app.get("web", {}).get("redirectUris", [])),
            "appRoles": list(app.get("appRoles", [])),
            "oauth2PermissionScopes": [],
            "keyCredentials": [],
            "passwordCredentials": [],
            "tags": list(body.get("tags", [])),
        }

    def _apply(self, obj: dict[str, Any], body: dict[str, Any], writable: set[str], type_name: str) -> None:
        for name, value in body.items():
            if name not in writable:
                raise _bad(f"Property '{name}' does not exist on type 'microsoft.graph.{type_name}'.")
            if name == "keyCredentials":
                obj["keyCredentials"] = self._key_credentials(value, obj.get("keyCredentials", []))
            elif name == "signInAudience" and value not in ("AzureADMyOrg", "AzureADMultipleOrgs",
                                                               "AzureADandPersonalMicrosoftAccount",
                                                               "PersonalMicrosoftAccount"):
                raise _bad(f"Invalid value specified for property 'signInAudience' of resource "
                           f"'{type_name}'.")
            elif name == "requiredResourceAccess":
                self._check_required_access(value)
                obj[name] = value
            elif isinstance(value, dict) and isinstance(obj.get(name), dict):
                obj[name] = {**obj[name], **value}
            else:
                obj[name] = value

    def _check_required_access(self, value: Any) -> None:
        if not isinstance(value, list):
            raise _bad("Invalid value specified for property 'requiredResourceAccess'.")
        for rra in value:
            sp = self.d.sp_by_app_id(str(rra.get("resourceAppId", "")))
            for access in rra.get("resourceAccess", []):
                if access.get("type") not in ("Role", "Scope"):
                    raise _bad("Invalid value specified for property 'type' of resource 'ResourceAccess'.")
                if sp is not None:
                    pool = sp["appRoles"] if access["type"] == "Role" else sp["oauth2PermissionScopes"]
                    if access.get("id") not in {p["id"] for p in pool}:
                        raise _bad(f"Invalid value '{access.get('id')}' for property 'id' of resource "
                                   "'ResourceAccess': no such permission on the resource.")

    def _key_credentials(self, incoming: Any, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not isinstance(incoming, list):
            raise _bad("Invalid value specified for property 'keyCredentials'.")
        by_id = {k["keyId"]: k for k in existing}
        out: list[dict[str, Any]] = []
        for entry in incoming:
            key_id = entry.get("keyId") or new_id()
            if not entry.get("key"):
                if key_id in by_id:
                    out.append(by_id[key_id])
                    continue
                raise _bad("Invalid value specified for property 'key' of resource 'KeyCredential'.")
            try:
                der = base64.b64decode(entry["key"], validate=True)
                cert = x509.load_der_x509_certificate(der)
            except (binascii.Error, ValueError):
                raise _bad("Invalid value specified for property 'key' of resource "
                           "'KeyCredential'.") from None
            if entry.get("type") not in ("AsymmetricX509Cert", "X509CertAndPassword"):
                raise _bad("Invalid value specified for property 'type' of resource 'KeyCredential'.")
            if entry.get("usage") not in ("Verify", "Sign"):
                raise _bad("Invalid value specified for property 'usage' of resource 'KeyCredential'.")
            thumb = hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - a thumbprint, as Graph shows it
            out.append({
                "keyId": key_id,
                "type": entry["type"],
                "usage": entry["usage"],
                # "Longer values are accepted but shortened" (90 characters at most).
                "displayName": (entry.get("displayName") or cert.subject.rfc4514_string())[:90],
                "customKeyIdentifier": _thumbprint_form(entry.get("customKeyIdentifier"), thumb),
                "startDateTime": entry.get("startDateTime") or graph_time(cert.not_valid_before_utc),
                "endDateTime": entry.get("endDateTime") or graph_time(cert.not_valid_after_utc),
                "key": base64.b64encode(der).decode("ascii"),
            })
        if len({k["keyId"] for k in out}) != len(out):
            raise _bad("Key credential keyId values must be unique.")
        return out

    def _patch_object(self, req: Request, claims: dict[str, Any], head: str, object_id: str
                      ) -> tuple[Any, int]:
        self._require(claims, WRITE_APPS)
        body = req.json()
        if not isinstance(body, dict):
            raise _bad("Empty Payload. JSON content expected.")
        with self.d.change():
            obj = self._find(head, object_id)
            if head == "applications":
                self._apply(obj, body, APP_WRITABLE, "application")
            else:
                self._apply(obj, body, SP_WRITABLE, "servicePrincipal")
        return None, 204

    def _delete_object(self, req: Request, claims: dict[str, Any], head: str, object_id: str
                       ) -> tuple[Any, int]:
        self._require(claims, WRITE_APPS)
        with self.d.change() as data:
            obj = self._find(head, object_id)
            data[head].remove(obj)
            if head == "applications":
                for cred in obj.get("passwordCredentials", []):
                    data["passwordHashes"].pop(cred["keyId"], None)
                sp = self.d.sp_by_app_id(obj["appId"])
                if sp is not None:  # deleting an app deletes its service principal
                    data["servicePrincipals"].remove(sp)
                    obj = sp
            if obj.get("servicePrincipalType"):
                data["appRoleAssignments"] = [a for a in data["appRoleAssignments"]
                                              if obj["id"] not in (a["principalId"], a["resourceId"])]
                data["oauth2PermissionGrants"] = [g for g in data["oauth2PermissionGrants"]
                                                  if obj["id"] not in (g["clientId"], g["resourceId"])]
        return None, 204

    # --- client secrets ------------------------------------------------------------------

    def _add_password(self, req: Request, claims: dict[str, Any], object_id: str) -> tuple[Any, int]:
        self._require(claims, WRITE_APPS)
        body = req.json() or {}
        cred_in = body.get("passwordCredential") or {}
        start = now_utc()
        try:
            end = (dt.datetime.fromisoformat(cred_in["endDateTime"].replace("Z", "+00:00"))
                   if cred_in.get("endDateTime") else start + dt.timedelta(days=730))
        except ValueError:
            raise _bad("Invalid value specified for property 'endDateTime' of resource "
                       "'PasswordCredential'.") from None
        if end <= start:
            raise _bad("Invalid value specified for property 'endDateTime' of resource 'PasswordCredential'.")
        alphabet = string.ascii_letters + string.digits + "~._-"
        value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3)) + "8Q~" + \
            "".join(secrets.choice(alphabet) for _ in range(34))
        key_id = new_id()
        cred = {
            "customKeyIdentifier": None,
            "displayName": cred_in.get("displayName"),
            "endDateTime": graph_time(end),
            "hint": value[:3],
            "keyId": key_id,
            "startDateTime": graph_time(start),
        }
        with self.d.change():
            app = self._find("applications", object_id)
            app["passwordCredentials"].append(cred)
            self.d.add_password_hash(key_id, value)
        return {"@odata.context": self._context("microsoft.graph.passwordCredential"),
                **cred, "secretText": value}, 200

    def _remove_password(self, req: Request, claims: dict[str, Any], object_id: str) -> tuple[Any, int]:
        self._require(claims, WRITE_APPS)
        key_id = (req.json() or {}).get("keyId")
        with self.d.change() as data:
            app = self._find("applications", object_id)
            creds = [c for c in app["passwordCredentials"] if c["keyId"] != key_id]
            if len(creds) == len(app["passwordCredentials"]):
                raise _not_found(str(key_id))
            app["passwordCredentials"] = creds
            data["passwordHashes"].pop(key_id, None)
        return None, 204

    # --- app role assignments (application permissions consented) -----------------------

    def _list_assignments(self, req: Request, claims: dict[str, Any], sp_id: str, kind: str
                          ) -> tuple[Any, int]:
        self._require(claims, READ_APPS)
        self._find("servicePrincipals", sp_id)
        field = "principalId" if kind == "appRoleAssignments" else "resourceId"
        items = [a for a in self.d.objects("appRoleAssignments") if a[field] == sp_id]
        return self._page(req, "appRoleAssignments", items), 200

    def _assign_role(self, req: Request, claims: dict[str, Any], sp_id: str, kind: str) -> tuple[Any, int]:
        self._require(claims, ASSIGN_ROLES)
        body = req.json() or {}
        with self.d.change() as data:
            self._find("servicePrincipals", sp_id)
            principal = self.d.by_id("servicePrincipals", str(body.get("principalId", "")))
            resource = self.d.by_id("servicePrincipals", str(body.get("resourceId", "")))
            if principal is None or resource is None:
                missing = body.get("principalId") if principal is None else body.get("resourceId")
                raise _not_found(str(missing))
            if sp_id not in (principal["id"], resource["id"]):
                raise _bad("The service principal in the URL must be the principal or the resource.")
            role = next((r for r in resource.get("appRoles", []) if r["id"] == body.get("appRoleId")), None)
            if role is None:
                raise _bad("Permission being assigned was not found on application")
            for a in data["appRoleAssignments"]:
                if (a["principalId"], a["resourceId"], a["appRoleId"]) == (
                        principal["id"], resource["id"], role["id"]):
                    raise GraphError(409, "Request_BadRequest",
                                     "Permission being assigned already exists on the object")
            assignment = {
                "id": secrets.token_urlsafe(32)[:43],
                "appRoleId": role["id"],
                "createdDateTime": graph_time(now_utc()),
                "deletedDateTime": None,
                "principalDisplayName": principal["displayName"],
                "principalId": principal["id"],
                "principalType": "ServicePrincipal",
                "resourceDisplayName": resource["displayName"],
                "resourceId": resource["id"],
            }
            data["appRoleAssignments"].append(assignment)
        return {"@odata.context": self._context("appRoleAssignments/$entity"), **assignment}, 201

    def _unassign_role(self, req: Request, claims: dict[str, Any], sp_id: str, assignment_id: str
                       ) -> tuple[Any, int]:
        self._require(claims, ASSIGN_ROLES)
        with self.d.change() as data:
            found = [a for a in data["appRoleAssignments"]
                     if a["id"] == assignment_id and sp_id in (a["principalId"], a["resourceId"])]
            if not found:
                raise _not_found(assignment_id)
            data["appRoleAssignments"].remove(found[0])
        return None, 204

    # --- OAuth2 permission grants (delegated permissions consented) ----------------------

    def _grants_route(self, parts: list[str], method: str
                      ) -> tuple[Callable[..., tuple[Any, int]] | None, tuple[Any, ...]]:
        if not parts:
            return {"GET": self._list_grants, "POST": self._create_grant}.get(method), ()
        if len(parts) == 1:
            return {"GET": self._get_grant, "PATCH": self._patch_grant,
                    "DELETE": self._delete_grant}.get(method), (parts[0],)
        return None, ()

    def _list_grants(self, req: Request, claims: dict[str, Any]) -> tuple[Any, int]:
        self._require(claims, READ_GRANTS)
        items = self.d.objects("oauth2PermissionGrants")
        if "$filter" in req.query:
            try:
                clauses = odata.parse_filter(req.query["$filter"],
                                             ("clientId", "resourceId", "consentType", "principalId"),
                                             "oAuth2PermissionGrant")
            except odata.QueryError as e:
                raise _bad(str(e), "Request_UnsupportedQuery") from None
            items = [g for g in items if odata.matches(g, clauses)]
        return self._page(req, "oauth2PermissionGrants", items), 200

    def _get_grant(self, req: Request, claims: dict[str, Any], grant_id: str) -> tuple[Any, int]:
        self._require(claims, READ_GRANTS)
        return self._find("oauth2PermissionGrants", grant_id), 200

    def _create_grant(self, req: Request, claims: dict[str, Any]) -> tuple[Any, int]:
        self._require(claims, GRANTS)
        body = req.json() or {}
        consent = body.get("consentType")
        if consent not in ("AllPrincipals", "Principal"):
            raise _bad("Invalid value specified for property 'consentType' of resource "
                       "'OAuth2PermissionGrant'.")
        with self.d.change() as data:
            client = self.d.by_id("servicePrincipals", str(body.get("clientId", "")))
            resource = self.d.by_id("servicePrincipals", str(body.get("resourceId", "")))
            if client is None or resource is None:
                raise _not_found(str(body.get("clientId") if client is None else body.get("resourceId")))
            known = {s["value"] for s in resource.get("oauth2PermissionScopes", [])}
            scope = " ".join(str(body.get("scope", "")).split())
            unknown = [s for s in scope.split() if s not in known]
            if not scope or unknown:
                raise _bad(f"Invalid value specified for property 'scope' of resource "
                           f"'OAuth2PermissionGrant': {' '.join(unknown) or '(empty)'}.")
            principal = body.get("principalId") if consent == "Principal" else None
            for g in data["oauth2PermissionGrants"]:
                if (g["clientId"], g["resourceId"], g["consentType"], g["principalId"]) == (
                        client["id"], resource["id"], consent, principal):
                    raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                                     "Permission entry already exists.")
            grant = {"id": secrets.token_urlsafe(32)[:43], "clientId": client["id"], "consentType": consent,
                     "principalId": principal, "resourceId": resource["id"], "scope": scope}
            data["oauth2PermissionGrants"].append(grant)
        return {"@odata.context": self._context("oauth2PermissionGrants/$entity"), **grant}, 201

    def _patch_grant(self, req: Request, claims: dict[str, Any], grant_id: str) -> tuple[Any, int]:
        self._require(claims, GRANTS)
        body = req.json() or {}
        if set(body) - {"scope"}:
            raise _bad("Only 'scope' can be updated on an oAuth2PermissionGrant.")
        with self.d.change():
            grant = self._find("oauth2PermissionGrants", grant_id)
            resource = self._find("servicePrincipals", grant["resourceId"])
            known = {s["value"] for s in resource.get("oauth2PermissionScopes", [])}
            scope = " ".join(str(body.get("scope", "")).split())
            if any(s not in known for s in scope.split()):
                raise _bad("Invalid value specified for property 'scope' of resource "
                           "'OAuth2PermissionGrant'.")
            grant["scope"] = scope
        return None, 204

    def _delete_grant(self, req: Request, claims: dict[str, Any], grant_id: str) -> tuple[Any, int]:
        self._require(claims, GRANTS)
        with self.d.change() as data:
            grant = self._find("oauth2PermissionGrants", grant_id)
            data["oauth2PermissionGrants"].remove(grant)
        return None, 204
