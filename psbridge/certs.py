"""The S2S certificate: generate a self-signed one, or inspect and validate a provided PFX.

What the CRM side needs (step 1 of the procedure): an RSA key of at least 2048 bits with its
private key, a certificate that is not expired, a key usable for key exchange (KeySpec 1,
``AT_KEYEXCHANGE``), exported as a password-protected PFX; and a subject name that is unique
in the server's ``LocalMachine\\My`` store, because two certificates with one subject make
``CertificateReconfiguration.ps1`` fail with "Private key not found".

::

    cert = generate_self_signed("contoso", password=resolve("lab:contoso/pfx-password"))
    cert.write(Path("contoso-s2s.pfx"))
    info = inspect_pfx(Path("customer.pfx"), resolve("env:PFX_PASSWORD"))
    info.problems()        # [] when the certificate is fit for S2S
    validate_pfx(path, password)   # raises CertificateError listing every problem at once

The password is a :class:`~psbridge.secrets.Secret` and is revealed only to open or seal the
PFX; no message carries it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets as pysecrets
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from psbridge.errors import CertificateError as CertificateError  # re-exported for its callers
from psbridge.errors import ParameterError
from psbridge.files import write_atomic
from psbridge.secrets import Secret

MIN_RSA_BITS = 2048
DEFAULT_DAYS = 365
SUBJECT_PREFIX = "psbridge S2S"


def new_pfx_password() -> Secret:
    """A random password for a PFX psbridge makes (it goes straight to a secret store)."""
    return Secret(pysecrets.token_urlsafe(24))


def unique_subject(label: str, now: dt.datetime | None = None) -> str:
    """``CN=psbridge S2S <label> <UTC time> <random>``: never equal to an earlier one."""
    now = now or dt.datetime.now(dt.UTC)
    clean = " ".join(label.replace(",", " ").replace("=", " ").split()) or "crm"
    return f"CN={SUBJECT_PREFIX} {clean} {now:%Y%m%d%H%M%S} {pysecrets.token_hex(3)}"


@dataclass(frozen=True)
class CertificateInfo:
    """What a PFX holds, in the terms the procedure checks."""

    subject: str
    issuer: str
    thumbprint: str  # SHA-1, upper-case hex, as Windows shows it
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_algorithm: str
    key_bits: int
    has_private_key: bool
    key_matches: bool
    self_signed: bool
    key_usage: tuple[str, ...]  # names of the KeyUsage bits set; () when the extension is absent
    friendly_name: str | None = None
    der: bytes = field(default=b"", repr=False)  # the certificate itself (public), for Graph's keyCredentials

    @property
    def expired(self) -> bool:
        return self.not_after <= dt.datetime.now(dt.UTC)

    @property
    def key_spec(self) -> str:
        """What Windows will make of the key when the PFX is imported.

        A key whose certificate restricts its use to signatures is imported as KeySpec 2
        (``AT_SIGNATURE``); with key encipherment allowed (or no restriction) it can be a
        KeySpec 1 (``AT_KEYEXCHANGE``) key, which the CRM token issuer needs.
        """
        if not self.key_usage or "key_encipherment" in self.key_usage:
            return "1 (exchange)"
        return "2 (signature)"

    def problems(self, now: dt.datetime | None = None) -> list[str]:
        now = now or dt.datetime.now(dt.UTC)
        found = []
        if self.key_algorithm != "RSA":
            found.append(f"the key is {self.key_algorithm}; S2S needs an RSA key")
        elif self.key_bits < MIN_RSA_BITS:
            found.append(f"the RSA key has {self.key_bits} bits; at least {MIN_RSA_BITS} are needed")
        if not self.has_private_key:
            found.append("the PFX holds no private key (export it again with 'Yes, export the private key')")
        elif not self.key_matches:
            found.append("the private key in the PFX does not belong to its certificate")
        if self.not_after <= now:
            found.append(f"the certificate expired on {self.not_after:%Y-%m-%d %H:%M} UTC")
        if self.not_before > now:
            found.append(f"the certificate is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC")
        if self.key_usage and "key_encipherment" not in self.key_usage:
            found.append(
                "the certificate's key usage excludes key encipherment, so Windows imports it as a "
                "signature key (KeySpec 2); S2S needs KeySpec 1 (exchange): request or create it with "
                "KeySpec KeyExchange"
            )
        return found

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject, "issuer": self.issuer, "thumbprint": self.thumbprint,
            "serial": self.serial, "not_before": self.not_before.isoformat(timespec="seconds"),
            "not_after": self.not_after.isoformat(timespec="seconds"),
            "key": f"{self.key_algorithm} {self.key_bits}",
            "private_key": self.has_private_key, "self_signed": self.self_signed, "key_spec": self.key_spec,
        }

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                       for k, v in self.as_dict().items())
        return f"<table><caption>Certificate</caption>{rows}</table>"


def _thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Windows names certificates by SHA-1


def _key_usage(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    names = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign"]
    return tuple(n for n in names if getattr(ku, n))


def describe(cert: x509.Certificate, key: object = None, friendly_name: str | None = None) -> CertificateInfo:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        algorithm, bits = "RSA", public.key_size
    else:
        algorithm, bits = type(public).__name__.removesuffix("PublicKey").removeprefix("_"), 0
    matches = False
    if isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey):
        matches = key.public_key().public_numbers() == public.public_numbers()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        thumbprint=_thumbprint(cert),
        serial=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_algorithm=algorithm,
        key_bits=bits,
        has_private_key=key is not None,
        key_matches=matches,
        self_signed=cert.issuer == cert.subject,
        key_usage=_key_usage(cert),
        friendly_name=friendly_name,
        der=cert.public_bytes(serialization.Encoding.DER),
    )


def inspect_pfx(path: Path, password: Secret | None) -> CertificateInfo:
    """Open a PFX and describe its certificate; raises CertificateError if it cannot be opened."""
    return _open_pfx(_pfx_bytes(path), Path(path), password)


def _pfx_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"no PFX at {path}", []) from None


def _open_pfx(data: bytes, path: Path, password: Secret | None) -> CertificateInfo:
    pw = password.reveal().encode() if password is not None else None
    try:
        bundle = pkcs12.load_pkcs12(data, pw)
    except ValueError:
        raise CertificateError(f"cannot open {path}", ["wrong password, or not a PFX (PKCS#12) file"]
                               ) from None
    # Without a private key, the certificate of a PFX is among its "additional" ones.
    entry = bundle.cert or (bundle.additional_certs[0] if len(bundle.additional_certs) == 1 else None)
    if entry is None:
        raise CertificateError(f"cannot use {path}", ["the PFX holds no certificate with a private key"])
    name = entry.friendly_name.decode("utf-8", "replace") if entry.friendly_name else None
    return describe(entry.certificate, bundle.key, name)


def pfx_digest(path: Path) -> str:
    """The SHA-256 of a PFX file's bytes (hex): what names it in memos and journals."""
    import hashlib

    return hashlib.sha256(_pfx_bytes(path)).hexdigest()


