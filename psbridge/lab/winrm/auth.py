"""Signing in to a lab WinRM endpoint, as HTTP.sys and WinRM do it, with pyspnego as the acceptor.

Negotiate (NTLM inside SPNEGO, or raw NTLM) is connection-based: once a TCP connection has
completed the handshake, its later requests carry no ``Authorization`` header. Over HTTP the
bodies are then sealed with the session key (MS-WSMV 2.2.9.1, ``multipart/encrypted``);
Basic is accepted only over HTTPS, as with ``AllowUnencrypted=false``.

pyspnego's NTLM acceptor finds account hashes through the file named by ``NTLM_USER_FILE``.
The variable is process-wide, and one process may run several labs with different accounts,
so each endpoint keeps its own file and every acceptor step runs with the variable pointed at
it under one lock. The file holds NT hashes, never passwords.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
import spnego.channel_bindings
from spnego.exceptions import NegotiateOptions, SpnegoError

from psbridge.errors import TwinAnswer
from psbridge.files import owned_temp_name

SPNEGO_ENCRYPTED = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = "Encrypted Boundary"


class AuthFailed(TwinAnswer):
    """The credentials were refused: the endpoint answers 401."""


def _nt_hash(password: str) -> str:
    from spnego._ntlm_raw.crypto import ntowfv1  # MD4 is gone from many OpenSSL builds

    return base64.b16encode(ntowfv1(password)).decode("ascii")


@dataclass(frozen=True)
class Account:
    domain: str  # NetBIOS domain, e.g. LAB
    user: str
    password: str = field(repr=False)

    @property
    def canonical(self) -> str:
        return f"{self.domain}\\{self.user}"

    @property
    def upn(self) -> str:
        return f"{self.user}@{self.domain.lower()}.local"


def parse_accounts(accounts: dict[str, str]) -> list[Account]:
    out = []
    for name, password in accounts.items():
        domain, _, user = name.rpartition("\\")
        if not domain:
            raise ValueError(f"lab account {name!r} must be written DOMAIN\\user")
        out.append(Account(domain.upper(), user, password))
    return out


_ENV_LOCK = threading.Lock()


class Directory:
    """The accounts an endpoint accepts, in every form a user may type them."""

    def __init__(self, accounts: dict[str, str]) -> None:
        self.accounts = parse_accounts(accounts)
        # pyspnego's acceptor reads NT hashes from a file; one a killed lab left is removed by the
        # next lab to start (the file name carries the process id).
        fd, name = tempfile.mkstemp(prefix=owned_temp_name("psbridge-ntlm-"), suffix=".txt")
        self.ntlm_file = Path(name)
        lines = []
        for a in self.accounts:
            nt = _nt_hash(a.password)
            # smbpasswd form (USER:UID:LM:NT:FLAGS:LCT): a password may hold any character.
            for form in (a.canonical, a.user, a.upn):
                lines.append(f"{form}:0:{'0' * 32}:{nt}:[U]:LCT-00000000")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        with _ENV_LOCK:
            # The key is added as the lab starts, before clients talk to it; it then only changes
            # value (see ntlm_store).
            os.environ.setdefault("NTLM_USER_FILE", "")

    def close(self) -> None:
        self.ntlm_file.unlink(missing_ok=True)

    def find(self, name: str) -> Account | None:
        """The account for ``user``, ``DOMAIN\\user`` or ``user@domain.local`` (any case)."""
        name = name.strip()
        low = name.lower()
        for a in self.accounts:
            if low in (a.user.lower(), a.canonical.lower(), a.upn.lower()):
                return a
            user, at, dns = low.partition("@")
            if at and user == a.user.lower() and dns.split(".")[0] == a.domain.lower():
                return a
        return None

    def check_basic(self, name: str, password: str) -> Account:
        a = self.find(name)
        if a is None or not _same(a.password, password):
            raise AuthFailed("the user name or password is incorrect")
        return a

    @contextmanager
    def ntlm_store(self) -> Iterator[None]:
        with _ENV_LOCK:
            old = os.environ.get("NTLM_USER_FILE", "")
            os.environ["NTLM_USER_FILE"] = str(self.ntlm_file)
            try:
                yield
            finally:
                # Emptied, never removed: a thread of this process iterating os.environ (requests
                # looks for proxies there on every request, and a lab may run beside its clients)
                # fails with a KeyError when a key goes while it iterates. pyspnego reads an empty
                # value as none.
                os.environ["NTLM_USER_FILE"] = old


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def channel_bindings_for(cert_der: bytes) -> spnego.channel_bindings.GssChannelBindings:
    """RFC 5929 tls-server-end-point for the lab's certificates (SHA-256 signatures)."""
    digest = hashlib.sha256(cert_der).digest()
    return spnego.channel_bindings.GssChannelBindings(application_data=b"tls-server-end-point:" + digest)


