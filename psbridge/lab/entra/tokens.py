"""Token issuing for the twin: RS256 JWTs signed with a key kept in the state directory.

The signing key lives at ``<state>/entra-signing-key.pem`` so tokens (and a client's msal
cache) stay valid across lab restarts; its public half is served as the JWKS. Access tokens
carry the claims Graph authorizes on: ``tid``, ``appid``, ``roles`` (application
permissions, from app role assignments) or ``scp`` (delegated), ``oid``, ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from psbridge.errors import TwinAnswer

# Resource identifiers a token for Graph may name as its audience.
GRAPH_AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")


class TokenRejected(TwinAnswer):
    """An access token Graph must refuse with 401 (the message is Graph's wording)."""


class AssertionRejected(TwinAnswer):
    """A client assertion the token endpoint refuses with 401 (the message is Entra ID's AADSTS wording)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenIssuer:
    key: rsa.RSAPrivateKey
    login_url: str
    tenant_id: str
    clock: Callable[[], float] = time.time

    @classmethod
    def load_or_create(cls, state_dir: Path, login_url: str, tenant_id: str,
                       clock: Callable[[], float] = time.time) -> TokenIssuer:
        path = Path(state_dir) / "entra-signing-key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return cls(key, login_url, tenant_id, clock)

    @property
    def kid(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b64url(hashlib.sha1(der).digest())  # noqa: S324 - a key id, as Entra's x5t

    @property
    def issuer_v2(self) -> str:
        return f"{self.login_url}/{self.tenant_id}/v2.0"

    @property
    def issuer_v1(self) -> str:
        # Graph access tokens are v1 tokens whatever endpoint issued them.
        return f"https://sts.windows.net/{self.tenant_id}/"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"use": "sig", "kid": self.kid, "x5t": self.kid})
        return {"keys": [jwk]}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def access_token(self, *, audience: str, app_id: str, oid: str, lifetime: int,
                     roles: list[str] | None = None, scp: str | None = None,
                     user: dict[str, Any] | None = None) -> tuple[str, int]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer_v1,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "tid": self.tenant_id,
            "appid": app_id,
            "azp": app_id,
            "oid": oid,
            "sub": oid,
            "ver": "1.0",
            "idtyp": "user" if user else "app",
            "uti": b64url(hashlib.sha256(f"{oid}{now}{self.clock()}".encode()).digest()[:16]),
        }
        if roles:
            claims["roles"] = roles
        if scp is not None:
            claims["scp"] = scp
        if user:
            claims["upn"] = user["userPrincipalName"]
            claims["name"] = user["displayName"]
        return self._sign(claims), now + lifetime

    def id_token(self, *, client_id: str, user: dict[str, Any], lifetime: int) -> str:
        now = int(self.clock())
        return self._sign(
            {
                "aud": client_id,
                "iss": self.issuer_v2,
                "iat": now,
                "nbf": now,
                "exp": now + lifetime,
                "tid": self.tenant_id,
                "oid": user["id"],
                "sub": user["id"],
                "name": user["displayName"],
                "preferred_username": user["userPrincipalName"],
                "ver": "2.0",
            }
        )

    def verify(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """The claims of a valid access token; otherwise :class:`TokenRejected`."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=list(audiences),
                # Expiry is checked against the twin's clock below, which tests can move.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise TokenRejected("Invalid audience.") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("Access token validation failure. Invalid signature.") from None
        except jwt.PyJWTError:
            raise TokenRejected("Access token validation failure. Malformed token.") from None
        if claims.get("tid") != self.tenant_id:
            raise TokenRejected("Access token validation failure. Invalid tenant.")
        if int(claims.get("exp", 0)) <= self.clock():
            raise TokenRejected("Lifetime validation failed, the token is expired.")
        return claims

    def verify_client_assertion(self, assertion: str, client_id: str, token_endpoints: tuple[str, ...],
                                key_credentials: list[dict[str, Any]]) -> None:
        """Check a certificate-signed client assertion (RFC 7523) against the app's keys.

        msal signs with PS256 and names the certificate by ``x5t#S256`` (RS256/``x5t`` for
        older clients): the key is looked up by that thumbprint among the key credentials.
        """
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise AssertionRejected("AADSTS50027: JWT token is invalid or malformed.") from None
        from cryptography import x509

        # base64url, with or without padding (msal pads; RFC 7515 does not).
        wanted_256 = str(header.get("x5t#S256") or "").rstrip("=") or None
        wanted_1 = str(header.get("x5t") or "").rstrip("=") or None
        now = self.clock()
        for cred in key_credentials:
            der = base64.b64decode(cred.get("key") or "")
            if not der:
                continue
            cert = x509.load_der_x509_certificate(der)
            if wanted_256 != b64url(hashlib.sha256(der).digest()) and wanted_1 != b64url(
                hashlib.sha1(der).digest()  # noqa: S324 - x5t is SHA-1 by definition
            ):
                continue
            if not (cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()):
                raise AssertionRejected("AADSTS700027: The certificate with identifier used to sign the "
                                        "client assertion is expired on application.")
            try:
                claims = jwt.decode(
                    assertion, cert.public_key(), algorithms=["PS256", "RS256"],  # type: ignore[arg-type]
                    audience=list(token_endpoints), options={"verify_exp": False},
                )
            except jwt.PyJWTError as e:
                raise AssertionRejected(
                    f"AADSTS700027: Client assertion failed signature validation. ({e})"
                ) from None
            if claims.get("iss") != client_id or claims.get("sub") != client_id:
                raise AssertionRejected("AADSTS700021: Client assertion application identifier doesn't "
                                        "match 'client_id' parameter.")
            if int(claims.get("exp", 0)) <= now:
                raise AssertionRejected("AADSTS700024: Client assertion is not within its valid time range.")
            return
        raise AssertionRejected(
            f"AADSTS700027: The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key used by "
            f"client: '{wanted_1 or wanted_256}']"
        )
