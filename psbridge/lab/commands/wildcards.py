"""PowerShell's wildcards (WildcardPattern), as the provider cmdlets apply them to ``-Path``.

``*`` is any run of characters, ``?`` one character, ``[abc]`` and ``[a-c]`` one of a set; a
backtick makes the next character literal; matching ignores case. ``-Path`` is a pattern,
``-LiteralPath`` never is: ``-Path 'C:\\Temp\\s2s[1].pfx'`` looks for ``s2s1.pfx`` and does not
find a file named ``s2s[1].pfx``, which is why a client that means one file sends
``-LiteralPath``.
"""

from __future__ import annotations

import re

_SPECIAL = "*?[]"  # WildcardPattern.IsWildcardChar: a lone "]" counts too


def has_wildcards(text: str) -> bool:
    """Whether ``text`` holds an unescaped wildcard character (WildcardPattern.ContainsWildcardCharacters)."""
    escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif c == "`":
            escaped = True
        elif c in _SPECIAL:
            return True
    return False


def unescape(text: str) -> str:
    """The literal text a path without wildcards stands for (WildcardPattern.Unescape).

    A backtick goes only before a wildcard character or another backtick: ``a`[1`].pfx`` is
    ``a[1].pfx``, while ``it`'s`` keeps its backtick.
    """
    out: list[str] = []
    escaped = False
    for c in text:
        if c == "`":
            if escaped:
                out.append(c)
                escaped = False
            else:
                escaped = True
            continue
        if escaped and c not in _SPECIAL:
            out.append("`")
        out.append(c)
        escaped = False
    if escaped:
        out.append("`")
    return "".join(out)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The pattern as a case-insensitive regular expression matching a whole name."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "`" and i + 1 < n:
            # Escaping applies to wildcard characters; before anything else the backtick is literal.
            nxt = pattern[i + 1]
            out.append(re.escape(nxt) if nxt in _SPECIAL or nxt == "`" else re.escape(c + nxt))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                # An unclosed bracket makes the pattern invalid: it matches nothing.
                return re.compile(r"(?!)")
            body = pattern[i + 1:end]
            parts: list[str] = []
            j = 0
            while j < len(body):
                if body[j] == "`" and j + 1 < len(body):
                    parts.append(re.escape(body[j + 1]))
                    j += 2
                elif j + 2 < len(body) and body[j + 1] == "-":
                    parts.append(f"{re.escape(body[j])}-{re.escape(body[j + 2])}")
                    j += 3
                else:
                    parts.append(re.escape(body[j]))
                    j += 1
            out.append(f"[{''.join(parts)}]" if parts else r"(?!)")
            i = end
        else:  # a lone "]" included
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).match(name) is not None
