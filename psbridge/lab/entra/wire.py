"""Requests and responses as plain values, so the twin's endpoints never touch a socket."""

from __future__ import annotations

import json
import uuid
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
