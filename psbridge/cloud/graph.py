"""A small Microsoft Graph client: retries, paging, and errors that carry Graph's own words.

::

    graph = GraphClient(settings, signin)          # signin: anything with access_token()/invalidate()
    org = graph.get("/organization")
    apps = graph.get_all("/applications", params={"$filter": f"displayName eq {odata_quote(name)}"})

- 429, 503 and 504 are retried, honouring ``Retry-After`` (seconds or an HTTP date), else
  with exponential backoff, within ``max_attempts`` and a total ``retry_budget`` of seconds;
  past either, the last error is raised. ``on_retry_after`` hears each Retry-After honoured
  (its seconds), so that what else calls the same tenant can hold off too. A POST answered 504
  is not repeated (the gateway may have timed out after Graph did the work; the idempotent
  operations find it next run).
- A 401 (token expired or revoked before its time) renews the token and retries **once**.
- ``get_all`` follows ``@odata.nextLink``, only ever to the configured Graph host: the bearer
  token is never sent anywhere else.
- :class:`GraphError` carries status, Graph's error ``code`` and ``message``, and the
  ``request-id`` a support case needs. Request and response bodies never go to logs.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from psbridge.cloud.http import session_for
from psbridge.cloud.settings import CloudSettings
from psbridge.errors import ForeignHostRefused
from psbridge.errors import GraphError as GraphError  # re-exported for its callers
from psbridge.intents import intent
from psbridge.secrets import Secret

log = logging.getLogger("psbridge.cloud.graph")
# Object ids in a path, so that a change is named by its kind ("POST /applications/{id}/addPassword").
_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

RETRIED = (429, 503, 504)


class TokenProvider(Protocol):
    def access_token(self) -> Secret: ...

    def invalidate(self) -> None:
        """Forget the current access token: the next one comes fresh from the authority."""


def odata_quote(value: str) -> str:
    """An OData string literal: quotes doubled, so a name like O'Brien cannot break the filter."""
    return "'" + value.replace("'", "''") + "'"


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


class GraphClient:
    def __init__(self, settings: CloudSettings, token_provider: TokenProvider, *,
                 max_attempts: int = 10, retry_budget: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None,
                 on_retry_after: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.tokens = token_provider
        self.max_attempts = max_attempts
        self.retry_budget = retry_budget
        self.sleep = sleep
        self.session = session or session_for(settings)
        self.on_retry_after = on_retry_after
        self.waited = 0.0  # seconds spent honouring Retry-After/backoff, over this client's life
        self.retries = 0

    def __repr__(self) -> str:
        return f"GraphClient({self.settings.graph_v1})"

    # --- verbs ---------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def get_all(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` page after page."""
        items: list[dict[str, Any]] = []
        page = self.get(path, params)
        while True:
            items.extend(page.get("value", []))
            link = page.get("@odata.nextLink")
            if not link:
                return items
            page = self.get(link)

    # --- the one place requests are made -------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith("https://") or path.startswith("http://"):
            base = urlsplit(self.settings.graph_url)
            if urlsplit(path).netloc.lower() != base.netloc.lower():
                raise ForeignHostRefused(
                    f"refusing to send a Graph token to another host: {urlsplit(path).netloc}")
            return path
        return f"{self.settings.graph_v1}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                json: Any = None) -> Any:
        if method == "GET":
            return self._send(method, path, params, json)
        # A change to the tenant: journalled before it is sent, its outcome after (crash safety).
        where = urlsplit(self._url(path)).path.removeprefix(urlsplit(self.settings.graph_v1).path)
        with intent(f"{method} {_ID.sub('{id}', where)}", "Entra ID", f"{method} {where}"):
            return self._send(method, path, params, json)

    def _send(self, method: str, path: str, params: dict[str, str] | None, json: Any) -> Any:
        url = self._url(path)
        shown = urlsplit(url).path
        attempts, renewed, waited = 0, False, 0.0
        while True:
            attempts += 1
            token = self.tokens.access_token()
            try:
                resp = self.session.request(
                    method, url, params=params, json=json, timeout=self.settings.timeout,
                    headers={"Authorization": f"Bearer {token.reveal()}", "Accept": "application/json"},
                )
            except requests.RequestException as e:
                raise GraphError(method, shown, 0, "Unreachable",
                                 f"cannot reach {self.settings.graph_url}: {type(e).__name__}") from None
            rid = resp.headers.get("request-id")
            log.debug("%s %s -> %s (request-id %s)", method, shown, resp.status_code, rid)
            if resp.status_code < 400:
                return resp.json() if resp.content else None
            err = self._error(method, shown, resp, attempts)
            if resp.status_code == 401 and not renewed:
                # Renew and retry once; a second 401 is a real refusal.
                renewed = True
                self.tokens.invalidate()
                continue
            # A 504 may come after the work was done: a POST is not repeated blindly then.
            retriable = resp.status_code in RETRIED and not (method == "POST" and resp.status_code == 504)
            if retriable and attempts < self.max_attempts:
                told = _retry_after(resp)
                wait = min(2.0 ** (attempts - 1), 30.0) if told is None else told
                if waited + wait <= self.retry_budget:
                    if told is not None and self.on_retry_after is not None:
                        self.on_retry_after(told)
                    log.info("Graph %s %s: %s, retrying in %.0f s", method, shown, resp.status_code, wait)
                    self.sleep(wait)
                    waited += wait
                    self.waited += wait
                    self.retries += 1
                    continue
            raise err

    @staticmethod
    def _error(method: str, path: str, resp: requests.Response, attempts: int) -> GraphError:
        code, message = f"HTTP{resp.status_code}", resp.reason or ""
        client_rid = None
        try:
            body = resp.json()
            e = body.get("error", {})
            code, message = e.get("code", code), e.get("message", message)
            inner = e.get("innerError") or {}
            client_rid = inner.get("client-request-id")
        except ValueError:
            pass
        return GraphError(method, path, resp.status_code, code, message,
                          resp.headers.get("request-id"), client_rid, attempts)
