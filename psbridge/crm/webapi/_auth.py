"""Sign-in to the Web API as httpx auth flows: yield a request, read the answer, yield the next.

- :class:`NegotiateAuth` (Active Directory): a request goes out without credentials; a ``401``
  offering Negotiate or NTLM starts a pyspnego handshake (Kerberos where the machine has a
  ticket for the server, NTLM otherwise) that runs over the same connection, because IIS
  authenticates connections: once it is done, the connection's next requests need no header.
  Over HTTPS the handshake carries channel bindings (``tls-server-end-point``, RFC 5929), which
  IIS with Extended Protection requires.
- :class:`BearerAuth` (claims): every request carries the token its :class:`TokenSource` gives
  (which renews ahead of expiry); a ``401`` means the token was refused before its time, so the
  flow renews it **once** and retries **once** — a second refusal raises :class:`TokenRefused`,
  never a loop (the SDK's ``ExpiredSecurityTokenException`` lesson).

Secrets are revealed only where pyspnego or the header needs them.
"""

from __future__ import annotations

import base64
from collections.abc import Generator
from typing import Any, Protocol

import httpx

from psbridge.crm.webapi._challenge import parse_challenges
from psbridge.crm.webapi._errors import TokenRefused
from psbridge.secrets import Secret

MAX_LEGS = 6  # Negotiate needs two or three; more is a server going round in circles


class TokenSource(Protocol):
    def token(self) -> Secret:
        """A token that is good for a while yet (renewed ahead of its expiry)."""

    def renew(self) -> Secret:
        """A new token from the token service, whatever the cached one's expiry says."""


def channel_bindings(response: httpx.Response) -> Any:
    """RFC 5929 ``tls-server-end-point`` for the connection ``response`` came over (None over HTTP)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from spnego.channel_bindings import GssChannelBindings

    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    algorithm = cert.signature_hash_algorithm
    # The certificate's own signature hash, except that MD5 and SHA-1 are replaced by SHA-256.
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


class NegotiateAuth(httpx.Auth):
    requires_response_body = True  # a 401's body is read, so the connection can carry the next leg

    def __init__(self, user: str = "", password: Secret | None = None, *, service: str = "HTTP") -> None:
        self.user = user
        self.password = password
        self.service = service
        self.handshakes = 0  # how many times a connection had to be signed in (for tests and the bench)

    def __repr__(self) -> str:
        return f"NegotiateAuth({self.user or 'the current Windows user'})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        import spnego

        response = yield request  # an already signed-in connection needs nothing more
        if response.status_code != 401:
            return
        offered = {c.name: c.scheme for c in parse_challenges(response.headers.get_list("www-authenticate"))}
        scheme = offered.get("negotiate") or offered.get("ntlm")
        if scheme is None:
            return
        self.handshakes += 1
        context = spnego.client(
            self.user or None, self.password.reveal() if self.password is not None else None,
            hostname=request.url.host, service=self.service, channel_bindings=channel_bindings(response),
            protocol="negotiate" if scheme.lower() == "negotiate" else "ntlm",
        )
        out = context.step()
        for _ in range(MAX_LEGS):
            request.headers["Authorization"] = f"{scheme} {base64.b64encode(out or b'').decode()}"
            response = yield request
            answer = next((c.token for c in parse_challenges(response.headers.get_list("www-authenticate"))
                           if c.name == scheme.lower() and c.token), None)
            if response.status_code != 401:
                if answer and not context.complete:
                    context.step(base64.b64decode(answer))  # Kerberos mutual authentication
                return
            if not answer:
                return  # refused: the caller reports the 401
            out = context.step(base64.b64decode(answer))


class BearerAuth(httpx.Auth):
    requires_response_body = True

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens
        self.renewals = 0  # tokens renewed after a refusal (for tests and the record)

    def __repr__(self) -> str:
        return f"BearerAuth({self.tokens!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.tokens.token().reveal()}"
        response = yield request
        if response.status_code != 401:
            return
        # Refused before its time (expired early, revoked, a clock apart): renew once, retry once.
        self.renewals += 1
        request.headers["Authorization"] = f"Bearer {self.tokens.renew().reveal()}"
        response = yield request
        if response.status_code == 401:
            challenges = parse_challenges(response.headers.get_list("www-authenticate"))
            said = next((c.params.get("error_description") for c in challenges if c.name == "bearer"), None)
            raise TokenRefused(
                f"{request.url.copy_with(query=None)} refused the bearer token twice"
                f"{': ' + said if said else ''}. psbridge renewed it once and does not try again: check that "
                "the token is for this organization (its AD FS resource) and that the clocks of this "
                "machine, "
                "AD FS and the CRM servers agree, then sign in again.")
