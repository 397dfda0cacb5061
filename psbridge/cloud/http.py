"""One HTTP session factory for everything that talks to the cloud (msal and Graph)."""

from __future__ import annotations

from typing import Any

import requests

from psbridge.cloud.settings import CloudSettings


class _PinnedSession(requests.Session):
    """A session whose CA bundle wins over ``REQUESTS_CA_BUNDLE``.

    requests lets that environment variable override ``Session.verify`` on every request;
    a laptop behind a corporate proxy often sets it, and then the lab's CA would be ignored.
    """

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


def session_for(settings: CloudSettings) -> requests.Session:
    session: requests.Session = _PinnedSession() if settings.ca_bundle else requests.Session()
    if settings.ca_bundle:
        session.verify = settings.ca_bundle
    session.headers["User-Agent"] = "psbridge"
    return session
