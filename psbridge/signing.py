"""Signed records: who produced a record, not only that it is unchanged since its manifest.

The manifest's hashes prove that no file changed since the manifest was written; anyone can
write a new manifest. A signature in ``manifest.sig`` over the manifest's exact bytes, made with
the operator's private key, proves who wrote it::

    signer = load_signer("operator.pfx", password="keyring:psbridge/operator-pfx")
    check = check_signature(manifest_bytes, sig_bytes)   # check.valid, check.signer

The key comes with its certificate (a PFX, or PEM text holding the key and the certificate)
from a file or from the secret store (any secret reference whose value is that PEM text, such
as ``keyring:psbridge/operator-signing``), or as a bare PEM private key (then the signer is
named by its public key's fingerprint). A password is always a secret reference, resolved only
here, at the one call that needs it. RSA keys sign with PSS and SHA-256, EC keys with ECDSA and
SHA-256, Ed25519 keys as themselves; ``cryptography`` does all of it.

``manifest.sig`` carries the certificate (or public key) with the signature, so a record
verifies on its own; ``psbridge verify --signer`` says whose signature it must be.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from psbridge import secrets
from psbridge.errors import SigningError as SigningError  # re-exported for its callers

SIGNATURE = "manifest.sig"
FORMAT = "psbridge.signature/1"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _spki(public: Any) -> bytes:
    der: bytes = public.public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _identity(public: Any, certificate: x509.Certificate | None) -> dict[str, str]:
    """How a signer is named: the certificate's subject and SHA-1 thumbprint (as Windows shows
    it), or for a bare key the SHA-256 of its public key."""
    if certificate is not None:
        thumb = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - the Windows name
        return {"subject": certificate.subject.rfc4514_string(), "thumbprint": thumb}
    digest = hashlib.sha256(_spki(public)).hexdigest().upper()
    return {"subject": f"public key {digest[:16]}", "thumbprint": digest}


def _algorithm(public: Any) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "rsa-pss-sha256"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "ecdsa-sha256"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise SigningError(f"a {type(public).__name__} key cannot sign a record (RSA, EC or Ed25519 can)")


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


@dataclass(frozen=True)
class Signer:
    """The operator's private key, and the certificate that names it (if there is one)."""

    key: PrivateKey
    certificate: x509.Certificate | None
    source: str  # the file or reference it came from (never a secret value)

    @property
    def identity(self) -> dict[str, str]:
        return _identity(self.key.public_key(), self.certificate)

    def __repr__(self) -> str:  # the key's repr says nothing of it, but be plain about it
        return f"Signer({self.identity['subject']} from {self.source})"

    def sign(self, data: bytes) -> bytes:
        """``manifest.sig`` for ``data`` (the manifest's bytes)."""
        public = self.key.public_key()
        algorithm = _algorithm(public)
        if isinstance(self.key, rsa.RSAPrivateKey):
            signature = self.key.sign(data, _PSS, hashes.SHA256())
        elif isinstance(self.key, ec.EllipticCurvePrivateKey):
            signature = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        else:
            signature = self.key.sign(data)
        body = {
            "format": FORMAT, "signs": "manifest.json", "manifest_sha256": hashlib.sha256(data).hexdigest(),
            "algorithm": algorithm, "signer": self.identity,
            "signed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "certificate": (self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
                            if self.certificate is not None else None),
            "public_key": public.public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
            "signature": base64.b64encode(signature).decode("ascii"),
        }
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")


def _from_pem(data: bytes, password: bytes | None, source: str) -> Signer:
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        raise SigningError(f"the private key in {source} is encrypted: give its password "
                           "(--sign-password REFERENCE)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"cannot read the private key in {source}: wrong password, or not a PEM "
                           "private key") from None
    certificate = None
    if b"-----BEGIN CERTIFICATE-----" in data:
        certificate = x509.load_pem_x509_certificates(data)[0]
    return _checked(key, certificate, source)


def _from_pfx(data: bytes, password: bytes | None, source: str) -> Signer:
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except ValueError:
        raise SigningError(f"cannot open {source}: wrong password, or not a PFX (PKCS#12) file") from None
    if bundle.key is None or bundle.cert is None:
        raise SigningError(f"{source} holds no certificate with its private key")
    return _checked(bundle.key, bundle.cert.certificate, source)


