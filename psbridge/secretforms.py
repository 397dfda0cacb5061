"""The forms a secret value takes on its way into text: escaped, encoded, or both.

A value rarely leaks as itself. Python's ``repr`` doubles a backslash and escapes a quote, a
notebook stores HTML inside JSON, a URL carries it percent-encoded, PowerShell's
``-EncodedCommand`` is base64 of UTF-16LE, a hex dump shows bytes. The redactor
(:func:`psbridge.secrets.redact`) masks every form listed here, and the canary tests search
records for the same forms, so the defence and its proof cannot drift apart.

Textual escapes are stacked as they are in practice: how a value is shown (``repr``, a pandas
cell, a URL, JSON), then marked up (HTML), then kept in a file (a notebook is JSON) — which is
how a value printed in a DataFrame ends up in a notebook's HTML output and then in its file.
Binary encodings (base64, hex) are taken of the UTF-8 and UTF-16LE bytes; base64 at each of
its three alignments, because inside a longer encoded text the value need not start on a
3-byte boundary: only the characters that depend on the value alone are kept.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import urllib.parse
from collections.abc import Callable, Iterable

# A base64 core shorter than this would match unrelated encoded text too often.
_MIN_CORE = 8


def _python_escape(v: str, quote: str) -> str:
    # What repr() writes between the quotes, for either quote style: inside a longer string or
    # a container the style depends on the whole text, not on the value.
    out = []
    for ch in v:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + ch)
        elif ch in "'\"":
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def _repr_single(v: str) -> str:
    return _python_escape(v, "'")


def _repr_double(v: str) -> str:
    return _python_escape(v, '"')


def _unicode_escape(v: str) -> str:
    return v.encode("unicode_escape").decode("ascii")


def _json(v: str) -> str:
    return json.dumps(v)[1:-1]


def _json_raw(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)[1:-1]


def _html(v: str) -> str:
    return html.escape(v)


def _html_plain(v: str) -> str:
    return html.escape(v, quote=False)


def _html_jinja(v: str) -> str:
    # markupsafe (Jinja, nbconvert) writes &#39; and &#34; where html.escape writes &#x27; and &quot;
    return v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        "'", "&#39;").replace('"', "&#34;")


def _url(v: str) -> str:
    return urllib.parse.quote(v, safe="")


def _url_path(v: str) -> str:
    return urllib.parse.quote(v)


def _url_form(v: str) -> str:
    return urllib.parse.quote_plus(v)


def _pandas(v: str) -> str:
    # pandas prints a cell's tab, newline and carriage return as escapes (to_html, to_string).
    return v.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _same(v: str) -> str:
    return v


# How a value is shown (repr, a table cell, a URL, JSON), then marked up (HTML), then kept in a
# file (a notebook or manifest is JSON): one of each, applied in that order.
SHOWN: tuple[Callable[[str], str], ...] = (
    _same, _repr_single, _repr_double, _unicode_escape, _pandas, _json, _json_raw, _url, _url_path,
    _url_form,
)
MARKED_UP: tuple[Callable[[str], str], ...] = (_same, _html, _html_plain, _html_jinja)
KEPT: tuple[Callable[[str], str], ...] = (_same, _json, _json_raw)


def base64_cores(data: bytes) -> set[str]:
    """The base64 characters that stand for ``data`` alone, at each of the three alignments."""
    out: set[str] = set()
    for shift in range(3):
        padded = b"\0" * shift + data
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(padded).decode("ascii")
            start = -(-shift * 8 // 6)  # the first character with no bit of the padding
            end = (len(padded) * 8) // 6  # the last character with no bit of what follows
            core = text[start:end]
            if len(core) >= _MIN_CORE:
                out.add(core)
    return out


def binary_forms(value: str) -> set[str]:
    out: set[str] = set()
    for data in (value.encode("utf-8"), value.encode("utf-16-le")):
        out |= {data.hex(), data.hex().upper()}
        out |= base64_cores(data)
    # UTF-16LE bytes read back as one byte a character (a log of raw bytes, a latin-1 decode).
    wide = value.encode("utf-16-le").decode("latin-1")
    out |= {wide, _repr_single(wide), _json(wide)}
    return out


def forms(value: str) -> set[str]:
    """Every form of ``value`` that the redactor masks and the canary tests look for."""
    return set(_forms(value))


# The redactor draws the forms of every secret it knows again each time it learns one more: each
# value's forms are drawn once per process (values it holds already, for as long as it runs).
@functools.lru_cache(maxsize=1024)
def _forms(value: str) -> frozenset[str]:
    if not value:
        return frozenset()
    shown = {show(value) for show in SHOWN}
    out = {keep(mark(v)) for v in shown for mark in MARKED_UP for keep in KEPT}
    out |= {show(v) for v in shown for show in SHOWN}  # a repr of a repr, JSON in a log line
    return frozenset(out | binary_forms(value))


def all_forms(values: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for v in values:
        out |= _forms(v)
    return out