def inspect_pfx_remembered(path: Path, password: Secret | None, memo_dir: Path, *,
                           open_it: bool = False, digest: str | None = None) -> CertificateInfo:
    """:func:`inspect_pfx`, remembered in ``memo_dir`` by the SHA-256 of the PFX's bytes.

    Opening a PFX costs its key derivations (50,000 rounds for each bag's key and IV), and each
    step after the certificate's reads the same file again in a new kernel. What is remembered is
    the public certificate and whether the file held its private key, as they were the one time
    the PFX opened with its password; the same bytes hold the same certificate. The password is
    not remembered in any form: where the key itself is used (the upload to a server) the PFX is
    opened with it again. ``open_it``: check the password whatever is remembered: for remembered
    bytes, against the file's integrity MAC (:mod:`psbridge.pfxmac`: the one derivation of the
    password that proves it is the file's); otherwise, or where that cannot be read, by opening
    the file. ``digest``: :func:`pfx_digest` of the file, when the caller has it already.
    """
    import hashlib

    from psbridge import pfxmac

    named = digest or pfx_digest(path)
    known = _remembered(Path(memo_dir) / f"{named}.json")
    if known is not None and not open_it:
        return known
    data = _pfx_bytes(path)
    # The digest of the bytes checked or opened: a file changed since the caller hashed it is
    # opened, and remembered as itself.
    digest = hashlib.sha256(data).hexdigest()
    if known is not None and digest == named and password is not None \
            and pfxmac.password_verifies(data, password) is True:
        return known
    info = _open_pfx(data, Path(path), password)
    remember_pfx(info, memo_dir, digest)
    return info


