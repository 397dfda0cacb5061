"""The lab's certificate authority.

Generated once per lab state directory and kept there, so that a CA bundle handed to a
client (pypsrp's ``cert_validation``, msal's ``verify``) stays valid across lab restarts.
Every HTTPS endpoint of the lab (WinRM 5986 twins, the Entra authority, Graph, the CRM Web
API) gets a leaf certificate from it for ``localhost`` and the loopback addresses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "psbridge lab root CA"
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class LabCA:
    """The CA's files in ``<state>/ca``: ``ca.pem`` is the bundle clients trust."""

    directory: Path

    @property
    def bundle_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def _key_path(self) -> Path:
        return self.directory / "ca-key.pem"

    @classmethod
    def load_or_create(cls, state_dir: Path) -> LabCA:
        ca = cls(Path(state_dir) / "ca")
        if not (ca.bundle_path.exists() and ca._key_path.exists()):
            ca._create()
        return ca

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self._key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.bundle_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _load(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        cert = x509.load_pem_x509_certificate(self.bundle_path.read_bytes())
        key = serialization.load_pem_private_key(self._key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cert, key

    def server_certificate(self, name: str, hostnames: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A leaf certificate (and key) for a lab HTTPS endpoint, made once and reused.

        Returns ``(cert_chain_pem, key_pem)`` paths for ``ssl.SSLContext.load_cert_chain``.
        """
        cert_path = self.directory / f"{name}.pem"
        key_path = self.directory / f"{name}-key.pem"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        ca_cert, ca_key = self._load()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        dns = list(dict.fromkeys((*hostnames, *_LOOPBACK_NAMES)))
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _LOOPBACK_IPS]
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
        )
        return cert_path, key_path
