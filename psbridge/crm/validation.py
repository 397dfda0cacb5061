"""Inputs of the deployment operations, checked before anything is sent to a server.

Each check returns the value in its canonical form or raises
:class:`psbridge.remote.ValidationError` naming the input and saying what is wrong with it,
in words a consultant can act on. Checks that need the server (does the organization exist,
is the certificate's subject unique in its store) live with the operations and use these.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from psbridge.remote.errors import ValidationError
from psbridge.remote.paths import server_path
from psbridge.secrets import Secret
from psbridge.text import shown

# The certificate types CertificateReconfiguration.ps1 installs for server-to-server auth.
CERTIFICATE_TYPES = ("S2STokenIssuer", "AlternativeS2STokenIssuer")
NETWORK_SERVICE = "Network Service"
_NETWORK_SERVICE_FORMS = {"network service", "networkservice", "nt authority\\network service"}

_GUID = re.compile(r"^\{?[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\}?$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# sAMAccountName: at most 20 characters, none of these; NetBIOS domain: at most 15.
_SAM_FORBIDDEN = set('"/\\[]:;|=,+*?<>@')
_NETBIOS_FORBIDDEN = set('\\/:*?"<>|. ')
# Organization unique names: a letter first, then letters, digits and underscores; at most 30
# characters (the Deployment SDK's Organization.UniqueName).
_ORG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,29}$")


def is_guid(text: str) -> bool:
    return bool(_GUID.match(text.strip()))


def guid(value: str | uuid.UUID, field: str) -> uuid.UUID:
    """A GUID, with or without braces, any case."""
    if isinstance(value, uuid.UUID):
        return value
    text = str(value).strip() if value is not None else ""
    if not _GUID.match(text):
        raise ValidationError(
            field, f"{shown(text)} is not a GUID (expected 32 hex digits as 8-4-4-4-12, e.g. "
            "00000000-0000-0000-0000-000000000000)"
        )
    return uuid.UUID(text.strip("{}"))


def tenant(value: str | uuid.UUID, field: str = "tenant") -> str:
    """An Entra ID tenant: its GUID, or one of its domain names (``contoso.onmicrosoft.com``)."""
    text = str(value).strip() if value is not None else ""
    if _GUID.match(text):
        return str(uuid.UUID(text.strip("{}")))
    labels = text.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(
            field, f"{shown(text)} is neither a tenant GUID nor a domain name such as contoso.onmicrosoft.com"
        )
    return text.lower()


def organization_name(value: str, field: str = "organization") -> str:
    """An organization's unique name as CRM stores it (not its display name)."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ValidationError(field, "the organization's unique name is required")
    if not _ORG_NAME.match(text):
        raise ValidationError(
            field, f"{shown(text)} is not an organization unique name: at most 30 characters, a letter "
            "first, then letters, digits and underscores (use the unique name, not the display name)"
        )
    return text


def certificate_type(value: str, field: str = "certificate_type") -> str:
    text = str(value).strip() if value is not None else ""
    for known in CERTIFICATE_TYPES:
        if text.lower() == known.lower():
            return known
    raise ValidationError(
        field, f"{shown(text)} is not a certificate type for server-to-server authentication; "
        f"use {' or '.join(CERTIFICATE_TYPES)} (the alternative one while rotating)"
    )


def service_account(value: str, field: str = "service_account") -> str:
    """The Asynchronous Processing Service's account: ``DOMAIN\\user``, ``user@domain``, Network Service."""
    text = str(value).strip() if value is not None else ""
    forms = "use DOMAIN\\user, user@domain.com or Network Service"
    if text.lower() in _NETWORK_SERVICE_FORMS:
        return NETWORK_SERVICE
    if "\\" in text:
        domain, _, user = text.partition("\\")
        if not domain or len(domain) > 15 or set(domain) & _NETBIOS_FORBIDDEN:
            raise ValidationError(
                field, f"{shown(text)}: {shown(domain)} is not a NetBIOS domain name; {forms}")
        _check_user(text, user, field, forms)
        return text
    if "@" in text:
        user, _, domain = text.rpartition("@")
        labels = domain.split(".")
        if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
            raise ValidationError(field, f"{shown(text)}: {shown(domain)} is not a domain name; {forms}")
        if not user or any(c in user for c in '"\\/[]:;|=,+*?<>@ '):
            raise ValidationError(field, f"{shown(text)}: {shown(user)} is not a user name; {forms}")
        return text
    raise ValidationError(field, f"{shown(text)} names no domain; {forms}")


