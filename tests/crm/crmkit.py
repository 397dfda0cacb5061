"""Helpers of the CRM tests: PFX files (self-signed, with a password, valid or not as a test
needs), hostile text, and the lab's description as a dict."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from psbridge.cloud import (
    CloudSettings,
    GraphClient,
    ensure_app,
    ensure_client_secret,
    ensure_required_access,
    grant_admin_consent,
    sign_in_device_code,
)
from psbridge.lab.config import LabConfig

# Characters that would break any PowerShell built from text: they must arrive as they are.
HOSTILE = "p'w\"; $(whoami) `n ü中"


def lab_dict(lab: object) -> dict[str, Any]:
    config = getattr(lab, "config", lab)
    assert isinstance(config, LabConfig)
    return config.model_dump(mode="json")


_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_pfx(
    path: Path,
    password: str,
    subject: str = "crm-s2s.contoso.com",
    *,
    days: int = 365,
    start_days_ago: int = 1,
    ec_key: bool = False,
    fresh_key: bool = False,
) -> Path:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if ec_key:
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if fresh_key else _RSA_KEY
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=start_days_ago))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    data = serialization.pkcs12.serialize_key_and_certificates(
        b"s2s", key, cert, None, serialization.BestAvailableEncryption(password.encode())
    )
    path.write_bytes(data)
    return path


def entra_app(lab: Any, tmp_path: Path, *, consent: bool = True) -> tuple[str, str, str]:
    """An app registration with a client secret in the lab store: (tenant id, app id, secret ref)."""
    settings = CloudSettings.from_lab(lab.twin.describe())
    admin = sign_in_device_code(settings, lab.twin.tenant_domain, on_code=lambda c: None, cache_dir=tmp_path)
    graph = GraphClient(settings, admin)
    app = ensure_app(graph, f"psbridge test {uuid.uuid4().hex[:6]}", "https://localhost/psbridge")
    ref = f"lab:tests/client-secret-{app.app_id}"
    ensure_client_secret(graph, app, ref)
    ensure_required_access(graph, app)
    if consent:
        grant_admin_consent(graph, app)
    return lab.twin.tenant_id, app.app_id, ref
