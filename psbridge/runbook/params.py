"""A customer's parameter file, checked against the runbook's schema before anything runs.

Every problem is listed at once (an unknown key, a missing value, a wrong type, a secret
written as a value instead of a reference), so a consultant fixes the file in one go::

    params = validate(book, load_params("contoso.yaml"))   # raises ParamsError(problems)

A secret parameter's value must be a reference (``env:``, ``file:``, ``keyring:``, ``lab:``);
an error about it never repeats what was written, because that may be the secret itself.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from psbridge import secrets
from psbridge.runbook.definition import MODE_PARAMETER, ParameterSpec, Runbook


class ParamsError(Exception):
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


def _check(name: str, spec: ParameterSpec, value: Any) -> tuple[Any, list[str]]:
    if spec.type == "secret":
        if not isinstance(value, str):
            kind = type(value).__name__
            return value, [f"{name}: a secret is given as a reference such as env:NAME, not a {kind}"]
        try:
            ref = secrets.SecretRef.parse(value)
        except secrets.SecretError as e:
            # The message of SecretError names the scheme at most, never the text.
            hint = str(e) if value.partition(":")[0] in secrets._BACKENDS else (
                "not a secret reference; write where the value lives (env:NAME, file:PATH, "
                "keyring:SERVICE/NAME or lab:NAME), never the value itself")
            return value, [f"{name}: {hint}"]
        if spec.writable and not secrets._BACKENDS[ref.scheme].writable:
            return value, [f"{name}: a step writes this secret, so {ref.scheme}: will not do "
                           "(use keyring:, file: or lab:)"]
        return str(ref), []
    if spec.type == "bool":
        if isinstance(value, bool):
            return value, []
        return value, [f"{name}: expected true or false, got {value!r}"]
    if spec.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, [f"{name}: expected a whole number, got {value!r}"]
        problems = []
        if spec.min is not None and value < spec.min:
            problems.append(f"{name}: {value} is below the minimum {spec.min}")
        if spec.max is not None and value > spec.max:
            problems.append(f"{name}: {value} is above the maximum {spec.max}")
        return value, problems
    if spec.type == "list":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            return value, [f"{name}: expected a list of names, got {value!r}"]
        return [str(v) for v in value], []
    # str
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value, [f"{name}: expected text, got {type(value).__name__}"]
    problems = []
    if spec.choices and value not in spec.choices:
        problems.append(f"{name}: {value!r} is not one of {', '.join(spec.choices)}")
    if spec.pattern and value and not re.fullmatch(spec.pattern, value):
        problems.append(f"{name}: {value!r} does not match {spec.pattern}")
    return value, problems


def validate(book: Runbook, given: dict[str, Any], where: str = "parameters") -> dict[str, Any]:
    """The complete parameters (defaults filled in), or ParamsError listing every problem."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    known = set(book.parameters)
    for key in given:
        if key in known:
            continue
        if key in book.facts:
            # A fact given by hand (e.g. from a previous run) is passed on as it is.
            out[key] = given[key]
            continue
        if key == MODE_PARAMETER:
            problems.append(f"{key}: the run mode is chosen by the command (psbridge plan), not the file")
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        problems.append(f"{key}: unknown parameter" + (f" (did you mean {close[0]}?)" if close else ""))
    for name, spec in book.parameters.items():
        if name not in given or given[name] is None:
            if spec.required:
                problems.append(f"{name}: required" + (f" ({spec.help})" if spec.help else ""))
            else:
                out[name] = spec.default
            continue
        value, found = _check(name, spec, given[name])
        problems.extend(found)
        out[name] = value
    if problems:
        raise ParamsError(where, problems)
    return out


def describe_parameters(book: Runbook) -> list[dict[str, Any]]:
    """The schema as rows (for ``psbridge run --help-params`` and the documentation)."""
    return [
        {"name": n, "type": p.type, "required": p.required, "secret": p.secret,
         "default": p.default, "help": p.help}
        for n, p in book.parameters.items()
    ]
