"""psbridge.crm.webapi: the organization's Web API (OData v4), signed in the way the organization asks.

::

    from psbridge.crm.webapi import WebApi
    api = WebApi.connect("https://crm.contoso.local/contoso", user="CONTOSO\\\\crmadmin",
                         password=resolve("keyring:psbridge/crmadmin"), ca_bundle="contoso-ca.pem")
    api.kind                      # SignInKind.ACTIVE_DIRECTORY (the 401 offered Negotiate/NTLM)
    api.whoami().user_id
    api.metadata.require("mailboxes", ["incomingemaildeliverymethod"], ["emailserverprofile"])
    boxes = api.get_all("mailboxes", {"$select": "name,mailboxstatus"})
    pid = api.create("emailserverprofiles", {"name": "Exchange Online", "servertype": 3})
    api.update("mailboxes", box_id, {"emailserverprofile@odata.bind": api.bind("emailserverprofiles", pid)})

    # An Internet-facing deployment answers 401 with a bearer challenge naming AD FS: a token from
    # there, with msal (device code for the consultant; username/password for a confidential client).
    api = WebApi.connect("https://contoso.contoso.com", adfs_client_id=CLIENT_ID, on_code=print)

Sign-in methods are httpx auth flows (:mod:`psbridge.crm.webapi._auth`): Negotiate/NTLM through
pyspnego, and bearer tokens renewed ahead of expiry and once more on a refusal, never in a
loop. A site that demands a client certificate is named as such (SDK-style clients cannot use
one). The SOAP Organization service with WS-Trust tokens would be one more :class:`SignInKind`
and auth flow, chosen the same way from the organization's answer.

Errors (one tree, :mod:`psbridge.crm.webapi._errors`)::

    WebApiError
    ├── WebApiUnreachable, ClientCertificateRequired, SignInUnsupported
    ├── SignInFailed └── TokenRefused
    ├── ODataError (status, code, message, REQ_ID)
    └── MetadataMismatch
"""

from psbridge.crm.webapi._adfs import AdfsSignIn
from psbridge.crm.webapi._auth import BearerAuth, NegotiateAuth, TokenSource, channel_bindings
from psbridge.crm.webapi._challenge import Challenge, SignInKind, SignInOffer, offer_from, parse_challenges
from psbridge.crm.webapi._client import API_VERSION, Instance, WebApi, WhoAmI, probe, ssl_context
from psbridge.crm.webapi._errors import (
    ClientCertificateRequired,
    MetadataMismatch,
    ODataError,
    SignInFailed,
    SignInUnsupported,
    TokenRefused,
    WebApiError,
    WebApiUnreachable,
)
from psbridge.crm.webapi._metadata import Metadata

__all__ = [
    "API_VERSION",
    "AdfsSignIn",
    "BearerAuth",
    "Challenge",
    "ClientCertificateRequired",
    "Instance",
    "Metadata",
    "MetadataMismatch",
    "NegotiateAuth",
    "ODataError",
    "SignInFailed",
    "SignInKind",
    "SignInOffer",
    "SignInUnsupported",
    "TokenRefused",
    "TokenSource",
    "WebApi",
    "WebApiError",
    "WebApiUnreachable",
    "WhoAmI",
    "channel_bindings",
    "offer_from",
    "parse_challenges",
    "probe",
    "ssl_context",
]
