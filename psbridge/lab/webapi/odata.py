"""The OData ``$filter`` language as far as the setup's queries (and a consultant's) reach.

Comparisons ``eq ne gt ge lt le`` between a property and a literal (text in single quotes with
``''`` for a quote, numbers, GUIDs, ``true``/``false``/``null``), joined with ``and``/``or``,
``not``, parentheses, and the string functions CRM supports in a filter: ``startswith``,
``endswith``, ``contains``. Text compares without case, as CRM's SQL collation does. Anything
else is refused with the words an OData service uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psbridge.errors import TwinAnswer

Getter = Callable[[str], Any]  # property name -> value (raises KeyError for an unknown property)


class FilterError(TwinAnswer, ValueError):
    """A ``$filter`` the service cannot parse or run (400 for the client)."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b
    | (?P<num>-?\d+(?:\.\d+)?)\b
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[(),])
    )""", re.VERBOSE)

_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"startswith", "endswith", "contains"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError(f"Syntax error: the expression '{self.text}' ends too early.")
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.text.lower() in words:
            self.i += 1
            return True
        return False

    def expect(self, punct: str) -> None:
        tok = self.take()
        if tok.text != punct:
            raise FilterError(f"Syntax error: expected '{punct}' in '{self.text}'.")

    def parse(self) -> Any:
        node = self.or_()
        if self.peek() is not None:
            raise FilterError(f"Syntax error at '{self.peek().text}' in '{self.text}'.")  # type: ignore[union-attr]
        return node

    def or_(self) -> Any:
        node = self.and_()
        while self.word("or"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Any:
        node = self.not_()
        while self.word("and"):
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Any:
        if self.word("not"):
            return ("not", self.not_())
        return self.compare()

    def compare(self) -> Any:
        left = self.primary()
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.text.lower() in _COMPARE:
            self.i += 1
            return ("cmp", tok.text.lower(), left, self.primary())
        return left

    def primary(self) -> Any:
        tok = self.take()
        if tok.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if tok.kind == "str":
            return ("lit", tok.text[1:-1].replace("''", "'"))
        if tok.kind == "guid":
            return ("lit", tok.text.lower())
        if tok.kind == "num":
            return ("lit", float(tok.text) if "." in tok.text else int(tok.text))
        if tok.kind == "name":
            low = tok.text.lower()
            if low in ("true", "false"):
                return ("lit", low == "true")
            if low == "null":
                return ("lit", None)
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                if low not in _FUNCTIONS:
                    raise FilterError(f"An unknown function with name '{tok.text}' was found.")
                self.take()
                first = self.or_()
                self.expect(",")
                second = self.or_()
                self.expect(")")
                return ("fn", low, first, second)
            return ("prop", tok.text)
        raise FilterError(f"Syntax error at '{tok.text}' in '{self.text}'.")


def parse(text: str) -> Any:
    return _Parser(text).parse()


def _value(node: Any, get: Getter) -> Any:
    if node[0] == "lit":
        return node[1]
    if node[0] == "prop":
        return get(node[1])
    return evaluate(node, get)


def _norm(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def evaluate(node: Any, get: Getter) -> Any:
    kind = node[0]
    if kind == "or":
        return bool(evaluate(node[1], get)) or bool(evaluate(node[2], get))
    if kind == "and":
        return bool(evaluate(node[1], get)) and bool(evaluate(node[2], get))
    if kind == "not":
        return not evaluate(node[1], get)
    if kind == "cmp":
        op, a, b = node[1], _norm(_value(node[2], get)), _norm(_value(node[3], get))
        if op == "eq":
            return a == b
        if op == "ne":
            return a != b
        if a is None or b is None:
            return False
        try:
            return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]
        except TypeError:
            raise FilterError(f"The operands of '{op}' cannot be compared.") from None
    if kind == "fn":
        text, part = _value(node[2], get), _value(node[3], get)
        if not isinstance(text, str) or not isinstance(part, str):
            return False
        text, part = text.lower(), part.lower()
        return {"startswith": text.startswith, "endswith": text.endswith,
                "contains": text.__contains__}[node[1]](part)
    return bool(_value(node, get))