def _checked(key: Any, certificate: x509.Certificate | None, source: str) -> Signer:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise SigningError(f"the key in {source} cannot sign a record (RSA, EC or Ed25519 can)")
    if certificate is not None:
        if _spki(certificate.public_key()) != _spki(key.public_key()):
            raise SigningError(f"in {source}, the certificate is not the private key's")
        now = dt.datetime.now(dt.UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SigningError(f"the certificate in {source} ({certificate.subject.rfc4514_string()}) is "
                               f"valid from {certificate.not_valid_before_utc:%Y-%m-%d} to "
                               f"{certificate.not_valid_after_utc:%Y-%m-%d}, not now")
    return Signer(key, certificate, source)


def load_signer(key: str | Path, password: str = "") -> Signer:
    """The signer in ``key``: a PFX or PEM file, or a secret reference whose value is PEM text.

    ``password``: a secret reference (``env:``, ``keyring:``, ...) to the key's password, or "".
    """
    if password and not secrets.is_reference(password):
        raise SigningError("the signing key's password: write where it is kept (env:NAME, "
                           "keyring:SERVICE/NAME, file:PATH), never the value")
    pw = secrets.resolve(password).reveal().encode("utf-8") if password else None
    where = str(key)
    path = Path(where).expanduser()
    if path.is_file():
        data = path.read_bytes()
        if b"-----BEGIN" in data:
            return _from_pem(data, pw, where)
        return _from_pfx(data, pw, where)
    if secrets.is_reference(where):
        value = secrets.resolve(where).reveal()
        if "-----BEGIN" not in value:
            raise SigningError(f"the secret {where} does not hold a PEM private key and certificate")
        return _from_pem(value.encode("utf-8"), pw, where)
    if path.exists():
        raise SigningError(f"{where} is a folder, not a key file")
    raise SigningError(f"no signing key at {where} (a PFX or PEM file, or a secret reference)")


# --- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """What ``manifest.sig`` says of a manifest."""

    valid: bool
    signer: dict[str, str]
    problem: str = ""


def check_signature(manifest: bytes, signature: bytes) -> SignatureCheck:
    """Whether ``signature`` (the bytes of ``manifest.sig``) signs ``manifest``, and by whom."""
    try:
        body = json.loads(signature)
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            return SignatureCheck(False, {}, f"{SIGNATURE} is not a psbridge signature")
        certificate = None
        if body.get("certificate"):
            certificate = x509.load_pem_x509_certificate(str(body["certificate"]).encode("ascii"))
            public: Any = certificate.public_key()
        else:
            public = serialization.load_pem_public_key(str(body["public_key"]).encode("ascii"))
        raw = base64.b64decode(str(body["signature"]), validate=True)
    except (ValueError, KeyError, TypeError, UnsupportedAlgorithm):
        return SignatureCheck(False, {}, f"{SIGNATURE} cannot be read")
    signer = _identity(public, certificate)
    try:
        algorithm = _algorithm(public)
        if algorithm != body.get("algorithm"):
            return SignatureCheck(False, signer, f"{SIGNATURE} names {body.get('algorithm')}, its key is "
                                  f"{algorithm}")
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, manifest, _PSS, hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, manifest, ec.ECDSA(hashes.SHA256()))
        else:
            public.verify(raw, manifest)
    except (InvalidSignature, SigningError):
        return SignatureCheck(False, signer, "the signature does not match manifest.json: the manifest "
                              "changed after it was signed, or the signature was made for another one")
    return SignatureCheck(True, signer)


def expected_signer(value: str) -> str:
    """The thumbprint ``--signer`` names: a certificate file (PEM or DER), or the thumbprint itself."""
    path = Path(value).expanduser()
    if path.is_file():
        data = path.read_bytes()
        try:
            cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                    else x509.load_der_x509_certificate(data))
        except ValueError:
            raise SigningError(f"{value} is not a certificate (PEM or DER)") from None
        return _identity(cert.public_key(), cert)["thumbprint"]
    thumb = value.replace(" ", "").replace(":", "").upper()
    if not thumb or any(c not in "0123456789ABCDEF" for c in thumb):
        raise SigningError(f"--signer: a certificate file or a thumbprint, not {value!r}")
    return thumb
