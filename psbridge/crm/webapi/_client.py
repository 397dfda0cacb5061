"""One organization's Web API: one signed-in connection, reused for every call.

Building the connection is the expensive part — a probe, a sign-in (a Negotiate handshake, or
a token from AD FS), ``WhoAmI`` — so a step makes one :class:`WebApi` and keeps it, as the
SDK's guidance says of its proxies. Underneath is one ``httpx.Client`` (keep-alive connections,
so a Windows-authenticated connection stays signed in) with the sign-in as its auth flow.

OData conventions: ``OData-MaxVersion``/``OData-Version: 4.0`` and JSON on every request; a
create answers 204 with the record's URL in ``OData-EntityId`` (or, asked with ``Prefer:
return=representation``, 201 and the record); an update is a ``PATCH`` with ``If-Match: *`` (so
it never creates a record by mistake, as PATCH otherwise upserts); lookups are set with
``<navigation>@odata.bind``; collections page with ``Prefer: odata.maxpagesize`` and
``@odata.nextLink``, followed only to the organization's own host (the token goes nowhere else).
Errors carry the server's code and message (:class:`ODataError`); every change is journalled
before it is sent (:func:`psbridge.intents.intent`).

Retries: a read (or an idempotent PATCH) whose connection dropped is sent once more; a read
answered 429 or 503 waits as ``Retry-After`` says, within a budget. A create is never repeated
blind: it may have happened, and the steps read the world before they act again.
"""

from __future__ import annotations

import email.utils
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from psbridge.crm.webapi._adfs import AdfsSignIn
from psbridge.crm.webapi._auth import BearerAuth, NegotiateAuth
from psbridge.crm.webapi._challenge import SignInKind, SignInOffer, offer_from, parse_challenges
from psbridge.crm.webapi._errors import (
    ClientCertificateRequired,
    ODataError,
    SignInFailed,
    SignInUnsupported,
    WebApiError,
    WebApiUnreachable,
)
from psbridge.crm.webapi._metadata import Metadata
from psbridge.intents import intent
from psbridge.secrets import Secret, redact

API_VERSION = "v9.0"
ODATA = {"OData-MaxVersion": "4.0", "OData-Version": "4.0", "Accept": "application/json",
         "User-Agent": "psbridge"}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
RETRIED = (429, 503)
# What a TLS stack says when the server asked for a client certificate it did not get.
_CERTIFICATE_ALERTS = ("CERTIFICATE_REQUIRED", "certificate required")
_MAYBE_CERTIFICATE = ("SSLV3_ALERT_HANDSHAKE_FAILURE", "SSLV3_ALERT_BAD_CERTIFICATE")


@dataclass(frozen=True)
class WhoAmI:
    user_id: str
    business_unit_id: str
    organization_id: str


@dataclass(frozen=True)
class Instance:
    """An organization as the discovery service lists it."""

    id: str
    unique_name: str
    friendly_name: str
    url: str
    api_url: str
    version: str
    state: int


def ssl_context(ca_bundle: str | Path | None) -> ssl.SSLContext:
    """The machine's trust store, or the deployment's CA bundle."""
    return ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else ssl.create_default_context()


def _why(error: BaseException) -> tuple[str, bool | None]:
    """(a short reason, whether a client certificate was demanded: True, maybe (None), no (False))."""
    seen: list[BaseException] = []
    e: BaseException | None = error
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(str(x) for x in seen)
    if any(a.lower() in text.lower() for a in _CERTIFICATE_ALERTS):
        return "the TLS handshake asked for a client certificate", True
    if any(a in text for a in _MAYBE_CERTIFICATE):
        return "the TLS handshake failed as it does when the site requires a client certificate", None
    tls = next((x for x in seen if isinstance(x, ssl.SSLError)), None)
    if tls is not None:
        return f"TLS failed: {getattr(tls, 'reason', None) or tls}", False
    return f"{type(error).__name__}: {str(error)[:200] or 'no answer'}", False


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def probe(org_url: str, *, ca_bundle: str | Path | None = None, timeout: float = 30.0,
          version: str = API_VERSION, transport: httpx.BaseTransport | None = None) -> SignInOffer:
    """Which sign-in the organization wants: a request without credentials, and its 401."""
    url = f"{org_url.rstrip('/')}/api/data/{version}/"
    try:
        with httpx.Client(verify=ssl_context(ca_bundle), timeout=timeout, headers=ODATA,
                          transport=transport) as client:
            response = client.get(url)
    except httpx.TransportError as e:
        reason, certificate = _why(e)
        if certificate is not False:
            raise ClientCertificateRequired(org_url, reason) from None
        raise WebApiUnreachable(f"{url} did not answer: {reason}") from None
    if response.status_code == 403 and "403.7" in response.text:
        raise ClientCertificateRequired(org_url, "IIS answered 403.7")
    if response.status_code != 401:
        raise SignInUnsupported(f"{url} answered {response.status_code} without credentials, not 401: it is "
                                "not a Dynamics 365 Web API that asks for a sign-in")
    offer = offer_from(parse_challenges(response.headers.get_list("www-authenticate")))
    if offer is None:
        offered = ", ".join(response.headers.get_list("www-authenticate")) or "nothing"
        raise SignInUnsupported(f"{url} asks for {offered}: psbridge signs in with Windows authentication "
                                "(Negotiate/NTLM) or with AD FS tokens (claims)")
    return offer


