"""The HTTP(S) listener of a lab WinRM endpoint.

``ThreadingHTTPServer`` gives each TCP connection its own handler object, which is where a
connection's Negotiate context lives (HTTP.sys authenticates connections, not requests).
TLS is negotiated in the connection's thread, so a slow client never holds up the others.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from spnego.channel_bindings import GssChannelBindings

from psbridge.lab.faults import drop_counter, read_faults
from psbridge.lab.httpserver import LabHTTPServer
from psbridge.lab.winrm import auth
from psbridge.lab.winrm.auth import Account, AuthFailed, Directory, NegotiateAcceptor
from psbridge.lab.winrm.service import WinRMService

log = logging.getLogger(__name__)

SOAP = "application/soap+xml;charset=UTF-8"
MAX_BODY = 10 * 1024 * 1024


class WinRMHTTPServer(LabHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], *, service: WinRMService, directory: Directory,
                 server_name: str, state_dir: Path, ssl_context: ssl.SSLContext | None,
                 bindings: GssChannelBindings | None) -> None:
        self.service = service
        self.directory = directory
        self.crm_server = server_name
        self.state_dir = state_dir
        self.ssl_context = ssl_context
        self.bindings = bindings
        self.scheme = "https" if ssl_context else "http"
        super().__init__(address, WinRMHandler)

    def tls_context(self) -> ssl.SSLContext | None:
        return self.ssl_context


class WinRMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: WinRMHTTPServer

    def setup(self) -> None:
        super().setup()
        # Per connection: the Negotiate context and who it signed in.
        self.acceptor: NegotiateAcceptor | None = None
        self.account: Account | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _challenges(self) -> list[str]:
        offers = ["Negotiate"]
        if self.server.scheme == "https":
            offers.append('Basic realm="WSMAN"')
        return offers

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None,
              headers: list[tuple[str, str]] | None = None) -> None:
        self.log_request(status)
        reason = self.responses.get(status, ("",))[0]
        lines = [f"{self.protocol_version} {status} {reason}",
                 f"Server: {self.version_string()}", f"Date: {self.date_time_string()}"]
        lines += [f"{name}: {value}" for name, value in headers or []]
        if body and content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        # Head and body in one write: one segment for a small answer.
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _unauthorized(self, offers: list[str] | None = None) -> None:
        self.acceptor = None
        self.account = None
        self._send(401, headers=[("WWW-Authenticate", o) for o in (offers or self._challenges())])

    def do_POST(self) -> None:
        faults = read_faults(self.server.state_dir, self.server.crm_server)
        if faults.delay:
            time.sleep(faults.delay)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._send(413)
            return
        body = self.rfile.read(length) if length else b""
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._send(404)
            return

        final_token: tuple[str, bytes] | None = None
        header = self.headers.get("Authorization")
        if header:
            if faults.deny_auth:
                self._unauthorized()
                return
            scheme, credentials = auth.parse_authorization(header)
            if scheme in ("negotiate", "ntlm"):
                try:
                    if self.acceptor is None or self.acceptor.complete:
                        self.account = None
                        self.acceptor = NegotiateAcceptor(self.server.directory, self.server.bindings)
                    out = self.acceptor.step(base64.b64decode(credentials))
                except (AuthFailed, ValueError) as e:
                    log.debug("sign-in refused: %s", e)
                    self._unauthorized()
                    return
                label = "Negotiate" if scheme == "negotiate" else "NTLM"
                if not self.acceptor.complete:
                    challenge = f"{label} {base64.b64encode(out or b'').decode()}"
                    self._send(401, headers=[("WWW-Authenticate", challenge)])
                    return
                self.account = self.acceptor.account
                if out:
                    final_token = (label, out)
            elif scheme == "basic" and self.server.scheme == "https":
                try:
                    user, password = auth.decode_basic(credentials)
                    self.account = self.server.directory.check_basic(user, password)
                    self.acceptor = None
                except AuthFailed:
                    self._unauthorized()
                    return
            else:
                # Basic over HTTP would put the password on the wire: refused (AllowUnencrypted=false).
                self._unauthorized()
                return
        elif self.account is None:
            self._unauthorized()
            return

        assert self.account is not None
        extra: list[tuple[str, str]] = []
        if final_token:
            label, token = final_token
            extra.append(("WWW-Authenticate", f"{label} {base64.b64encode(token).decode()}"))

        content_type = self.headers.get("Content-Type", "")
        sealed = auth.is_sealed(content_type)
        if sealed:
            if self.acceptor is None or not self.acceptor.complete:
                self._unauthorized()
                return
            try:
                message = self.acceptor.unseal(body, content_type)
            except Exception as e:  # a message that does not decrypt ends the session
                log.debug("cannot unseal: %s", e)
                self._unauthorized()
                return
        else:
            message = body
            if message and self.server.scheme == "http":
                # Over HTTP only a sealed body is accepted, whatever the authentication.
                self._unauthorized()
                return
        if not message:
            # The client's empty sign-in request: nothing to do but say yes.
            self._send(200, headers=extra)
            return

        if drop_counter(self.server.state_dir, self.server.crm_server).should_drop(faults):
            self._drop()
            return

        try:
            answer = self.server.service.handle(message, self.account.canonical, self.client_address[0])
        except Exception:  # a lab defect: answer with a fault rather than a dead connection
            log.exception("lab WinRM service failed")
            answer = self.server.service.internal_error()
        if sealed:
            assert self.acceptor is not None
            ctype, payload = self.acceptor.seal(answer.body)
        else:
            ctype, payload = SOAP, answer.body
        self._send(answer.status, payload, ctype, extra)

    def _drop(self) -> None:
        """The injected fault: the connection goes away without an answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        # WinRM answers anything but POST on /wsman with 405.
        self._send(405)
