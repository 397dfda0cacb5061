"""The Entra ID authority: OpenID discovery, JWKS, the v2.0 token and device code endpoints.

It speaks what msal speaks, unmodified: ``{login}/{tenant}/v2.0/.well-known/openid-configuration``,
``/oauth2/v2.0/token`` for ``client_credentials`` (client secret, or a certificate-signed
client assertion), the device code grant and ``refresh_token``, and ``/oauth2/v2.0/devicecode``.
The tenant segment may be the tenant GUID, its domain name, or ``organizations``.
Errors use Entra's shape (``error``, ``error_description`` starting with the AADSTS code).
"""

from __future__ import annotations

import base64
import enum
import json
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass
from html import escape
from typing import Any

from psbridge.lab.entra.directory import Directory
from psbridge.lab.entra.knobs import Knobs
from psbridge.lab.entra.tokens import GRAPH_AUDIENCES, AssertionRejected, TokenIssuer
from psbridge.lab.entra.wire import Request, Response

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
DEVICE_CODE_LIFETIME = 900


def oauth_error(status: int, error: str, description: str, code: int) -> Response:
    return Response.json(
        status,
        {
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
    )


class FlowStatus(enum.StrEnum):
    """Where a device code sign-in stands: the user has not entered the code yet, or has answered."""

    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


@dataclass
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    expires_at: float
    status: FlowStatus = FlowStatus.PENDING
    user_id: str | None = None


class Authority:
    def __init__(self, directory: Directory, issuer: TokenIssuer, knobs: Knobs, login_url: str,
                 graph_url: str) -> None:
        self.directory = directory
        self.issuer = issuer
        self.knobs = knobs
        self.login_url = login_url
        self.graph_url = graph_url
        self._flows: dict[str, DeviceFlow] = {}
        self._flows_lock = threading.Lock()

    # --- routing -------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if parts == ["devicelogin"]:
            return self._device_login(req)
        if not parts:
            return Response.json(404, {"error": "not_found"})
        tenant, rest = parts[0], parts[1:]
        if not self.directory.knows_tenant(tenant):
            return oauth_error(
                400, "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.", 90002,
            )
        route = "/".join(rest)
        if req.method == "GET" and route in ("v2.0/.well-known/openid-configuration",
                                             ".well-known/openid-configuration"):
            return Response.json(200, self.openid_configuration(tenant))
        if req.method == "GET" and route in ("discovery/v2.0/keys", "discovery/keys"):
            return Response.json(200, self.issuer.jwks())
        if req.method == "POST" and route == "oauth2/v2.0/token":
            return self.token(tenant, req.form())
        if req.method == "POST" and route == "oauth2/v2.0/devicecode":
            return self.device_authorization(req.form())
        if route == "oauth2/v2.0/authorize":
            return oauth_error(400, "unsupported_response_type",
                               "AADSTS70000: the lab authority supports the device code flow and client "
                               "credentials, not interactive authorization code sign-in.", 70000)
        return Response.json(404, {"error": "not_found", "error_description": f"no endpoint {req.path}"})

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        # A domain name resolves to the GUID, which is how a tenant id is found by domain.
        seg = tenant if tenant.lower() in ("organizations", "common") else self.directory.tenant_id
        base = f"{self.login_url}/{seg}"
        issuer_tid = "{tenantid}" if seg != self.directory.tenant_id else seg
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.login_url}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.graph_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name", "tid",
                                 "ver", "oid", "preferred_username"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "psbridge.lab",
            "cloud_graph_host_name": self.graph_url.split("://", 1)[-1],
            "msgraph_host": self.graph_url.split("://", 1)[-1],
        }

    # --- scopes --------------------------------------------------------------------------

    def _graph_resource(self, resource: str) -> bool:
        r = resource.rstrip("/").lower()
        return r in {a.lower() for a in GRAPH_AUDIENCES} or r == self.graph_url.lower()

    def _split_scopes(self, scope: str) -> tuple[str | None, list[str], list[str]]:
        """``(resource, graph scope values, oidc scopes)``; resource is None if not Graph."""
        graph_values: list[str] = []
        oidc: list[str] = []
        resource: str | None = "https://graph.microsoft.com"
        for s in scope.split():
            if s in OIDC_SCOPES:
                oidc.append(s)
                continue
            res, sep, value = s.rpartition("/")
            if not sep:  # a bare name means Graph, as Entra assumes
                graph_values.append(s)
            elif self._graph_resource(res):
                graph_values.append(value)
            else:
                resource = None
                graph_values.append(s)
        return resource, graph_values, oidc

    # --- token endpoint ------------------------------------------------------------------

    def token(self, tenant: str, form: dict[str, str]) -> Response:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self._client_credentials(form)
        if grant == DEVICE_CODE_GRANT:
            return self._device_code_grant(form)
        if grant == "refresh_token":
            return self._refresh(form)
        return oauth_error(400, "unsupported_grant_type",
                           f"AADSTS70003: The app requested an unsupported grant type '{grant}'.", 70003)

    def _client(self, client_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return self.directory.app_by_app_id(client_id), self.directory.sp_by_app_id(client_id)

    def _unknown_client(self, client_id: str) -> Response:
        return oauth_error(
            400, "unauthorized_client",
            f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory "
            f"'{self.directory.domain}'. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant.", 700016,
        )

    def _client_credentials(self, form: dict[str, str]) -> Response:
        client_id = form.get("client_id", "")
        app, sp = self._client(client_id)
        if app is None or sp is None:
            return self._unknown_client(client_id)
        if form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
            endpoints = tuple(
                f"{self.login_url}/{t}/oauth2/v2.0/token"
                for t in (self.directory.tenant_id, self.directory.domain)
            )
            try:
                self.issuer.verify_client_assertion(
                    form["client_assertion"], client_id, endpoints, app.get("keyCredentials", [])
                )
            except AssertionRejected as e:
                return oauth_error(401, "invalid_client", str(e), 700027)
        elif form.get("client_secret"):
            if not self.directory.check_client_secret(app, form["client_secret"]):
                return oauth_error(
                    401, "invalid_client",
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID, for a secret added to "
                    f"app '{client_id}'.", 7000215,
                )
        else:
            return oauth_error(
                401, "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.", 7000218,
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return oauth_error(
                400, "invalid_scope",
                f"AADSTS1002012: The provided value for scope {scope} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).", 1002012,
            )
        resource = scope[: -len("/.default")]
        if not self._graph_resource(resource):
            return oauth_error(
                400, "invalid_resource",
                f"AADSTS500011: The resource principal named {resource} was not found in the tenant "
                f"named {self.directory.domain}.", 500011,
            )
        lifetime = int(self.knobs.get("token_lifetime"))
        roles = self.directory.app_roles_granted(sp, self.directory.graph_sp())
        token, _exp = self.issuer.access_token(
            audience="https://graph.microsoft.com", app_id=client_id, oid=sp["id"], lifetime=lifetime,
            roles=roles,
        )
        return Response.json(200, {"token_type": "Bearer", "expires_in": lifetime,
                                   "ext_expires_in": lifetime, "access_token": token})

    # --- delegated tokens ----------------------------------------------------------------

    def _delegated_tokens(self, client_id: str, user: dict[str, Any], graph_values: list[str],
                          oidc: list[str]) -> Response:
        lifetime = int(self.knobs.get("token_lifetime"))
        scp = " ".join(graph_values) or "User.Read"
        access, _exp = self.issuer.access_token(
            audience="https://graph.microsoft.com", app_id=client_id, oid=user["id"], lifetime=lifetime,
            scp=scp, user=user,
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(f"https://graph.microsoft.com/{v}" for v in scp.split()),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "client_info": base64.urlsafe_b64encode(
                json.dumps({"uid": user["id"], "utid": self.directory.tenant_id}).encode()
            ).decode().rstrip("="),
        }
        if "openid" in oidc or "profile" in oidc:
            body["id_token"] = self.issuer.id_token(client_id=client_id, user=user, lifetime=lifetime)
        if "offline_access" in oidc:
            refresh = secrets.token_urlsafe(48)
            self.directory.keep_refresh_token(
                refresh, {"client_id": client_id, "user_id": user["id"], "scopes": scp.split()}
            )
            body["refresh_token"] = refresh
        return Response.json(200, body)

    def _consented(self, client_id: str, graph_values: list[str]) -> list[str] | None:
        """The scopes a delegated sign-in gets; None if consent is missing."""
        known = {s["value"] for s in self.directory.graph_sp().get("oauth2PermissionScopes", [])}
        wanted = [v for v in graph_values if v in known or v == ".default"]
        _app, sp = self._client(client_id)
        if sp is None:
            return None
        if sp.get("_publicClient"):
            # First-party tools: the signed-in Global Administrator consents at sign-in.
            return [v for v in wanted if v != ".default"]
        granted = self.directory.delegated_grant(sp, self.directory.graph_sp())
        if ".default" in wanted:
            return sorted(granted)
        return wanted if set(wanted) <= granted else None

    def device_authorization(self, form: dict[str, str]) -> Response:
        client_id = form.get("client_id", "")
        app, sp = self._client(client_id)
        if sp is None or not (sp.get("_publicClient") or (app and app.get("isFallbackPublicClient"))):
            if sp is None:
                return self._unknown_client(client_id)
            return oauth_error(400, "invalid_client",
                               "AADSTS7000218: The request body must contain the following parameter: "
                               "'client_assertion' or 'client_secret'.", 7000218)
        resource, _values, _oidc = self._split_scopes(form.get("scope", ""))
        if resource is None:
            return oauth_error(400, "invalid_scope", "AADSTS70011: The provided value for the input "
                               "parameter 'scope' is not valid.", 70011)
        user_code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9))
        flow = DeviceFlow(
            device_code=secrets.token_urlsafe(32), user_code=user_code, client_id=client_id,
            scopes=form.get("scope", "").split(), expires_at=time.time() + DEVICE_CODE_LIFETIME,
        )
        if self.knobs.get("device_code_approval") == "auto":
            flow.status, flow.user_id = FlowStatus.APPROVED, self.directory.admin["id"]
        with self._flows_lock:
            self._flows[flow.device_code] = flow
        uri = f"{self.login_url}/devicelogin"
        return Response.json(200, {
            "user_code": user_code,
            "device_code": flow.device_code,
            "verification_uri": uri,
            "expires_in": DEVICE_CODE_LIFETIME,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code "
                       f"{user_code} to authenticate.",
        })

    def approve(self, user_code: str, approve: bool = True, upn: str | None = None) -> bool:
        """The user entered the code at ``/devicelogin`` (and consented, or declined)."""
        user = self.directory.user_by_upn(upn) if upn else self.directory.admin
        with self._flows_lock:
            for flow in self._flows.values():
                if flow.user_code == user_code.strip().upper() and flow.status is FlowStatus.PENDING:
                    flow.status = FlowStatus.APPROVED if approve else FlowStatus.DECLINED
                    flow.user_id = user["id"] if user else None
                    return True
        return False

    def _device_code_grant(self, form: dict[str, str]) -> Response:
        with self._flows_lock:
            flow = self._flows.get(form.get("device_code", ""))
            if flow is None or flow.client_id != form.get("client_id"):
                return oauth_error(400, "invalid_grant", "AADSTS70000: Provided grant is invalid or "
                                   "malformed.", 70000)
            if time.time() > flow.expires_at:
                self._flows.pop(flow.device_code, None)
                return oauth_error(400, "expired_token", "AADSTS70020: The provided value for the input "
                                   "parameter 'device_code' is not valid. This device code has expired.",
                                   70020)
            if flow.status is FlowStatus.PENDING:
                return oauth_error(400, "authorization_pending", "AADSTS70016: OAuth 2.0 device flow "
                                   "error. Authorization is pending. Continue polling.", 70016)
            self._flows.pop(flow.device_code, None)
        if flow.status is FlowStatus.DECLINED:
            return oauth_error(400, "authorization_declined", "AADSTS70000: The user declined to "
                               "authorize the device code sign-in.", 70000)
        user = self.directory.user_by_id(flow.user_id or "")
        assert user is not None
        _res, graph_values, oidc = self._split_scopes(" ".join(flow.scopes))
        granted = self._consented(flow.client_id, graph_values)
        if granted is None:
            return self._consent_required(flow.client_id)
        return self._delegated_tokens(flow.client_id, user, granted, oidc)

    def _consent_required(self, client_id: str) -> Response:
        return oauth_error(400, "invalid_grant", "AADSTS65001: The user or administrator has not consented "
                           f"to use the application with ID '{client_id}'. Send an interactive "
                           "authorization request for this user and resource.", 65001)

    def _refresh(self, form: dict[str, str]) -> Response:
        rec = self.directory.take_refresh_token(form.get("refresh_token", ""))
        if rec is None or rec["client_id"] != form.get("client_id"):
            return oauth_error(400, "invalid_grant", "AADSTS9002313: Invalid request. Request is malformed "
                               "or invalid. The refresh token is not valid.", 9002313)
        user = self.directory.user_by_id(rec["user_id"])
        if user is None:
            return oauth_error(400, "invalid_grant", "AADSTS50057: The user account is disabled.", 50057)
        _res, graph_values, oidc = self._split_scopes(form.get("scope", ""))
        # A refresh may narrow the scopes, never widen them past the original sign-in.
        values = [v for v in graph_values if v in rec["scopes"]] or rec["scopes"]
        if "offline_access" not in oidc:
            oidc.append("offline_access")
        return self._delegated_tokens(rec["client_id"], user, values, oidc)

    # --- the page a user enters the code on ----------------------------------------------

    def _device_login(self, req: Request) -> Response:
        if req.method == "POST":
            form = req.form()
            code = form.get("otc", "")
            ok = self.approve(code, approve=form.get("decision", "approve") == "approve")
            if not ok:
                return Response.html(400, "<h1>That code didn't work</h1>"
                                     "<p>Check the code and try again.</p>")
            return Response.html(200, "<h1>psbridge lab</h1><p>You have signed in to the application on "
                                 "your device. You may now close this window.</p>")
        who = escape(self.directory.admin["userPrincipalName"])
        return Response.html(200, (
            "<h1>Enter code</h1><p>Enter the code displayed on your app or device. You sign in to the "
            f"lab as {who}.</p><form method='post'><input name='otc'><button>Next</button></form>"
        ))
