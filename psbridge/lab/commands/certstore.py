"""Certificates on a lab server: PFX files opened as Windows opens them, store entries, objects.

A store entry (in the world) is what ``Cert:\\LocalMachine\\My`` holds for one certificate:
its DER, thumbprint, subject and issuer as .NET writes them (``CN=x, O=y``), validity, whether
its private key is there, the key spec and who may read the key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from psbridge.errors import TwinAnswer
from psbridge.lab.commands.objects import array, new_object

X509 = "System.Security.Cryptography.X509Certificates.X509Certificate2"
STORE_PROVIDER = "Microsoft.PowerShell.Security\\Certificate"
WRONG_PASSWORD = "The specified network password is not correct."


class PfxError(TwinAnswer):
    """The PFX cannot be opened: wrong password, or not a PKCS#12 file."""


def dotnet_name(name: x509.Name) -> str:
    """``X500DistinguishedName.Name``: most specific RDN first, joined by ``, ``."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


@dataclass
class PfxContent:
    certificate: x509.Certificate
    has_private_key: bool
    key_spec: int
    others: list[x509.Certificate]

    def entry(self) -> dict[str, Any]:
        return store_entry(self.certificate, self.has_private_key, self.key_spec)


def open_pfx(data: bytes, password: str | None) -> PfxContent:
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode("utf-8") if password else None)
    except ValueError:
        # Windows cannot tell a wrong password from a damaged file either.
        raise PfxError(WRONG_PASSWORD) from None
    if bundle.cert is not None:
        cert = bundle.cert.certificate
        others = [c.certificate for c in bundle.additional_certs]
    elif bundle.additional_certs:
        cert, others = (
            bundle.additional_certs[0].certificate,
            [c.certificate for c in bundle.additional_certs[1:]],
        )
    else:
        raise PfxError("Cannot find the requested object.")
    has_key = bundle.key is not None
    key_spec = 1 if isinstance(bundle.key, rsa.RSAPrivateKey) else 0
    return PfxContent(cert, has_key, key_spec, others)


def thumbprint(der: bytes) -> str:
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - Windows names certificates by SHA-1


def store_entry(cert: x509.Certificate, has_private_key: bool, key_spec: int) -> dict[str, Any]:
    der = cert.public_bytes(Encoding.DER)
    return {
        "thumbprint": thumbprint(der),
        "subject": dotnet_name(cert.subject),
        "issuer": dotnet_name(cert.issuer),
        "serial": format(cert.serial_number, "X"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "der": base64.b64encode(der).decode("ascii"),
        "has_private_key": has_private_key,
        "key_spec": key_spec,
        "key_readers": [],
        "friendly_name": "",
    }


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _dotnet_time(t: dt.datetime) -> str:
    return f"{t.month}/{t.day}/{t.year} {t.strftime('%I:%M:%S %p').lstrip('0')}"


def certificate_object(entry: dict[str, Any], ps_path: str | None = None) -> Any:
    """An ``X509Certificate2`` as ``Get-ChildItem Cert:\\...`` and ``Get-PfxData`` give it."""
    der = base64.b64decode(entry["der"])
    cert = x509.load_der_x509_certificate(der)
    not_before, not_after = when(entry["not_before"]), when(entry["not_after"])
    text = (
        f"[Subject]\r\n  {entry['subject']}\r\n\r\n[Issuer]\r\n  {entry['issuer']}\r\n\r\n"
        f"[Serial Number]\r\n  {entry['serial']}\r\n\r\n[Not Before]\r\n  {_dotnet_time(not_before)}\r\n\r\n"
        f"[Not After]\r\n  {_dotnet_time(not_after)}\r\n\r\n[Thumbprint]\r\n  {entry['thumbprint']}\r\n"
    )
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns: list[str] = [str(n) for n in sans.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        dns = []
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    props = {
        "Archived": False,
        "Extensions": array(
            [e.oid.dotted_string for e in cert.extensions],
            "System.Security.Cryptography.X509Certificates.X509Extension",
        ),
        "FriendlyName": entry.get("friendly_name", ""),
        "IssuerName": new_object(
            [
                "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
                "System.Security.Cryptography.AsnEncodedData",
            ],
            {"Name": entry["issuer"]},
            "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
        ),
        "NotAfter": not_after,
        "NotBefore": not_before,
        "HasPrivateKey": bool(entry["has_private_key"]),
        "PrivateKey": (
            "System.Security.Cryptography.RSACryptoServiceProvider" if entry["has_private_key"] else None
        ),
        "PublicKey": "System.Security.Cryptography.X509Certificates.PublicKey",
        "RawData": der,
        "SerialNumber": entry["serial"],
        "SubjectName": new_object(
            [
                "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
                "System.Security.Cryptography.AsnEncodedData",
            ],
            {"Name": entry["subject"]},
            "System.Security.Cryptography.X509Certificates.X500DistinguishedName",
        ),
        "SignatureAlgorithm": "System.Security.Cryptography.Oid",
        "Thumbprint": entry["thumbprint"],
        "Version": cert.version.value + 1,
        "Handle": 0,
        "Issuer": entry["issuer"],
        "Subject": entry["subject"],
    }
    extended: dict[str, Any] = {}
    if ps_path:
        parent, _, child = ps_path.rpartition("\\")
        extended = {
            "PSPath": f"{STORE_PROVIDER}::{ps_path}",
            "PSParentPath": f"{STORE_PROVIDER}::{parent}",
            "PSChildName": child,
            "PSDrive": "Cert",
            "PSProvider": STORE_PROVIDER,
            "PSIsContainer": False,
        }
    extended.update(
        {
            "EnhancedKeyUsageList": "{}",
            "DnsNameList": "{" + ", ".join(dns or cn) + "}",
            "SendAsTrustedIssuer": False,
            "EnrollmentPolicyEndPoint": "Microsoft.CertificateServices.Commands.EnrollmentEndPointProperty",
            "EnrollmentServerEndPoint": "Microsoft.CertificateServices.Commands.EnrollmentEndPointProperty",
            "PolicyId": None,
        }
    )
    return new_object(
        [X509, "System.Security.Cryptography.X509Certificates.X509Certificate"], props, text, extended
    )
