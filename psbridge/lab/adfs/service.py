"""AD FS's OAuth 2.0 / OpenID Connect endpoints as msal meets them with ``https://<host>/adfs`` as authority.

- ``GET /adfs/.well-known/openid-configuration`` and ``/adfs/discovery/keys`` (JWKS);
- ``POST /adfs/oauth2/devicecode`` and the page a user enters the code on (``/adfs/oauth2/deviceauth``);
- ``POST /adfs/oauth2/token``: the device code grant (``urn:ietf:params:oauth:grant-type:device_code``,
  AD FS also takes ``device_code``), username and password (where the client's registration
  allows it), ``refresh_token``; ``client_credentials`` is refused for Dynamics 365, whose Web API
  needs a user.

The resource is named as MSAL sends it, inside the scope (``<resource>/<scope>``), or by the
``resource`` parameter; without either AD FS uses ``urn:microsoft:userinfo``. Errors carry
AD FS's ``MSIS`` codes where AD FS's are known (unknown client MSIS9607, failed client
authentication MSIS9622, unknown resource MSIS9602, wrong username or password MSIS9659); the
others are this lab's wording. A password is checked and forgotten: never stored, logged or
answered.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from psbridge.lab.adfs import farm
from psbridge.lab.adfs.tokens import AdfsIssuer
from psbridge.lab.entra.wire import Request, Response
from psbridge.lab.webapi.knobs import JsonKnobs
from psbridge.lab.winrm.auth import AuthFailed, Directory

DEVICE_CODE_GRANTS = ("urn:ietf:params:oauth:grant-type:device_code", "device_code")
OIDC = {"openid", "profile", "offline_access", "email", "allatclaims", "logon_cert", "aza", "vpn_cert"}
USERINFO = "urn:microsoft:userinfo"
DEVICE_CODE_LIFETIME = 900


def error(status: int, code: str, description: str) -> Response:
    return Response.json(status, {"error": code, "error_description": description})


@dataclass
class DeviceFlow:
    device_code: str
    user_code: str
    client_id: str
    resource: str
    scopes: list[str]
    expires_at: float
    status: str = "pending"  # pending | approved | declined
    user: str | None = None


class AdfsService:
    def __init__(self, state_dir: Path, issuer: AdfsIssuer, knobs: JsonKnobs, accounts: Directory) -> None:
        self.state_dir = Path(state_dir)
        self.issuer = issuer
        self.knobs = knobs
        self.accounts = accounts
        self._flows: dict[str, DeviceFlow] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> str:
        return self.issuer.base_url

    def handle(self, req: Request) -> Response:
        path = req.path.rstrip("/").lower()
        if req.method == "GET" and path == "/adfs/.well-known/openid-configuration":
            return Response.json(200, self.openid_configuration())
        if req.method == "GET" and path == "/adfs/discovery/keys":
            return Response.json(200, self.issuer.jwks())
        if req.method == "POST" and path == "/adfs/oauth2/token":
            return self.token(req.form())
        if req.method == "POST" and path == "/adfs/oauth2/devicecode":
            return self.device_authorization(req.form())
        if path == "/adfs/oauth2/deviceauth":
            return self._device_page(req)
        if path == "/adfs/oauth2/authorize":
            return error(400, "unsupported_response_type", "The lab's AD FS signs users in with a device "
                                                           "code or "
                         "a username and password, not in a browser.")
        return Response.html(404, "<h1>404 - File or directory not found.</h1>")

    def openid_configuration(self) -> dict[str, Any]:
        b = f"{self.base}/adfs"
        return {
            "issuer": self.issuer.openid_issuer,
            "authorization_endpoint": f"{b}/oauth2/authorize/",
            "token_endpoint": f"{b}/oauth2/token/",
            "jwks_uri": f"{b}/discovery/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic",
                                                      "private_key_jwt", "windows_client_authentication"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token",
                                         "code token", "code id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit", "password",
                                      "srv_challenge", "urn:ietf:params:oauth:grant-type:device_code",
                                      "device_code"],
            "subject_types_supported": ["pairwise"],
            "scopes_supported": sorted(OIDC | {"user_impersonation"}),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "access_token_issuer": self.issuer.access_token_issuer,
            "claims_supported": ["aud", "iss", "iat", "exp", "auth_time", "nonce", "at_hash", "c_hash", "sub",
                                 "upn", "unique_name", "pwd_url", "pwd_exp", "mfa_auth_time", "sid", "nbf"],
            "microsoft_multi_refresh_token": True,
            "userinfo_endpoint": f"{b}/userinfo",
            "capabilities": [],
            "end_session_endpoint": f"{b}/oauth2/logout",
            "frontchannel_logout_supported": True,
            "frontchannel_logout_session_supported": True,
            "device_authorization_endpoint": f"{b}/oauth2/devicecode",
        }

    # --- scopes, clients, users -----------------------------------------------------------------

    @staticmethod
    def _resource_and_scopes(form: dict[str, str]) -> tuple[str, list[str], list[str]]:
        """(resource, its scopes, OpenID scopes) from ``scope`` (``<resource>/<scope>``) or ``resource``."""
        resource = form.get("resource", "").strip()
        values: list[str] = []
        oidc: list[str] = []
        for s in form.get("scope", "").split():
            if s.lower() in OIDC:
                oidc.append(s.lower())
                continue
            head, sep, tail = s.rpartition("/")
            if sep and head:
                resource = resource or head
                values.append(tail or "user_impersonation")
            else:
                values.append(s)
        return resource or USERINFO, values or ["user_impersonation"], oidc

    def _client(self, form: dict[str, str]) -> tuple[dict[str, Any] | None, Response | None]:
        data = farm.load(self.state_dir)
        entry = farm.client(data, form.get("client_id", ""))
        if entry is None:
            return None, error(400, "invalid_client", "MSIS9607: The 'client_id' parameter in the request is "
                               "invalid. No registered client is found with this identifier.")
        secret = form.get("client_secret", "")
        if entry["ClientType"] == "Confidential" and not farm.check_secret(entry, secret):
            return None, error(401, "invalid_client", "MSIS9622: Client authentication failed. Please "
                                                      "verify the "
                               "credential provided for client authentication is valid.")
        return entry, None

    def _resource_known(self, resource: str) -> Response | None:
        if resource == USERINFO or farm.relying_party(farm.load(self.state_dir), resource) is not None:
            return None
        return error(400, "invalid_resource", "MSIS9602: The received 'resource' parameter is invalid. The "
                     "authorization server can not find a registered resource with the specified identifier.")

    def _upn(self, account: str) -> str:
        a = self.accounts.find(account)
        return a.upn if a is not None else account

    def _canonical(self, account: str) -> str:
        a = self.accounts.find(account)
        return a.canonical if a is not None else account

    # --- tokens --------------------------------------------------------------------------------

    def _tokens(self, entry: dict[str, Any], user: str, resource: str, scopes: list[str], oidc: list[str],
                auth_time: float, refresh: bool = True) -> Response:
        lifetime = int(self.knobs.get("token_lifetime"))
        canonical, upn = self._canonical(user), self._upn(user)
        confidential = entry["ClientType"] == "Confidential"
        scope = " ".join(scopes)
        body: dict[str, Any] = {
            "access_token": self.issuer.access_token(resource=resource, client_id=entry["ClientId"],
                                                     confidential=confidential, user=canonical, upn=upn,
                                                     scope=scope, lifetime=lifetime, auth_time=auth_time),
            "token_type": "bearer", "expires_in": lifetime, "resource": resource,
            # The scopes as the client asked for them (resource-prefixed), so msal finds the token again.
            "scope": " ".join([*(f"{resource}/{s}" for s in scopes), *oidc]),
        }
        if "openid" in oidc:
            body["id_token"] = self.issuer.id_token(client_id=entry["ClientId"], user=canonical, upn=upn,
                                                    lifetime=lifetime, auth_time=auth_time)
        if refresh:
            rt_life = int(self.knobs.get("refresh_token_lifetime"))
            token = secrets.token_urlsafe(48)
            farm.keep_refresh_token(self.state_dir, token, {
                "client_id": entry["ClientId"], "user": canonical, "resource": resource, "scopes": scopes,
                "auth_time": auth_time, "expires": time.time() + rt_life})
            body["refresh_token"] = token
            body["refresh_token_expires_in"] = rt_life
        return Response.json(200, body)

    def token(self, form: dict[str, str]) -> Response:
        grant = form.get("grant_type", "")
        entry, refused = self._client(form)
        if refused is not None:
            return refused
        assert entry is not None
        resource, scopes, oidc = self._resource_and_scopes(form)
        if grant in DEVICE_CODE_GRANTS:
            return self._device_code_grant(entry, form)
        if grant == "refresh_token":
            return self._refresh(entry, form, resource, scopes, oidc)
        unknown = self._resource_known(resource)
        if unknown is not None:
            return unknown
        if grant == "password":
            if not self.knobs.get("password_grant") or not entry.get("password_grant", True):
                return error(400, "unauthorized_client", f"The client '{entry['ClientId']}' may not sign "
                                                         "users in "
                             "with a username and password on this AD FS; use the device code.")
            try:
                account = self.accounts.check_basic(form.get("username", ""), form.get("password", ""))
            except AuthFailed:
                return error(400, "invalid_grant", "MSIS9659: Invalid 'username' or 'password'.")
            return self._tokens(entry, account.canonical, resource, scopes, oidc, time.time())
        if grant == "client_credentials":
            return error(400, "unauthorized_client", "Dynamics 365 takes only a user's token (its Web API "
                                                     "maps "
                         "the token's upn to a CRM user): the client credentials grant issues none. Sign in "
                         "as a "
                         "user (device code, or username and password).")
        return error(400, "unsupported_grant_type", f"MSIS9601: The grant type '{grant}' is not supported.")

    def _refresh(self, entry: dict[str, Any], form: dict[str, str], resource: str, scopes: list[str],
                 oidc: list[str]) -> Response:
        rec = farm.refresh_record(self.state_dir, form.get("refresh_token", ""))
        if rec is None or rec["client_id"] != entry["ClientId"] or rec["expires"] < time.time():
            return error(400, "invalid_grant", "MSIS9615: The refresh token received in 'refresh_token' "
                         "parameter "
                         "is invalid or has expired.")
        if self.accounts.find(rec["user"]) is None:
            return error(400, "invalid_grant", "The user of the refresh token is no longer known.")
        # A multi-resource refresh token (microsoft_multi_refresh_token in the metadata): asked
        # for another relying party, AD FS issues a token for that one, as msal asks when one
        # user signs in to several organizations.
        if resource != USERINFO:
            unknown = self._resource_known(resource)
            if unknown is not None:
                return unknown
        else:
            resource, scopes = rec["resource"], rec["scopes"]
        # AD FS keeps its refresh token valid until it expires: none is issued in its place.
        return self._tokens(entry, rec["user"], resource, scopes, oidc or ["openid"],
                            rec["auth_time"], refresh=False)

    # --- device code -------------------------------------------------------------------------------

    def device_authorization(self, form: dict[str, str]) -> Response:
        entry, refused = self._client(form)
        if refused is not None:
            return refused
        assert entry is not None
        resource, scopes, _oidc = self._resource_and_scopes(form)
        unknown = self._resource_known(resource)
        if unknown is not None:
            return unknown
        code = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(9))
        flow = DeviceFlow(secrets.token_urlsafe(32), code, entry["ClientId"], resource, scopes,
                          time.time() + DEVICE_CODE_LIFETIME)
        if self.knobs.get("device_code_approval") == "auto":
            flow.status, flow.user = "approved", str(self.knobs.get("device_code_user"))
        with self._lock:
            self._flows[flow.device_code] = flow
        uri = f"{self.base}/adfs/oauth2/deviceauth"
        return Response.json(200, {
            "device_code": flow.device_code, "user_code": code, "verification_uri": uri,
            "verification_uri_complete": f"{uri}?user_code={code}", "expires_in": DEVICE_CODE_LIFETIME,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {code} to "
                       "authenticate.",
        })

    def approve(self, user_code: str, user: str, approve: bool = True) -> bool:
        with self._lock:
            for flow in self._flows.values():
                if flow.user_code == user_code.strip().upper() and flow.status == "pending":
                    flow.status, flow.user = ("approved" if approve else "declined"), user
                    return True
        return False

    def _device_code_grant(self, entry: dict[str, Any], form: dict[str, str]) -> Response:
        code = form.get("device_code") or form.get("code") or ""
        with self._lock:
            flow = self._flows.get(code)
            if flow is None or flow.client_id != entry["ClientId"]:
                return error(400, "invalid_grant", "MSIS9612: The device code received in 'device_code' "
                             "parameter is invalid.")
            if time.time() > flow.expires_at:
                self._flows.pop(code, None)
                return error(400, "expired_token", "The device code has expired: start the sign-in again.")
            if flow.status == "pending":
                return error(400, "authorization_pending", "The user has not yet entered the code.")
            self._flows.pop(code, None)
        if flow.status == "declined" or flow.user is None:
            return error(400, "access_denied", "The user declined the sign-in.")
        return self._tokens(entry, flow.user, flow.resource, flow.scopes,
                            ["openid", "profile", "offline_access"], time.time())

    def _device_page(self, req: Request) -> Response:
        if req.method == "POST":
            form = req.form()
            try:
                account = self.accounts.check_basic(form.get("username", ""), form.get("password", ""))
            except AuthFailed:
                return Response.html(400, "<p>Incorrect user ID or password.</p>")
            yes = form.get("decision", "yes") == "yes"
            ok = self.approve(form.get("user_code", ""), account.canonical, yes)
            return Response.html(200 if ok else 400, "<p>You may now close this window.</p>" if ok
                                 else "<p>That code is not valid.</p>")
        code = escape(req.query.get("user_code", ""))
        return Response.html(200, "<h1>Sign in</h1><form method='post'>"
                             f"<input name='user_code' value='{code}'><input name='username'>"
                             "<input name='password' type='password'><button>Sign in</button></form>")
