"""Requests and responses as plain values, so the twin's endpoints never touch a socket."""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def form(self) -> dict[str, str]:
        """The form's fields by lower-cased name.

        Entra reads OAuth form field names in any case: ConfigureCrmServerSideSync.ps1 itself
        posts ``Grant_Type``, ``Scope``, ``Client_Id`` and ``Client_Secret``.
        """
        fields = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {k.lower(): v[-1] for k, v in fields.items()}

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8") or "null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(payload).encode("utf-8"),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    @classmethod
    def html(cls, status: int, text: str) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})

    @classmethod
    def empty(cls, status: int = 204) -> Response:
        return cls(status)


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Seen:
    """One request the twin answered, as a test compares it with what a real client sends.

    Never a secret: form fields by name only, no Authorization header; Graph bodies are kept
    (they hold public certificates at most).
    """

    service: str  # "login" | "graph"
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    user_agent: str
    form_fields: tuple[str, ...]
    body: Any
    status: int
    # A Graph GET's answer. Not kept: the authority's answers (tokens) and other Graph answers
    # (addPassword's holds the new secret).
    response: Any = None


class Journal:
    """The last requests the twin answered (a bounded, thread-safe log for tests)."""

    def __init__(self, size: int = 1000) -> None:
        self._seen: deque[Seen] = deque(maxlen=size)
        self._lock = threading.Lock()

    def record(self, service: str, req: Request, resp: Response) -> None:
        content_type = req.headers.get("content-type", "")
        form: tuple[str, ...] = ()
        body: Any = None
        if "x-www-form-urlencoded" in content_type:
            form = tuple(k for k, _ in _pairs(req.body))
        elif req.body:
            try:
                body = req.json()
            except ValueError:
                body = None
        answer: Any = None
        if service == "graph" and req.method == "GET" and resp.body:
            try:
                answer = json.loads(resp.body.decode("utf-8"))
            except ValueError:
                answer = None
        seen = Seen(service, req.method, req.path, dict(req.query), content_type,
                    req.headers.get("user-agent", ""), form, body, resp.status, answer)
        with self._lock:
            self._seen.append(seen)

    def take(self) -> list[Seen]:
        """What was seen since the last take, oldest first."""
        with self._lock:
            out = list(self._seen)
            self._seen.clear()
        return out


def _pairs(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
