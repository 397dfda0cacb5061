"""The HTTP server under the lab's twins that speak over their own connections (WinRM, CRM Web API).

What both need beyond :class:`http.server.ThreadingHTTPServer`: no DNS lookup when binding to
loopback, TCP_NODELAY, TLS where the twin has a context, every open connection known so that a
fault knob (or the lab stopping) can cut them all, and a client that goes away mid-answer logged
rather than printed as a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


def _refused(tls: ssl.SSLSocket) -> None:
    """Close a connection whose handshake the server refused (its alert sent) as a server should:
    its sending side first, then what the client had sent already read and dropped until the client
    closes (a second at most). Closed at once, with the client's first request unread (TLS 1.3
    clients send it before they hear the verdict), it would end in a reset, which can overtake the
    alert: the client would see the connection cut rather than its certificate refused."""
    with socket.socket(fileno=tls.detach()) as raw, contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(1.0)
        while raw.recv(4096):
            pass


class LabHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that tracks its connections; subclasses say which TLS context applies."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which can stall; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def tls_context(self) -> ssl.SSLContext | None:
        """The context a new connection is wrapped in (None: plain HTTP)."""
        return None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Small answers must not wait for the client's delayed ACK (Nagle): ~40 ms a request.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = self.tls_context()
        if context is not None:
            try:
                request.settimeout(30)
                request = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            except (ssl.SSLError, OSError) as e:
                log.debug("TLS with %s failed: %s", client_address, e)
                return
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log.debug("TLS handshake with %s failed: %s", client_address, e)
                _refused(request)
                return
            request.settimeout(None)
        with self._open_lock:
            self._open.add(request)
        try:
            self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]  # as socketserver does
        except (ssl.SSLError, ConnectionError, TimeoutError) as e:
            # TLS 1.3 finishes the client's handshake before the server has checked its certificate:
            # a refusal comes on the first read.
            log.debug("connection from %s ended: %s", client_address, e)
        finally:
            with self._open_lock:
                self._open.discard(request)
            with contextlib.suppress(OSError):
                request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer (Ctrl-C, a killed process) is normal for a server.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
            log.debug("connection from %s ended: %s", client_address, error)
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Cut every open connection (a fault knob, or the lab stopping)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
