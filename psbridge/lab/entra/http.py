"""HTTPS serving for the twin: stdlib ``ThreadingHTTPServer`` with a lab CA certificate.

Only plumbing: bytes in, :class:`~psbridge.lab.entra.wire.Request` to an endpoint object,
:class:`~psbridge.lab.entra.wire.Response` back to bytes.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from psbridge.lab.entra.wire import Request, Response

log = logging.getLogger("psbridge.lab.entra")

Endpoint = Callable[[Request], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    endpoint: Endpoint  # set on the subclass per server
    server_version = "psbridge-lab-entra"
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK would
    # add ~40 ms to every response.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(
            method=self.command,
            path=unquote(url.path),
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            resp = type(self).endpoint(req)
        except Exception:  # a bug in the twin must not look like a network failure
            log.exception("entra twin: unhandled error on %s %s", self.command, url.path)
            resp = Response.json(500, {"error": {"code": "InternalServerError", "message": "lab twin error"}})
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:
        # Request lines hold no secrets (they are in bodies and headers), but keep them quiet.
        log.debug("%s - %s", self.address_string(), format % args)


class TwinServer:
    """One HTTPS listener (on ``port``, or a free one for 0), served from a daemon thread."""

    def __init__(self, endpoint: Endpoint, host: str, cert: tuple[Path, Path], port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"endpoint": staticmethod(endpoint)})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        # The handshake runs in the handler thread (on first read), so one slow client never
        # holds up accepting the next.
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                            do_handshake_on_connect=False)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        # A short poll so stop() returns in tens of milliseconds, not half a second.
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"entra-twin-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)
