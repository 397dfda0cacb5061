"""Claims-based sign-in: a user's OAuth 2.0 token from AD FS for one organization, with msal.

msal takes ``https://<adfs>/adfs`` as an authority (no Entra instance discovery for it) and
speaks AD FS's OpenID Connect endpoints. The resource — the organization's URL, as its ``401``
names it — travels inside the scope, ``<resource>/user_impersonation``, as AD FS expects from
MSAL. Two ways in: a **device code** for the consultant (a public client registered with
``Add-AdfsClient``), or **username and password** only for a confidential client (registered
with a secret), which is where msal and AD FS still allow it.

:meth:`AdfsSignIn.token` answers from msal's cache while the token is good and renews it with
the refresh token before it expires (msal does so within five minutes of expiry);
:meth:`AdfsSignIn.renew` gets a new one whatever the cache says, for the one retry after a
refusal. The cache is the cloud half's (:func:`psbridge.cloud.signin.token_cache`), one file an
AD FS farm and user, readable by its owner only.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from psbridge.crm.webapi._challenge import SignInKind
from psbridge.crm.webapi._errors import SignInFailed, WebApiUnreachable
from psbridge.secrets import Secret, redact

SCOPE = "user_impersonation"


class _PinnedSession(requests.Session):
    """A session whose CA bundle wins over ``REQUESTS_CA_BUNDLE`` (which would override ``verify``)."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def _http(ca_bundle: str | None) -> requests.Session:
    session: requests.Session = _PinnedSession() if ca_bundle else requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
    session.headers["User-Agent"] = "psbridge"
    return session


def _failed(what: str, result: dict[str, Any]) -> SignInFailed:
    error = str(result.get("error", "unknown_error"))
    description = redact(str(result.get("error_description", "")))
    return SignInFailed(f"{what}: {error}: {description}")


class AdfsSignIn:
    """One user's sign-in to one AD FS farm for one resource."""

    kind = SignInKind.CLAIMS

    def __init__(self, authority: str, client_id: str, resource: str, *, ca_bundle: str | None = None,
                 client_secret: Secret | None = None, cache_dir: Path | None = None,
                 timeout: float = 30.0) -> None:
        from psbridge.cloud.signin import token_cache

        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.resource = resource
        self.scopes = [f"{resource}/{SCOPE}"]
        self.confidential = client_secret is not None
        self.account: dict[str, Any] | None = None
        self.expires_on: dt.datetime | None = None
        self._cache_dir = cache_dir
        self._farm = f"adfs-{urlsplit(self.authority).netloc}"
        self._cache = token_cache(self._farm, "pending-sign-in", cache_dir)
        self._lock = threading.Lock()
        kwargs: dict[str, Any] = {"authority": self.authority, "http_client": _http(ca_bundle),
                                  "token_cache": self._cache.cache, "timeout": timeout,
                                  "instance_discovery": False}
        try:
            if client_secret is not None:
                self._app: Any = msal.ConfidentialClientApplication(
                    client_id, client_credential=client_secret.reveal(), **kwargs)
            else:
                self._app = msal.PublicClientApplication(client_id, **kwargs)
        except ValueError as e:  # msal could not read the authority's OpenID metadata
            raise WebApiUnreachable(f"AD FS at {self.authority} did not answer its OpenID configuration "
                                    f"({redact(str(e))[:200]})") from None

    # --- signing in ------------------------------------------------------------------------------

    @property
    def username(self) -> str | None:
        return self.account.get("username") if self.account else None

    def _use(self, username: str) -> None:
        from psbridge.cloud.signin import token_cache

        # The user's own cache file takes the tokens of the sign-in just made; the pending one goes.
        wanted = token_cache(self._farm, username, self._cache_dir)
        wanted.merge(self._cache.cache)
        pending, self._cache = self._cache.path, wanted
        self._app.token_cache = wanted.cache
        if pending != wanted.path:
            pending.unlink(missing_ok=True)
        self.account = next(iter(self._app.get_accounts(username=username)), None)

    def from_cache(self, username: str) -> bool:
        """Sign in silently as ``username`` from an earlier sign-in kept in the cache."""
        from psbridge.cloud.signin import PersistedCache, token_cache

        kept = token_cache(self._farm, username, self._cache_dir)
        if not kept.path.exists():
            return False
        self._cache = PersistedCache(kept.path)
        self._app.token_cache = self._cache.cache
        self.account = next(iter(self._app.get_accounts(username=username)), None)
        if self.account is None:
            return False
        try:
            self.token()
        except SignInFailed:
            self.account = None
            return False
        return True

    def device_code(self, on_code: Callable[[Any], None] | None = None) -> AdfsSignIn:
        """Sign in as a person: show a code (``on_code``), wait until it is entered at AD FS."""
        from psbridge.cloud.signin import DeviceCode, show_device_code

        flow = self._app.initiate_device_flow(scopes=self.scopes)
        if "user_code" not in flow:
            raise _failed(f"AD FS at {self.authority} did not start a device code sign-in", flow)
        (on_code or show_device_code)(DeviceCode(flow["user_code"], flow["verification_uri"], flow["message"],
                                                 int(flow.get("expires_in", 900))))
        self._took(self._app.acquire_token_by_device_flow(flow), "device code sign-in")
        return self

    def username_password(self, username: str, password: Secret) -> AdfsSignIn:
        """Sign in with a username and password: a confidential client only."""
        if not self.confidential:
            raise SignInFailed(
                "username and password sign-in to AD FS needs a confidential client: register one with "
                "Add-AdfsClient -GenerateClientSecret and give its id and secret, or sign in with a device "
                "code")
        result = self._app.acquire_token_by_username_password(username, password.reveal(), scopes=self.scopes)
        self._took(result, f"AD FS refused the sign-in of {username}")
        return self

    def _took(self, result: dict[str, Any], what: str) -> None:
        if "access_token" not in result:
            raise _failed(what, result)
        claims = result.get("id_token_claims") or {}
        self._use(str(claims.get("upn") or claims.get("unique_name") or "account"))
        self._note(result)

    def _note(self, result: dict[str, Any]) -> None:
        if result.get("expires_in"):
            self.expires_on = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(result["expires_in"]))
        self._cache.save()

    # --- tokens -----------------------------------------------------------------------------------

    def token(self) -> Secret:
        with self._lock:
            return self._silent(force=False)

    def renew(self) -> Secret:
        with self._lock:
            return self._silent(force=True)

    def _silent(self, force: bool) -> Secret:
        if self.account is None:
            raise SignInFailed(f"not signed in to AD FS at {self.authority}")
        result = self._app.acquire_token_silent_with_error(self.scopes, account=self.account,
                                                           force_refresh=force)
        if not result or "access_token" not in result:
            raise _failed(f"AD FS at {self.authority} gave no new token for {self.username} (sign in again)",
                          result or {"error": "interaction_required"})
        if result.get("token_source") == "identity_provider":
            self._note(result)
        return Secret(result["access_token"])

    # --- how it shows -------------------------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        return {"sign-in": "claims (OAuth 2.0, AD FS)", "as": self.username or "-",
                "authority": self.authority,
                "client": f"{self.client_id} ({'confidential' if self.confidential else 'public'})",
                "resource": self.resource,
                "token expires": self.expires_on.isoformat(timespec="seconds") if self.expires_on else "-"}

    def __repr__(self) -> str:
        return f"AdfsSignIn({self.username or 'not signed in'} at {self.authority} for {self.resource})"

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                        for k, v in self.describe().items())
        return f"<table>{cells}</table>"
