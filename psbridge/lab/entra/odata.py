"""The OData query forms Graph clients (ours and ConfigureCrmServerSideSync) use.

``$filter`` supports ``prop eq 'text'`` clauses joined with ``and`` (quotes doubled inside
a literal, as OData escapes them); ``$select``; ``$top``; paging by ``$skiptoken`` in an
``@odata.nextLink``. Anything else is refused as Graph refuses a query it cannot run.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import urlencode

from psbridge.errors import TwinAnswer

_CLAUSE = re.compile(
    r"""\s*(?P<prop>[A-Za-z][A-Za-z0-9/]*)\s+eq\s+(?:'(?P<text>(?:[^']|'')*)'|(?P<bare>[A-Za-z0-9.-]+))\s*""",
)


class QueryError(TwinAnswer, ValueError):
    """A query Graph would answer with 400 ``Request_UnsupportedQuery``."""


def parse_filter(text: str, allowed: tuple[str, ...], resource: str) -> list[tuple[str, str]]:
    """``"appId eq 'x' and displayName eq 'y'"`` -> ``[("appId", "x"), ("displayName", "y")]``."""
    clauses: list[tuple[str, str]] = []
    lowered = {a.lower(): a for a in allowed}
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise QueryError(f"Invalid filter clause: {part.strip()!r}")
        prop = m.group("prop")
        if prop.lower() not in lowered:
            raise QueryError(
                f"Unsupported or invalid query filter clause specified for property '{prop}' "
                f"of resource '{resource}'."
            )
        value = m.group("text").replace("''", "'") if m.group("text") is not None else m.group("bare")
        clauses.append((lowered[prop.lower()], value))
    return clauses


def matches(obj: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    for prop, value in clauses:
        have = obj.get(prop)
        if isinstance(have, bool):
            have = str(have).lower()
        # Graph compares strings case-insensitively in eq on these properties.
        if have is None or str(have).lower() != value.lower():
            return False
    return True


def select(obj: dict[str, Any], fields: str | None) -> dict[str, Any]:
    if not fields:
        return obj
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    lowered = {k.lower(): k for k in obj}
    return {lowered[w.lower()]: obj[lowered[w.lower()]] for w in wanted if w.lower() in lowered}


def page(items: list[Any], query: dict[str, str], default_size: int, base_url: str) -> dict[str, Any]:
    """One page of a collection, with ``@odata.nextLink`` when more follow."""
    try:
        size = int(query.get("$top", default_size))
        start = int(base64.urlsafe_b64decode(query["$skiptoken"]).decode()) if "$skiptoken" in query else 0
    except (ValueError, UnicodeDecodeError) as e:
        raise QueryError(f"Invalid paging parameter: {e}") from None
    size = max(1, min(size, 999))
    body: dict[str, Any] = {"value": items[start:start + size]}
    if start + size < len(items):
        rest = {k: v for k, v in query.items() if k != "$skiptoken"}
        rest["$skiptoken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        body["@odata.nextLink"] = f"{base_url}?{urlencode(rest)}"
    return body