class NegotiateAcceptor:
    """One connection's Negotiate/NTLM security context: handshake, then seal and unseal."""

    def __init__(self, directory: Directory,
                 bindings: spnego.channel_bindings.GssChannelBindings | None) -> None:
        self.directory = directory
        with directory.ntlm_store():
            # pyspnego's own SPNEGO/NTLM, never the platform's: on Windows SSPI would check the
            # laptop's real accounts instead of the lab's.
            self._ctx: Any = spnego.server(
                hostname="localhost", service="HTTP", protocol="negotiate", channel_bindings=bindings,
                options=NegotiateOptions.use_negotiate,
            )
        self.account: Account | None = None

    @property
    def complete(self) -> bool:
        return bool(self._ctx.complete)

    def step(self, token: bytes) -> bytes | None:
        """Consume the client's token; the answer token (if any). Raises AuthFailed."""
        try:
            with self.directory.ntlm_store():
                out = self._ctx.step(token)
        except SpnegoError as e:
            raise AuthFailed(str(e.message if hasattr(e, "message") else e)) from None
        if self._ctx.complete:
            principal = self._ctx.client_principal or ""
            self.account = self.directory.find(principal)
            if self.account is None:
                raise AuthFailed("the account is not known to this server")
        return out  # type: ignore[no-any-return]

    # --- MS-WSMV 2.2.9.1 encrypted messages ---------------------------------------------------

    def unseal(self, body: bytes, content_type: str) -> bytes:
        boundary = _boundary(content_type)
        parts = re.split(rb"--\s*" + re.escape(boundary.encode()) + rb"(?:--)?\r\n", body)
        parts = [p for p in parts if p]
        out = b""
        for i in range(0, len(parts) - 1, 2):
            header, payload = parts[i], parts[i + 1]
            m = re.search(rb"Length=(\d+)", header)
            if not m:
                raise ValueError("encrypted part without OriginalContent length")
            expected = int(m.group(1))
            payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            (sig_len,) = struct.unpack("<i", payload[:4])
            signature = payload[4:4 + sig_len]
            sealed = payload[4 + sig_len:]
            plain = self._ctx.unwrap_winrm(signature, sealed)
            if len(plain) != expected:
                raise ValueError(f"decrypted length {len(plain)} is not the announced {expected}")
            out += plain
        return out

    def seal(self, message: bytes) -> tuple[str, bytes]:
        """The Content-Type and body of ``message`` sealed for this connection."""
        wrapped = self._ctx.wrap_winrm(message)
        length = len(message) + wrapped.padding_length
        payload = struct.pack("<i", len(wrapped.header)) + wrapped.header + wrapped.data
        head = (
            f"--{BOUNDARY}\r\n"
            f"\tContent-Type: {SPNEGO_ENCRYPTED}\r\n"
            f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={length}\r\n"
            f"--{BOUNDARY}\r\n"
            "\tContent-Type: application/octet-stream\r\n"
        ).encode("ascii")
        body = head + payload + f"--{BOUNDARY}--\r\n".encode("ascii")
        content_type = f'multipart/encrypted;protocol="{SPNEGO_ENCRYPTED}";boundary="{BOUNDARY}"'
        return content_type, body


def _boundary(content_type: str) -> str:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("multipart/encrypted without a boundary")
    return m.group(1)


def is_sealed(content_type: str) -> bool:
    ct = content_type.lower()
    return ct.startswith("multipart/encrypted") or ct.startswith("multipart/x-multi-encrypted")


def parse_authorization(header: str) -> tuple[str, str]:
    """``("negotiate"|"ntlm"|"basic"|other, credentials)`` from an Authorization header."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), rest.strip()


def decode_basic(credentials: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(credentials, validate=True)
    except ValueError:
        raise AuthFailed("malformed Basic credentials") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # what requests sends for non-ASCII Basic credentials
    user, sep, password = text.partition(":")
    if not sep:
        raise AuthFailed("malformed Basic credentials")
    return user, password