def _check_user(text: str, user: str, field: str, forms: str) -> None:
    if not user:
        raise ValidationError(field, f"{shown(text)} has no user name after the backslash; {forms}")
    if len(user) > 20 or set(user) & _SAM_FORBIDDEN or user.endswith("."):
        raise ValidationError(
            field, f"{shown(text)}: {shown(user)} is not a Windows logon name (at most 20 characters, "
            'none of " / \\ [ ] : ; | = , + * ? < > @); ' + forms
        )


def pfx_server_path(value: str | PurePath, field: str = "pfx_path") -> PureWindowsPath:
    path = server_path(value, field)
    if path.suffix.lower() != ".pfx":
        raise ValidationError(field, f"{shown(str(path))} does not end in .pfx; the scripts take a PFX file")
    return path


@dataclass(frozen=True)
class PfxInfo:
    """What a PFX holds, as the procedure needs it (nothing secret)."""

    subject: str
    issuer: str
    thumbprint: str  # SHA-1, upper-case hex, as Windows shows it
    not_before: dt.datetime
    not_after: dt.datetime
    key_size: int
    der: bytes

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    def expires_in(self, now: dt.datetime | None = None) -> dt.timedelta:
        return self.not_after - (now or dt.datetime.now(dt.UTC))


def subject_as_windows(name: x509.Name) -> str:
    """A distinguished name as Windows prints ``Subject``: most specific first, ``CN=a, O=b``."""
    parts = []
    for rdn in reversed(name.rdns):
        for attr in rdn:
            short = {
                "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                "countryName": "C", "stateOrProvinceName": "S", "localityName": "L",
                "emailAddress": "E", "domainComponent": "DC",
            }.get(attr.oid._name, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.decode("utf-8", "replace")
            if any(c in value for c in ',+="\n<>#;'):
                value = '"' + value.replace('"', '""') + '"'
            parts.append(f"{short}={value}")
    return ", ".join(parts)


def inspect_pfx(
    pfx: str | Path | bytes, password: Secret, field: str = "pfx", now: dt.datetime | None = None
) -> PfxInfo:
    """Open a PFX with its password and check what CertificateReconfiguration needs.

    An RSA private key (the scripts sign tokens with it), a certificate that is valid now.
    """
    if isinstance(pfx, bytes):
        data, where = pfx, "the PFX"
    else:
        path = Path(pfx)
        where = str(path)
        if path.suffix.lower() != ".pfx":
            raise ValidationError(field, f"{where} does not end in .pfx")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ValidationError(field, f"{where} does not exist") from None
        except OSError as e:
            raise ValidationError(field, f"{where} cannot be read: {e.strerror}") from None
    try:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password.reveal().encode("utf-8"))
    except ValueError:
        # cryptography says the same for a wrong password and a damaged file.
        raise ValidationError(
            field, f"{where} does not open with the given password (or is not a PFX file)"
        ) from None
    if cert is None:
        raise ValidationError(field, f"{where} holds no certificate")
    if key is None:
        raise ValidationError(field, f"{where} holds no private key: export the certificate with its key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValidationError(
            field, f"{where} holds a {type(key).__name__.removesuffix('PrivateKey').lstrip('_')} key; "
            "server-to-server authentication needs an RSA key"
        )
    info = PfxInfo(
        subject=subject_as_windows(cert.subject),
        issuer=subject_as_windows(cert.issuer),
        thumbprint=cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - the thumbprint is SHA-1 by definition
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_size=key.key_size,
        der=cert.public_bytes(Encoding.DER),
    )
    moment = now or dt.datetime.now(dt.UTC)
    if info.not_after <= moment:
        raise ValidationError(
            field, f"the certificate {info.subject} ({info.thumbprint}) expired on "
            f"{info.not_after:%Y-%m-%d %H:%M} UTC; make a new one"
        )
    if info.not_before > moment:
        raise ValidationError(
            field, f"the certificate {info.subject} ({info.thumbprint}) is not valid before "
            f"{info.not_before:%Y-%m-%d %H:%M} UTC"
        )
    return info


def thumbprint_of(der: bytes) -> str:
    """The Windows thumbprint (SHA-1, upper-case hex) of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - thumbprints are SHA-1
