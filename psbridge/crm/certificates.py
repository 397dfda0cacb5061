"""Certificates as the server sees them: its ``LocalMachine\\My`` store and the CRM configuration database.

Two certificates with the same subject in the store make CertificateReconfiguration.ps1 pick
the wrong one and fail with "Private key not found", so uniqueness is checked before installing.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from psbridge.crm.snapin import use_crm_snapin
from psbridge.crm.validation import PfxInfo, thumbprint_of
from psbridge.remote.errors import ValidationError
from psbridge.remote.session import Session

MACHINE_STORE = r"Cert:\LocalMachine\My"


@dataclass(frozen=True)
class StoreCertificate:
    thumbprint: str
    subject: str
    issuer: str
    not_before: Any
    not_after: Any
    has_private_key: bool
    friendly_name: str = ""

    @classmethod
    def from_record(cls, rec: Any) -> StoreCertificate:
        get = rec.get_ci
        return cls(
            thumbprint=str(get("Thumbprint") or "").upper(),
            subject=str(get("Subject") or ""),
            issuer=str(get("Issuer") or ""),
            not_before=get("NotBefore"),
            not_after=get("NotAfter"),
            has_private_key=bool(get("HasPrivateKey")),
            friendly_name=str(get("FriendlyName") or ""),
        )


@dataclass(frozen=True)
class CrmCertificate:
    """A certificate recorded in the CRM configuration database (``Get-CrmCertificate``)."""

    certificate_type: str
    thumbprint: str
    name: str
    id: str
    data: bytes

    @classmethod
    def from_record(cls, rec: Any) -> CrmCertificate:
        get = rec.get_ci
        raw = get("Data")
        if isinstance(raw, str):
            try:
                data = base64.b64decode(raw, validate=False)
            except ValueError:
                data = b""
        else:
            data = raw if isinstance(raw, bytes) else b""
        thumb = str(get("Thumbprint") or "").upper()
        if not thumb and data:
            try:
                thumb = thumbprint_of(data)
            except ValueError:
                thumb = ""
        return cls(
            certificate_type=str(get("CertificateType") or ""),
            thumbprint=thumb,
            name=str(get("Name") or ""),
            id=str(get("Id") or ""),
            data=data,
        )


def normalize_subject(subject: str) -> tuple[tuple[str, str], ...]:
    """A distinguished name as comparable data: (attribute, value) pairs, without case.

    Windows prints ``CN="a, b", O=c`` (quotes around special characters); RFC 4514 writes
    ``CN=a\\, b,O=c``. Both, and any spacing after commas, compare equal here.
    """
    parts: list[tuple[str, str]] = []
    key, value, i, quoted = "", "", 0, False
    text = subject.strip()
    in_value = False
    while i <= len(text):
        c = text[i] if i < len(text) else ","
        if not in_value:
            if c == "=":
                in_value = True
            elif c != "," or key.strip():
                key += c
        elif quoted:
            if c == '"' and text[i + 1:i + 2] == '"':
                value += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                value += c
        elif c == "\\" and i + 1 < len(text):
            value += text[i + 1]
            i += 1
        elif c == '"' and not value.strip():
            quoted = True
        elif c in ",+":
            parts.append((key.strip().upper(), value.strip().lower()))
            key, value, in_value = "", "", False
        else:
            value += c
        i += 1
    return tuple(parts)


def store_certificates(
    session: Session, *, subject: str | None = None, thumbprint: str | None = None
) -> list[StoreCertificate]:
    """Certificates in the server's ``LocalMachine\\My``, optionally filtered by subject or thumbprint.

    The filter runs here rather than in a Where-Object script block: no script text is sent.
    """
    out = session.invoke("Get-ChildItem", LiteralPath=MACHINE_STORE).output
    certs = [StoreCertificate.from_record(o) for o in out if hasattr(o, "get_ci")]
    if subject is not None:
        want = normalize_subject(subject)
        certs = [c for c in certs if normalize_subject(c.subject) == want]
    if thumbprint is not None:
        tp = re.sub(r"[^0-9A-Fa-f]", "", thumbprint).upper()
        certs = [c for c in certs if c.thumbprint == tp]
    return certs


def crm_certificates(session: Session, certificate_type: str | None = None) -> list[CrmCertificate]:
    use_crm_snapin(session)
    out = session.invoke("Get-CrmCertificate").output
    certs = [CrmCertificate.from_record(o) for o in out if hasattr(o, "get_ci")]
    if certificate_type is not None:
        certs = [c for c in certs if c.certificate_type.lower() == certificate_type.lower()]
    return certs


def check_subject_unique(session: Session, pfx: PfxInfo, field: str = "pfx") -> bool:
    """Refuse a PFX whose subject another certificate in the store already has.

    Returns True when this very certificate (same thumbprint) is already installed.
    """
    same_subject = store_certificates(session, subject=pfx.subject)
    others = [c for c in same_subject if c.thumbprint != pfx.thumbprint]
    if others:
        listed = ", ".join(f"{c.thumbprint} (until {_day(c.not_after)})" for c in others)
        raise ValidationError(
            field,
            f"{session.server} already has another certificate with subject {pfx.subject!r} in "
            f"LocalMachine\\My: {listed}. CertificateReconfiguration.ps1 would fail with "
            "'Private key not found'; remove it from the store or give the new certificate a unique subject",
        )
    return any(c.thumbprint == pfx.thumbprint for c in same_subject)


def _day(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d}"
    return str(value)[:10] if value else "?"
