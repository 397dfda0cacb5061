"""Text that came from someone else, made safe to quote in a message or print on a terminal.

A parameter value, a server's message or a display name can hold anything: NUL, newlines,
ANSI escapes, the right-to-left override U+202E that makes ``exe.txt`` read as ``txt.exe``.
An error message quotes such a value with :func:`shown` (escaped and shortened); whatever is
printed on a terminal goes through :func:`terminal_safe`, which escapes the same characters.
"""

from __future__ import annotations

import unicodedata

# Control, format (bidi overrides, zero-width), surrogate and line/paragraph separator characters.
_INVISIBLE = ("Cc", "Cf", "Cs", "Zl", "Zp")


def shown(value: object, limit: int = 60) -> str:
    """A value as an error message quotes it: ``repr`` (control characters escaped), shortened."""
    text = repr(value)
    if len(text) > limit:
        length = f" ({len(value)} characters)" if isinstance(value, str) else ""
        text = text[: limit - 1] + "…" + length
    return text


def invisible(text: str) -> list[str]:
    """The control and invisible formatting characters in ``text``, as ``U+XXXX`` names."""
    bad = {c for c in text if unicodedata.category(c) in _INVISIBLE}
    return [f"U+{ord(c):04X}" for c in sorted(bad)]


def terminal_safe(text: str) -> str:
    """``text`` with every control or invisible character but newline and tab escaped."""
    if not invisible(text):
        return text
    out = []
    for c in text:
        if c in "\n\t" or unicodedata.category(c) not in _INVISIBLE:
            out.append(c)
        else:
            out.append(repr(c)[1:-1] if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return "".join(out)
