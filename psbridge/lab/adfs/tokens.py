"""AD FS's tokens: RS256 JWTs signed with a key kept in the state directory, and their check.

An access token names its resource as the audience (the CRM organization's URL, a relying
party identifier), AD FS's trust as issuer (``http://<host>/adfs/services/trust``, as AD FS
writes it) and the user twice, as CRM reads it: ``upn`` and ``unique_name`` (``DOMAIN\\user``).
The id token is for the client (``aud`` = client id) with the OpenID issuer
``https://<host>/adfs``. :meth:`AdfsIssuer.verify` is what a relying party (the CRM twin)
does with a token it is handed: signature, audience, issuer, expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from psbridge.errors import TwinAnswer
from psbridge.files import write_atomic


class TokenInvalid(TwinAnswer):
    """A token a relying party must refuse; the message says why."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class AdfsIssuer:
    key: rsa.RSAPrivateKey
    base_url: str  # https://host:port (the farm's address)
    clock: Callable[[], float] = time.time

    @classmethod
    def load_or_create(cls, state_dir: Path, base_url: str,
                       clock: Callable[[], float] = time.time) -> AdfsIssuer:
        path = Path(state_dir) / "adfs-signing-key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            write_atomic(path, pem.decode("ascii"), private=True)
        return cls(key, base_url.rstrip("/"), clock)

    @property
    def kid(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return b64url(hashlib.sha1(der).digest())  # noqa: S324 - a key id, as AD FS's x5t

    @property
    def openid_issuer(self) -> str:
        return f"{self.base_url}/adfs"

    @property
    def access_token_issuer(self) -> str:
        host = urlsplit(self.base_url).netloc
        return f"http://{host}/adfs/services/trust"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"use": "sig", "kid": self.kid, "x5t": self.kid, "alg": "RS256"})
        return {"keys": [jwk]}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def access_token(self, *, resource: str, client_id: str, confidential: bool, user: str, upn: str,
                     scope: str, lifetime: int, auth_time: float) -> str:
        now = int(self.clock())
        return self._sign({
            "aud": resource, "iss": self.access_token_issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "apptype": "Confidential" if confidential else "Public", "appid": client_id,
            "authmethod": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
            "auth_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(auth_time)),
            "ver": "1.0", "scp": scope, "upn": upn, "unique_name": user,
            # Two tokens issued in one second still differ, as AD FS's do.
            "jti": b64url(os.urandom(12)),
        })

    def id_token(self, *, client_id: str, user: str, upn: str, lifetime: int, auth_time: float) -> str:
        now = int(self.clock())
        sub = b64url(hashlib.sha256(f"{client_id}:{user.lower()}".encode()).digest())
        return self._sign({
            "aud": client_id, "iss": self.openid_issuer, "iat": now, "nbf": now, "exp": now + lifetime,
            "auth_time": int(auth_time), "sub": sub, "upn": upn, "unique_name": user,
            "sid": b64url(hashlib.sha256(f"{user}{auth_time}".encode()).digest()[:12]),
        })

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a valid access token for ``audience``; otherwise :class:`TokenInvalid`."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.key.public_key(), algorithms=["RS256"], audience=audience,
                issuer=self.access_token_issuer,
                # Expiry against the relying party's own clock, below (AD FS's may be moved by a knob).
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise TokenInvalid(f"The audience of the token is not {audience}") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("The token's issuer is not trusted") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("The token's signature is invalid") from None
        except jwt.PyJWTError:
            raise TokenInvalid("The token is malformed") from None
        if int(claims.get("exp", 0)) <= time.time():
            raise TokenInvalid("The access token has expired")
        return claims