def _remembered(memo: Path) -> CertificateInfo | None:
    """What a memo of :func:`remember_pfx` says, or None (not remembered, or unreadable)."""
    import base64
    import dataclasses
    import json

    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
        cert = x509.load_der_x509_certificate(base64.b64decode(known["der"]))
        return dataclasses.replace(describe(cert, None, known.get("friendly_name")),
                                   has_private_key=bool(known["has_private_key"]),
                                   key_matches=bool(known["key_matches"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_pfx(info: CertificateInfo, memo_dir: Path, digest: str) -> None:
    """Keep the memo :func:`inspect_pfx_remembered` reads for the PFX whose bytes have ``digest``
    (:func:`pfx_digest`) and whose opening (or making) gave ``info``: the public certificate and
    whether the file held its key, no secret."""
    import base64
    import json

    memo = Path(memo_dir) / f"{digest}.json"
    text = json.dumps({
        "thumbprint": info.thumbprint, "der": base64.b64encode(info.der).decode(),
        "has_private_key": info.has_private_key, "key_matches": info.key_matches,
        "friendly_name": info.friendly_name,
    }, indent=1) + "\n"
    with contextlib.suppress(OSError):
        if memo.read_text(encoding="utf-8") == text:
            return  # remembered already (a step that opens it every time)
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(memo, text)


def validate_pfx(path: Path, password: Secret | None) -> CertificateInfo:
    """:func:`inspect_pfx`, then refuse a certificate unfit for S2S, naming every reason."""
    info = inspect_pfx(path, password)
    found = info.problems()
    if found:
        raise CertificateError(f"{Path(path).name} ({info.subject}) cannot be the S2S certificate", found)
    return info


@dataclass(frozen=True)
class GeneratedCertificate:
    """A new self-signed certificate and its PFX bytes (sealed with the given password)."""

    info: CertificateInfo
    pfx: bytes

    def write(self, path: Path) -> Path:
        """Write the PFX whole or not at all (a crash leaves no half-written key behind)."""
        from psbridge.intents import intent

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with intent("write-pfx", str(path), f"a new PFX holding {self.info.thumbprint}"):
            # Whole or not at all: a run killed while writing must not leave a PFX that no longer
            # opens. Owner-only: it holds the private key (sealed, but still).
            write_atomic(path, self.pfx, private=True)
        return path


def generate_self_signed(label: str, password: Secret, *, key_bits: int = MIN_RSA_BITS,
                         days: int = DEFAULT_DAYS, subject: str | None = None) -> GeneratedCertificate:
    """A self-signed RSA certificate for evaluation, with a unique subject, as a PFX.

    The key usage allows signatures and key encipherment, as ``New-SelfSignedCertificate
    -KeySpec KeyExchange`` makes it, so Windows imports the key as KeySpec 1.
    """
    if key_bits < MIN_RSA_BITS:
        raise ParameterError(f"an RSA key for S2S needs at least {MIN_RSA_BITS} bits, not {key_bits}")
    if not 1 <= days <= 3650:
        raise ParameterError(f"a certificate lifetime is 1 to 3650 days, not {days}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name.from_rfc4514_string(subject or unique_subject(label, now))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    friendly = name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    # Triple-DES/SHA-1 sealing: the form every Windows Server that runs CRM 9 imports; the
    # AES form needs Windows Server 2019 or a patched 2016.
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - what older Windows reads
        .build(password.reveal().encode())
    )
    pfx = pkcs12.serialize_key_and_certificates(str(friendly).encode(), key, cert, None, encryption)
    return GeneratedCertificate(describe(cert, key, str(friendly)), pfx)
