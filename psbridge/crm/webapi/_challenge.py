"""Which sign-in an organization wants, read from its own answer to a request without credentials.

The SDK's proxies chose claims-based sign-in when the deployment has a security token service
and Active Directory otherwise; the Web API says which in its ``401``: ``WWW-Authenticate:
Negotiate`` / ``NTLM`` on an Active Directory deployment, ``Bearer authorization_uri=…,
resource_id=…`` on an Internet-facing (claims) one, where ``authorization_uri`` is AD FS's
authorize endpoint (so ``https://<adfs>/adfs`` is the authority) and ``resource_id`` the
resource to ask a token for. :func:`parse_challenges` reads the header as RFC 7235 writes it
(several challenges, comma-separated, with ``token68`` or ``name="value"`` parameters).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class SignInKind(enum.StrEnum):
    ACTIVE_DIRECTORY = "active-directory"  # Negotiate (Kerberos, else NTLM) or NTLM
    CLAIMS = "claims"  # OAuth 2.0 bearer tokens from AD FS
    # The older SOAP Organization service's WS-Trust sign-in would be one more kind here.


@dataclass(frozen=True)
class Challenge:
    scheme: str  # as sent, e.g. "Negotiate", "Bearer"
    token: str | None = None  # token68 (a Negotiate/NTLM handshake token)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.scheme.lower()


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # noqa: S105 - RFC 7230's token characters, not a password
_SCHEME = re.compile(rf"\s*,*\s*({_TOKEN})")
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})")
_TOKEN68 = re.compile(r"\s*([A-Za-z0-9\-._~+/]+=*)\s*(?:,|$)")
_NEXT_IS_PARAM = re.compile(rf"\s*,\s*{_TOKEN}\s*=")


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values given."""
    out: list[Challenge] = []
    for header in headers:
        pos = 0
        while pos < len(header):
            m = _SCHEME.match(header, pos)
            if not m or not m.group(1):
                break
            scheme, pos = m.group(1), m.end()
            rest = header[pos:]
            if not rest.strip() or rest.lstrip().startswith(","):
                out.append(Challenge(scheme))
                continue
            params: dict[str, str] = {}
            p = _PARAM.match(header, pos)
            if p is None:
                t = _TOKEN68.match(header, pos)
                if t is None:
                    out.append(Challenge(scheme))
                    break
                out.append(Challenge(scheme, t.group(1)))
                pos = t.end()
                continue
            while p is not None:
                value = p.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                params[p.group(1).lower()] = value
                pos = p.end()
                if not _NEXT_IS_PARAM.match(header, pos):
                    break
                pos = header.index(",", pos) + 1
                p = _PARAM.match(header, pos)
            out.append(Challenge(scheme, None, params))
    return out


@dataclass(frozen=True)
class SignInOffer:
    """What an organization's 401 asks for."""

    kind: SignInKind
    schemes: tuple[str, ...]  # Negotiate, NTLM, Bearer
    authority: str | None = None  # claims: https://<adfs>/adfs
    resource: str | None = None  # claims: the resource a token is asked for

    def describe(self) -> str:
        if self.kind == SignInKind.CLAIMS:
            return f"claims-based (OAuth 2.0 with AD FS at {self.authority}, resource {self.resource})"
        return f"Active Directory (Windows authentication: {', '.join(self.schemes)})"


def authority_from(authorization_uri: str) -> str:
    """``https://adfs/adfs/oauth2/authorize`` -> ``https://adfs/adfs`` (what msal takes for AD FS)."""
    u = urlsplit(authorization_uri)
    path = re.sub(r"/oauth2/authorize/?$", "", u.path.rstrip("/"), flags=re.IGNORECASE)
    return f"{u.scheme}://{u.netloc}{path}"


def offer_from(challenges: list[Challenge]) -> SignInOffer | None:
    """The sign-in the challenges ask for: claims when a bearer challenge names AD FS, else AD."""
    by_name = {c.name: c for c in challenges}
    bearer = by_name.get("bearer")
    if bearer is not None and bearer.params.get("authorization_uri"):
        return SignInOffer(SignInKind.CLAIMS, ("Bearer",), authority_from(bearer.params["authorization_uri"]),
                           bearer.params.get("resource_id") or None)
    windows = tuple(c.scheme for c in challenges if c.name in ("negotiate", "ntlm"))
    if windows:
        return SignInOffer(SignInKind.ACTIVE_DIRECTORY, windows)
    return None