class WebApi:
    """The Web API of one organization, signed in once; ``get``/``get_all``/``create``/``update``."""

    offer: SignInOffer | None = None  # what the organization's 401 asked for (set by connect)

    def __init__(self, org_url: str, auth: httpx.Auth, *, sign_in: Any = None, organization: str = "",
                 ca_bundle: str | Path | None = None, timeout: float = 60.0, version: str = API_VERSION,
                 transport: httpx.BaseTransport | None = None, retry_budget: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.org_url = org_url.rstrip("/")
        self.base = f"{self.org_url}/api/data/{version}"
        self.version = version
        self.auth = auth
        self.sign_in = sign_in
        self.organization = organization or urlsplit(self.org_url).path.strip("/") or str(
            urlsplit(org_url).hostname)
        self.retry_budget = retry_budget
        self.sleep = sleep
        self._client = httpx.Client(verify=ssl_context(ca_bundle), timeout=timeout, headers=ODATA, auth=auth,
                                    transport=transport)
        self._metadata: Metadata | None = None
        self._whoami: WhoAmI | None = None
        self.requests = 0  # answered requests, for the record and the bench
        self.elapsed = 0.0

    # --- connecting --------------------------------------------------------------------------------

    @classmethod
    def connect(cls, org_url: str, *, user: str = "", password: Secret | None = None,
                adfs_client_id: str = "", adfs_client_secret: Secret | None = None,
                adfs_sign_in: str = "device-code", on_code: Callable[[Any], None] | None = None,
                ca_bundle: str | Path | None = None, cache_dir: Path | None = None, timeout: float = 60.0,
                version: str = API_VERSION, organization: str = "",
                transport: httpx.BaseTransport | None = None) -> WebApi:
        """Find out how the organization signs users in, sign in that way, and prove it with ``WhoAmI``.

        Active Directory: ``user`` is ``DOMAIN\\user`` (empty: the current Windows user, Kerberos).
        Claims: ``adfs_client_id`` is the client registered on AD FS; ``adfs_sign_in`` is
        ``device-code`` (the consultant enters a code) or ``password`` (``user`` as a UPN and
        ``password``, with a confidential client's ``adfs_client_secret``).
        """
        offer = probe(org_url, ca_bundle=ca_bundle, timeout=timeout, version=version, transport=transport)
        sign_in: Any
        if offer.kind == SignInKind.ACTIVE_DIRECTORY:
            auth: httpx.Auth = NegotiateAuth(user, password)
            sign_in = {"sign-in": "Active Directory (Windows authentication)",
                       "offered": ", ".join(offer.schemes), "as": user or "the current Windows user"}
        else:
            if not adfs_client_id:
                raise SignInUnsupported(
                    f"{org_url} signs users in through AD FS at {offer.authority} (claims): name the client "
                    "registered there for psbridge (Add-AdfsClient -ClientId ...) as adfs_client_id")
            resource = offer.resource or f"{org_url.rstrip('/')}/"
            adfs = AdfsSignIn(str(offer.authority), adfs_client_id, resource,
                              ca_bundle=str(ca_bundle) if ca_bundle else None,
                              client_secret=adfs_client_secret, cache_dir=cache_dir, timeout=timeout)
            # A sign-in kept in the cache is used first (it is renewed with its refresh token).
            upn = user.strip()
            if not (upn and adfs.from_cache(upn)):
                if adfs_sign_in == "password":
                    if password is None or not upn:
                        raise SignInFailed("username and password sign-in to AD FS needs the user (a UPN or "
                                           "DOMAIN\\user) and a password")
                    adfs.username_password(upn, password)
                else:
                    adfs.device_code(on_code)
            auth, sign_in = BearerAuth(adfs), adfs
        api = cls(org_url, auth, sign_in=sign_in, organization=organization, ca_bundle=ca_bundle,
                  timeout=timeout, version=version, transport=transport)
        api.offer = offer
        try:
            api.whoami()
        except BaseException:
            api.close()
            raise
        return api

    @property
    def kind(self) -> SignInKind:
        return SignInKind.CLAIMS if isinstance(self.auth, BearerAuth) else SignInKind.ACTIVE_DIRECTORY

    # --- requests ----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith(("https://", "http://")):
            if urlsplit(path).netloc.lower() != urlsplit(self.base).netloc.lower():
                raise WebApiError(f"refusing to follow a link to another host: {urlsplit(path).netloc}")
            return path
        return f"{self.base}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None,
                headers: dict[str, str] | None = None) -> httpx.Response:
        """Send one request; answers 2xx, or raises the error the answer says."""
        url = self._url(path)
        shown = urlsplit(url).path.removeprefix(urlsplit(self.base).path) or "/"
        if method == "GET":
            return self._send(method, url, shown, params, json, headers)
        what = _GUID.sub("{id}", shown.split("?")[0].strip("/"))
        entity_set = what.split("(")[0]
        with intent(f"{method} {entity_set}", f"CRM {self.organization}", f"{method} {shown}"):
            return self._send(method, url, shown, params, json, headers)

    def _send(self, method: str, url: str, shown: str, params: dict[str, str] | None, json: Any,
              headers: dict[str, str] | None) -> httpx.Response:
        dropped, waited = False, 0.0
        while True:
            started = time.perf_counter()
            try:
                response = self._client.request(method, url, params=params, json=json, headers=headers)
            except httpx.TransportError as e:
                reason, certificate = _why(e)
                if certificate is not False:
                    raise ClientCertificateRequired(self.org_url, reason) from None
                if not dropped and method in ("GET", "PATCH", "DELETE"):
                    dropped = True  # once, on a new connection: the request may be repeated safely
                    continue
                note = " (the create may or may not have happened: read the world before trying again)" \
                    if method == "POST" else ""
                raise WebApiUnreachable(f"{method} {shown} on {self.org_url}: {reason}{note}") from None
            finally:
                self.elapsed += time.perf_counter() - started
            self.requests += 1
            status = response.status_code
            if status < 400:
                return response
            if status == 403 and "403.7" in response.text:
                raise ClientCertificateRequired(self.org_url, "IIS answered 403.7")
            if status == 401:
                who = (self.sign_in or {}).get("as") if isinstance(self.sign_in, dict) else \
                    getattr(self.sign_in, "username", None)
                raise SignInFailed(f"{self.org_url} refused the sign-in{' of ' + who if who else ''} (401): "
                                   "the "
                                   "credentials are wrong, the account is locked or disabled, or it is not "
                                   "a user "
                                   "of this organization")
            wait = _retry_after(response) if status in RETRIED and method == "GET" else None
            if status in RETRIED and method == "GET":
                wait = 2.0 if wait is None else wait
                if waited + wait <= self.retry_budget:
                    self.sleep(wait)
                    waited += wait
                    continue
            raise self._error(method, shown, response)

    @staticmethod
    def _error(method: str, shown: str, response: httpx.Response) -> ODataError:
        code, message = f"HTTP{response.status_code}", response.reason_phrase
        try:
            body = response.json()
            err = body.get("error") or {}
            code, message = str(err.get("code") or code), str(err.get("message") or message)
        except ValueError:
            text = re.sub(r"<[^>]+>", " ", response.text)
            message = " ".join(text.split())[:300] or message
        return ODataError(method, shown, response.status_code, code, redact(message),
                          response.headers.get("REQ_ID"))

    # --- verbs -------------------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, str] | None = None,
            annotations: bool = False) -> Any:
        headers = {"Prefer": 'odata.include-annotations="*"'} if annotations else None
        return self.request("GET", path, params=params, headers=headers).json()

    def get_all(self, entity_set: str, params: dict[str, str] | None = None, page_size: int = 500,
                annotations: bool = False) -> list[dict[str, Any]]:
        """Every record of a query, page by page (``Prefer: odata.maxpagesize``, ``@odata.nextLink``)."""
        prefer = f"odata.maxpagesize={page_size}" + (',odata.include-annotations="*"' if annotations else "")
        page = self.request("GET", entity_set, params=params, headers={"Prefer": prefer}).json()
        items: list[dict[str, Any]] = list(page.get("value", []))
        while page.get("@odata.nextLink"):
            page = self.request("GET", page["@odata.nextLink"], headers={"Prefer": prefer}).json()
            items += page.get("value", [])
        return items

    def create(self, entity_set: str, body: dict[str, Any]) -> str:
        """Create a record; its id (from ``OData-EntityId``)."""
        response = self.request("POST", entity_set, json=body)
        location = response.headers.get("OData-EntityId", "")
        found = _GUID.findall(location)
        if not found:
            raise WebApiError(f"POST {entity_set} answered {response.status_code} without OData-EntityId")
        return str(found[-1]).lower()

    def create_returning(self, entity_set: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create a record and get it back (``Prefer: return=representation``)."""
        response = self.request("POST", entity_set, json=body, headers={"Prefer": "return=representation"})
        record: dict[str, Any] = response.json()
        return record

    def update(self, entity_set: str, record_id: str, body: dict[str, Any]) -> None:
        """Change a record that exists (``If-Match: *``: a PATCH must not create one)."""
        self.request("PATCH", f"{entity_set}({record_id})", json=body, headers={"If-Match": "*"})

    def delete(self, entity_set: str, record_id: str) -> None:
        self.request("DELETE", f"{entity_set}({record_id})")

    @staticmethod
    def bind(entity_set: str, record_id: str) -> str:
        """The value of a ``<navigation>@odata.bind``."""
        return f"/{entity_set}({record_id})"

    # --- the organization ---------------------------------------------------------------------------

    def whoami(self) -> WhoAmI:
        if self._whoami is None:
            body = self.get("WhoAmI")
            self._whoami = WhoAmI(str(body["UserId"]).lower(), str(body["BusinessUnitId"]).lower(),
                                  str(body["OrganizationId"]).lower())
        return self._whoami

    @property
    def metadata(self) -> Metadata:
        """The organization's ``$metadata`` (read once, on first use)."""
        if self._metadata is None:
            response = self.request("GET", "$metadata", headers={"Accept": "application/xml"})
            self._metadata = Metadata.parse(response.content)
        return self._metadata

    def discover(self, discovery_url: str | None = None) -> list[Instance]:
        """The organizations the signed-in user belongs to, from the discovery service."""
        url = discovery_url or self._discovery_url()
        response = self._send("GET", f"{url.rstrip('/')}/Instances", "/Instances", None, None, None)
        return [Instance(str(i.get("Id")), str(i.get("UniqueName")), str(i.get("FriendlyName")),
                         str(i.get("Url")), str(i.get("ApiUrl")), str(i.get("Version")),
                         int(i.get("State") or 0))
                for i in response.json().get("value", [])]

    def _discovery_url(self) -> str:
        u = urlsplit(self.org_url)
        if u.path.strip("/"):  # https://server/org: the server's own discovery service
            return f"{u.scheme}://{u.netloc}/api/discovery/{self.version}"
        host, _, domain = u.netloc.partition(".")  # https://org.domain: https://dev.domain
        return f"{u.scheme}://dev.{domain or host}/api/discovery/{self.version}"

    # --- lifetime and display -----------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, str]:
        info = dict(self.sign_in.describe() if hasattr(self.sign_in, "describe") else (self.sign_in or {}))
        return {"Web API": self.base, **info}

    def __repr__(self) -> str:
        info = self.describe()
        return f"WebApi({self.base}, {info.get('sign-in', '?')} as {info.get('as', '?')})"

    def _repr_html_(self) -> str:
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                        for k, v in self.describe().items())
        return f"<table><caption>CRM Web API</caption>{cells}</table>"

