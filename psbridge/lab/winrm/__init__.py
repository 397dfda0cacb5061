"""The lab's CRM servers as PowerShell remoting sees them: WinRM endpoints on loopback.

``start_endpoint(EndpointSpec(...))`` serves WS-Management at ``/wsman`` over HTTP (Negotiate
with message encryption) or HTTPS (Negotiate or Basic, with a lab CA certificate), and runs
PSRP runspace pools whose commands are the lab's emulated ones
(:func:`psbridge.lab.commands.run_pipeline`).
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from psbridge.lab.runspace import CloudEndpoints, default_pace
from psbridge.lab.winrm.auth import Directory, channel_bindings_for
from psbridge.lab.winrm.host import Host, HostSettings, PipelineRunner
from psbridge.lab.winrm.http import WinRMHTTPServer
from psbridge.lab.winrm.service import WinRMService

__all__ = ["Endpoint", "EndpointSpec", "start_endpoint"]


@dataclass(frozen=True)
class EndpointSpec:
    """One WinRM listener of a lab CRM server.

    ``accounts`` maps ``DOMAIN\\user`` to its password (lab secrets); ``tls`` is the
    ``(certificate chain PEM, key PEM)`` pair from ``LabCA.server_certificate`` and is
    required for ``https``. ``port=0`` picks a free port.
    """

    server: str
    scheme: Literal["http", "https"]
    accounts: dict[str, str]
    state_dir: Path
    cloud: CloudEndpoints = field(default_factory=lambda: CloudEndpoints(login=None, graph=None))
    host: str = "127.0.0.1"
    port: int = 0
    tls: tuple[Path, Path] | None = None
    idle_timeout: float = 7200.0  # seconds before an untouched runspace pool is closed
    # How long the official scripts take, as a multiple of a real server's time; None reads
    # PSBRIDGE_LAB_PACE (psbridge.lab.runspace.default_pace), 1.0 when that is unset.
    pace: float | None = None

    def __repr__(self) -> str:  # the accounts hold passwords
        return (f"EndpointSpec(server={self.server!r}, scheme={self.scheme!r}, host={self.host!r}, "
                f"port={self.port}, accounts=[{', '.join(self.accounts)}], "
                f"state_dir={str(self.state_dir)!r})")


class Endpoint:
    """A running endpoint: ``url`` is what a client connects to; ``stop()`` ends it."""

    def __init__(self, spec: EndpointSpec, httpd: WinRMHTTPServer, host: Host, directory: Directory) -> None:
        self.spec = spec
        self._httpd = httpd
        self._host = host
        self._directory = directory
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"lab-winrm-{spec.server}-{spec.scheme}", daemon=True)
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.spec.host if ":" not in self.spec.host else f"[{self.spec.host}]"
        return f"{self.spec.scheme}://{host}:{self.port}/wsman"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._host.close_all()
        self._directory.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Endpoint {self.spec.server} {self.url}>"


def start_endpoint(spec: EndpointSpec, runner: PipelineRunner | None = None) -> Endpoint:
    """Start serving ``spec`` in a daemon thread. ``runner`` replaces the lab commands (tests only)."""
    if spec.scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {spec.scheme!r}")
    context = None
    bindings = None
    if spec.scheme == "https":
        if spec.tls is None:
            raise ValueError("an https endpoint needs tls=(certificate chain, key) from the lab CA")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(spec.tls[0]), str(spec.tls[1]))
        leaf = x509.load_pem_x509_certificate(Path(spec.tls[0]).read_bytes())
        bindings = channel_bindings_for(leaf.public_bytes(Encoding.DER))
    state_dir = Path(spec.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    directory = Directory(spec.accounts)
    pace = default_pace() if spec.pace is None else spec.pace
    host = Host(HostSettings(spec.server, state_dir, spec.cloud, runner, spec.idle_timeout, pace))
    try:
        httpd = WinRMHTTPServer(
            (spec.host, spec.port), service=WinRMService(host, "", spec.server), directory=directory,
            server_name=spec.server, state_dir=state_dir, ssl_context=context, bindings=bindings,
        )
    except BaseException:
        directory.close()
        raise
    endpoint = Endpoint(spec, httpd, host, directory)
    httpd.service.address = endpoint.url
    endpoint._thread.start()
    return endpoint
