"""A customer's parameter file, checked against the runbook's schema before anything runs.

Every problem is listed at once (an unknown key, a missing value, a wrong type, a secret
written as a value instead of a reference), so a consultant fixes the file in one go::

    params = validate(book, load_params("contoso.yaml"))   # raises ParamsError(problems)

A secret parameter's value must be a reference (``env:``, ``file:``, ``keyring:``, ``lab:``);
an error about it never repeats what was written, because that may be the secret itself.

One inventory or parameter file serves every runbook of a customer's lifecycle (setup, health,
renewal, decommission): a name this runbook does not take but another registered runbook declares
(``pfx_password`` for s2s-health) is accepted, checked against that runbook's spec (a secret still
must be a reference) and left out, and :func:`check` lists it so the command says so. A name no
registered runbook declares is still an unknown parameter: a typo fails before anything runs.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from psbridge import secrets
from psbridge.errors import ParameterError
from psbridge.runbook import formats
from psbridge.runbook.definition import MODE_PARAMETER, ParameterSpec, Runbook
from psbridge.text import invisible, shown

log = logging.getLogger(__name__)


class ParamsError(ParameterError):
    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{where}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


def load_params(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(str(path), ["no such parameter file"]) from None
    except yaml.YAMLError as e:
        raise ParamsError(str(path), [f"not valid YAML: {e}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(str(path), ["a parameter file is a mapping of name: value"])
    return {str(k): v for k, v in data.items()}


def check_value(name: str, spec: ParameterSpec, value: Any) -> tuple[Any, list[str]]:
    """One value checked against its spec: (the value as kept, the problems found)."""
    if spec.type == "secret":
        if not isinstance(value, str):
            kind = type(value).__name__
            return value, [f"{name}: a secret is given as a reference such as env:NAME, not a {kind}"]
        try:
            ref = secrets.SecretRef.parse(value)
        except secrets.SecretError as e:
            # SecretError never repeats the text (it may be the secret itself), nor does this.
            return value, [f"{name}: {e}; write where the value lives (env:NAME, file:PATH, "
                           "keyring:SERVICE/NAME or lab:NAME), never the value itself"]
        if invisible(ref.locator):
            return value, [f"{name}: the {ref.scheme}: reference holds control or invisible characters"]
        if spec.writable and not secrets.backend(ref.scheme).writable:
            return value, [f"{name}: a step writes this secret, so {ref.scheme}: will not do "
                           "(use keyring:, file: or lab:)"]
        return str(ref), []
    if spec.type == "bool":
        if isinstance(value, bool):
            return value, []
        return value, [f"{name}: expected true or false, got {shown(value)}"]
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, [f"{name}: expected a whole number, got {shown(value)}"]
        problems = []
        if spec.min is not None and value < spec.min:
            problems.append(f"{name}: {value} is below the minimum {spec.min}")
        if spec.max is not None and value > spec.max:
            problems.append(f"{name}: {value} is above the maximum {spec.max}")
        return value, problems
    if spec.type == "list":
        if isinstance(value, str):
            # One text where a list belongs would be read letter by letter further on.
            return value, [f"{name}: expected a list such as [{shown(value)}], got one text"]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            return value, [f"{name}: expected a list of names, got {shown(value)}"]
        items = [str(v) for v in value]
        problems = [p for i, v in enumerate(items) for p in formats.problems(f"{name}[{i}]", v, spec.format)]
        return items, problems
    # str
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value, [f"{name}: expected text, got {type(value).__name__}"]
    problems = formats.problems(name, value, spec.format, spec.max_length)
    if problems:
        return value, problems
    if spec.choices and value not in spec.choices:
        problems.append(f"{name}: {shown(value)} is not one of {', '.join(spec.choices)}")
    if spec.pattern and value and not re.fullmatch(spec.pattern, value):
        problems.append(f"{name}: {shown(value)} does not match {spec.pattern}")
    return value, problems


def _fact_problems(name: str, kind: str, value: Any) -> list[str]:
    kinds = {"str": str, "secret": str, "int": int, "bool": bool, "list": list, "dict": dict}
    if value is None:
        return []
    if not isinstance(value, kinds[kind]) or (kind == "int" and isinstance(value, bool)):
        return [f"{name}: a fact of kind {kind}, got {type(value).__name__}"]
    texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
        if isinstance(value, list) else []
    if any(invisible(t) for t in texts):
        return [f"{name}: holds control or invisible characters"]
    if kind == "secret" and not secrets.is_reference(value):
        return [f"{name}: a secret fact is a reference such as lab:NAME, never the value"]
    return []


@dataclass(frozen=True)
class Checked:
    """Parameters as checked: the complete ones this runbook takes, and what was left out."""

    params: dict[str, Any]
    # Parameters of other runbooks that were given (a shared inventory): name -> the runbooks declaring it.
    ignored: dict[str, list[str]] = field(default_factory=dict)

    def note(self) -> str:
        """The sentence a command prints; empty when nothing was left out."""
        if not self.ignored:
            return ""
        names = ", ".join(f"{n} ({', '.join(b)})" for n, b in sorted(self.ignored.items()))
        return f"ignored, parameters of other runbooks that this one does not take: {names}"


_Declared = dict[str, tuple[list[str], ParameterSpec]]
_elsewhere: dict[tuple[str, tuple[tuple[str, str, int], ...]], _Declared] = {}


def declared_elsewhere(book: Runbook) -> _Declared:
    """Every parameter another registered runbook declares: name -> (those runbooks, the first's spec).

    Kept per set of runbook files (name, path, modification time): an inventory of many rows loads
    each runbook once.
    """
    from psbridge.runbook import registry
    from psbridge.runbook.definition import DefinitionError, load

    sources = [src for name, src in sorted(registry.available().items()) if name != book.name]
    key = (book.name, tuple((src.name, str(src.path), src.path.stat().st_mtime_ns) for src in sources))
    if key not in _elsewhere:
        declared: _Declared = {}
        for src in sources:
            try:
                other = load(src.path)
            except DefinitionError as e:  # a broken add-on runbook must not refuse this one's inventory
                log.warning("runbook %s not read for shared parameters: %s", src.name, e)
                continue
            for name, spec in other.parameters.items():
                declared.setdefault(name, ([], spec))[0].append(other.name)
        _elsewhere[key] = declared
    return _elsewhere[key]


def validate(book: Runbook, given: dict[str, Any], where: str = "parameters") -> dict[str, Any]:
    """The complete parameters (defaults filled in), or ParamsError listing every problem."""
    return check(book, given, where).params


def check(book: Runbook, given: dict[str, Any], where: str = "parameters") -> Checked:
    """The complete parameters and the other runbooks' ones left out, or ParamsError listing every problem.

    The checks are the fields of :func:`psbridge.runbook.schema.parameters_model`, built from
    the runbook's YAML: one schema for files, notebooks and editors.
    """
    problems: list[str] = []
    out: dict[str, Any] = {}
    ignored: dict[str, list[str]] = {}
    known = set(book.parameters)
    for key in given:
        if key in known:
            continue
        elsewhere = declared_elsewhere(book).get(key) if key not in book.facts else None
        if elsewhere is not None:
            books, spec = elsewhere
            # Still its kind: a shared inventory is right for each runbook that uses it.
            if given[key] is not None:
                found = check_value(key, spec, given[key])[1]
                problems += [f"{p} (a parameter of {books[0]})" for p in found]
            ignored[key] = list(books)
            continue
        if key in book.facts:
            # A fact given by hand (e.g. from a previous run) is passed on as it is, if it is of its kind.
            problems += _fact_problems(key, book.facts[key].type, given[key])
            out[key] = given[key]
            continue
        if key == MODE_PARAMETER:
            problems.append(f"{key}: the run mode is chosen by the command (psbridge plan), not the file")
            continue
        # The names another runbook takes too: a typo of pfx_password in a health inventory.
        close = difflib.get_close_matches(key, sorted(known | set(declared_elsewhere(book))), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        label = key if key.isidentifier() else shown(key)  # a name with odd characters, escaped
        problems.append(f"{label}: unknown parameter{hint}")
    from pydantic import ValidationError

    from psbridge.runbook.schema import parameters_model

    wanted = {k: v for k, v in given.items() if k in known and v is not None}
    try:
        checked = parameters_model(book).model_validate(wanted)
    except ValidationError as e:
        for err in e.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "missing":
                spec = book.parameters[name]
                problems.append(f"{name}: required" + (f" ({spec.help})" if spec.help else ""))
            else:
                problems += str(err["msg"]).split("\n")
    else:
        out.update(checked.model_dump())
    if problems:
        raise ParamsError(where, problems)
    return Checked(out, ignored)


def describe_parameters(book: Runbook) -> list[dict[str, Any]]:
    """The schema as rows (for ``psbridge run --help-params`` and the documentation)."""
    return [
        {"name": n, "type": p.type, "required": p.required, "secret": p.secret,
         "default": p.default, "help": p.help}
        for n, p in book.parameters.items()
    ]
