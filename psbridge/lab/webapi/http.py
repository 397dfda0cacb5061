"""The HTTPS listeners of the CRM Web API twin: IIS as a client meets it.

``ThreadingHTTPServer`` gives each TCP connection its own handler, which holds that
connection's Negotiate context: IIS with Windows authentication (kernel mode) authenticates a
connection, not a request, so after the handshake the connection's later requests carry no
``Authorization`` header. An IFD site takes ``Authorization: Bearer`` on every request instead
and answers a request without one ``401`` naming AD FS (``authorization_uri``) and the
resource. The client-certificate site is the same site with IIS's SSL setting "Require client
certificates": the TLS handshake asks for a certificate and fails without one (or, knob
``client_certificate: iis``, IIS's 403.7 page). Knobs (:mod:`psbridge.lab.webapi.knobs`) add delay,
dropped connections and refused sign-ins.
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
from urllib.parse import parse_qsl, unquote, urlsplit

from spnego.channel_bindings import GssChannelBindings

from psbridge.lab import faults
from psbridge.lab.entra.wire import Request
from psbridge.lab.httpserver import LabHTTPServer
from psbridge.lab.webapi.knobs import JsonKnobs
from psbridge.lab.webapi.service import Reply, Site, TokenRefused, WebApiService, unauthorized
from psbridge.lab.winrm import auth
from psbridge.lab.winrm.auth import AuthFailed, Directory, NegotiateAcceptor

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
IIS_403_7 = (
    "<html><head><title>403 - Forbidden: Access is denied.</title></head><body><h1>HTTP Error 403.7 - "
    "Forbidden</h1><h2>The page you are attempting to access requires your browser to have a Secure Sockets "
    "Layer (SSL) client certificate that the Web server recognizes.</h2></body></html>"
)


class WebApiHTTPServer(LabHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], *, service: WebApiService, site: Site, directory: Directory,
                 knobs: JsonKnobs, state_dir: Path, tls: tuple[Path, Path], ca_bundle: Path,
                 bindings: GssChannelBindings, requires_client_certificate: bool = False) -> None:
        self.service = service
        self.site = site
        self.directory = directory
        self.knobs = knobs
        self.state_dir = state_dir
        self.tls = tls
        self.ca_bundle = ca_bundle
        self.bindings = bindings
        self.requires_client_certificate = requires_client_certificate
        self._contexts: dict[str, ssl.SSLContext] = {}
        super().__init__(address, WebApiHandler)

    def tls_context(self) -> ssl.SSLContext:
        mode = "tls" if not self.requires_client_certificate else str(self.knobs.get("client_certificate"))
        ctx = self._contexts.get(mode)
        if ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            if self.requires_client_certificate and mode == "tls":
                # IIS "Require client certificates": the handshake asks for one and fails without it.
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(str(self.ca_bundle))
            self._contexts[mode] = ctx
        return ctx

    @property
    def url(self) -> str:
        address, port = self.server_address[:2]
        host = str(address if isinstance(address, str) else address.decode())
        host = f"[{host}]" if ":" in host else host
        return f"https://{host}:{port}"


class WebApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    server: WebApiHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        # Per connection, as HTTP.sys keeps it: the Negotiate context and whom it signed in.
        self.acceptor: NegotiateAcceptor | None = None
        self.account: str | None = None

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, reply: Reply) -> None:
        self.log_request(reply.status)
        reason = self.responses.get(reply.status, ("",))[0]
        lines = [f"{self.protocol_version} {reply.status} {reason}", f"Server: {self.version_string()}",
                 f"Date: {self.date_time_string()}", "X-Powered-By: ASP.NET"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Length: {len(reply.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body)

    def _challenges(self) -> list[str]:
        if self.server.site.deployment == "ad":
            return ["Negotiate", "NTLM"]
        org = self.server.site.organization or next(iter(self.server.service.org_urls), "")
        return [self.server.service.bearer_challenge(org)]

    def _refuse(self, challenges: list[str] | None = None) -> None:
        self.acceptor = None
        self.account = None
        self._send(unauthorized(challenges or self._challenges()))

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        knobs = self.server.knobs.snapshot()
        if knobs["delay"]:
            time.sleep(float(knobs["delay"]))
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._send(Reply(413))
            return
        body = self.rfile.read(length) if length else b""
        if self.server.requires_client_certificate:
            # Reached only in the "iis" mode: the certificate was asked for after the handshake.
            self._send(Reply(403, IIS_403_7.encode(), [("Content-Type", "text/html")]))
            return
        counter = faults.drop_counter(self.server.state_dir, "webapi")
        if counter.should_drop(faults.Faults(drop_after=knobs["drop_after"], generation=knobs["generation"])):
            self._drop()
            return
        account, extra = self._authenticate(knobs)
        if account is None:
            return
        url = urlsplit(self.path)
        req = Request(method=self.command, path=unquote(url.path),
                      query=dict(parse_qsl(url.query, keep_blank_values=True)),
                      headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        try:
            reply = self.server.service.handle(req, self.server.site, account)
        except Exception:  # a lab defect answers as CRM's unexpected error, not a dead connection
            log.exception("lab CRM Web API failed on %s %s", self.command, url.path)
            reply = Reply.json(500, {"error": {"code": "0x80040216",
                                               "message": "An unexpected error occurred."}})
        reply.headers.extend(extra)
        self._send(reply)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def _authenticate(self, knobs: dict[str, Any]) -> tuple[str | None, list[tuple[str, str]]]:
        """The signed-in account, or None after a 401 has been sent; plus headers for the answer."""
        header = self.headers.get("Authorization")
        site = self.server.site
        if knobs["deny_auth"] and (site.deployment == "ifd" or (not header and self.account)):
            self._refuse()
            return None, []
        if site.deployment == "ifd":
            scheme, credentials = auth.parse_authorization(header or "")
            if scheme != "bearer" or not credentials:
                self._refuse()
                return None, []
            try:
                return self.server.service.account_from_bearer(credentials, site.organization), []
            except TokenRefused as e:
                org = site.organization or next(iter(self.server.service.org_urls), "")
                self._refuse([self.server.service.bearer_challenge(org, str(e))])
                return None, []
        if not header:
            if self.account is None:
                self._refuse()
            return self.account, []
        scheme, credentials = auth.parse_authorization(header)
        if scheme not in ("negotiate", "ntlm"):
            self._refuse()
            return None, []
        try:
            if self.acceptor is None or self.acceptor.complete:
                self.account = None
                bindings = self.server.bindings if knobs["extended_protection"] else None
                self.acceptor = NegotiateAcceptor(self.server.directory, bindings)
            out = self.acceptor.step(base64.b64decode(credentials))
        except (AuthFailed, ValueError) as e:
            log.debug("sign-in refused: %s", e)
            self._refuse()
            return None, []
        label = "Negotiate" if scheme == "negotiate" else "NTLM"
        if not self.acceptor.complete:
            token = base64.b64encode(out or b"").decode()
            self._send(Reply(401, b"", [("WWW-Authenticate", f"{label} {token}")]))
            return None, []
        assert self.acceptor.account is not None
        if knobs["deny_auth"]:
            # As for a locked-out account: the handshake runs to its end, then the answer is no.
            self._refuse()
            return None, []
        self.account = self.acceptor.account.canonical
        extra = [("Persistent-Auth", "true")]
        if out:
            extra.append(("WWW-Authenticate", f"{label} {base64.b64encode(out).decode()}"))
        return self.account, extra
