"""The Web API client's errors: one tree, each saying what happened in the server's words.

::

    WebApiError                     anything the Web API client could not do
    ├── WebApiUnreachable           no answer: refused, timed out, dropped, TLS failed
    ├── ClientCertificateRequired   the site demands a client certificate (SDK-style clients cannot)
    ├── SignInUnsupported           the site offers no sign-in psbridge can make
    ├── SignInFailed                the credentials were refused (by the site or by AD FS)
    │   └── TokenRefused            a bearer token refused after its one renewal
    ├── ODataError                  the organization refused a request: status, code, message, REQ_ID
    └── MetadataMismatch            a name psbridge uses is not in the organization's $metadata

They derive from :class:`Exception` for now and will take their place under psbridge's one
error root. No message repeats a secret: credentials are never part of one.
"""

from __future__ import annotations


class WebApiError(Exception):
    """Anything the CRM Web API client could not do; the message says what and where."""


class WebApiUnreachable(WebApiError):
    """The organization did not answer: the connection was refused, timed out, dropped or failed TLS."""


class ClientCertificateRequired(WebApiError):
    """The site demands a TLS client certificate.

    The Dynamics 365 SDK does not support client certificates, and neither do SDK-style clients
    such as psbridge: the fix is on the server (IIS SSL settings: client certificates Ignore).
    """

    def __init__(self, url: str, how: str) -> None:
        self.url = url
        super().__init__(
            f"{url} demands a client certificate ({how}). Clients of the Dynamics 365 Web API and SDK "
            "cannot sign in with client certificates: set the CRM web site's SSL settings in IIS to ignore "
            "client certificates (Windows or claims-based authentication still applies), then try again.")


class SignInUnsupported(WebApiError):
    """The site asks for a sign-in psbridge does not make (or, without a challenge, for none it knows)."""


class SignInFailed(WebApiError):
    """The credentials were refused: by the site (401 after a complete handshake) or by AD FS."""


class TokenRefused(SignInFailed):
    """A bearer token refused, renewed once, and the new one refused too: psbridge does not loop."""


class ODataError(WebApiError):
    """A request the organization refused, in its own terms."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 request_id: str | None = None) -> None:
        self.method, self.path, self.status = method, path, status
        self.code, self.message, self.request_id = code, message, request_id
        rid = f" (REQ_ID {request_id})" if request_id else ""
        super().__init__(f"{method} {path} failed: {status} {code}: {message}{rid}")


class MetadataMismatch(WebApiError):
    """Names psbridge uses that the organization's ``$metadata`` does not have (a different CRM build)."""
