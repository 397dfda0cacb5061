"""HTTP as the official scripts do it (``Invoke-RestMethod``/``Invoke-WebRequest`` in PS 5.1).

The lab's servers reach "login.microsoftonline.com" and "graph.microsoft.com" at the URLs in
``ctx.cloud`` (the Entra/Graph twin), trusting the lab CA. When an endpoint is ``None`` the
call fails at once, as name resolution fails on a server without outbound access: nothing
goes on the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

from psbridge.errors import TwinAnswer

LOGIN_HOST = "login.microsoftonline.com"
GRAPH_HOST = "graph.microsoft.com"
# What Invoke-RestMethod / Invoke-WebRequest send as User-Agent on the lab's servers.
USER_AGENT = "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.17763.6414"


class WebFailure(TwinAnswer):
    """A failed web cmdlet: ``message`` is ``$_.Exception.Message``, ``details`` is ``"$_"``."""

    def __init__(self, message: str, details: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else message
        self.status = status


@dataclass
class WebResponse:
    status: int
    content: str

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None


def call(
    base: str | None,
    host: str,
    method: str,
    path: str,
    *,
    ca_bundle: str | None,
    timeout: float,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    body: str | None = None,
) -> WebResponse:
    if base is None:
        raise WebFailure(f"The remote name could not be resolved: '{host}'")
    url = base.rstrip("/") + path
    try:
        response = requests.request(
            method,
            url,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            data=form if form is not None else body,
            verify=ca_bundle if ca_bundle else True,
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.exceptions.SSLError:
        raise WebFailure(
            "The underlying connection was closed: Could not establish trust relationship for "
            "the SSL/TLS secure channel."
        ) from None
    except requests.exceptions.Timeout:
        raise WebFailure("The operation has timed out.") from None
    except requests.exceptions.ConnectionError:
        raise WebFailure("Unable to connect to the remote server") from None
    text = response.content.decode("utf-8", errors="replace")
    if response.status_code >= 400:
        # PS 5.1 wraps the WebException; "$_" shows the response body (ErrorDetails).
        reason = response.reason or ""
        raise WebFailure(
            f"The remote server returned an error: ({response.status_code}) {reason}.".replace(" .", "."),
            details=text or None,
            status=response.status_code,
        )
    return WebResponse(response.status_code, text)
