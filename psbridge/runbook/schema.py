"""One parameter schema, three uses: validation, JSON Schema for editors, the notebooks' parameters cells.

Everything is derived from the runbook's YAML (:class:`~psbridge.runbook.definition.Runbook`):

- :func:`parameters_model` builds a pydantic model whose fields check each value the way the far
  side would (:mod:`psbridge.runbook.params` has the checks; every problem is collected);
- :func:`json_schema` is that model's JSON Schema (``psbridge schema``), with each parameter's
  help, default, choices, bounds and format, and secrets marked as references;
- :func:`parameters_cell` is the text of a step notebook's ``parameters`` cell: the parameters the
  step takes, the facts it consumes and ``plan``, with types, starting values and help that
  ``papermill --help-notebook`` shows. A test fails when a stored notebook's cell differs.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from psbridge.runbook.definition import MODE_PARAMETER, FactSpec, ParameterSpec, Runbook, StepSpec

CELL_HEADER = ("# Parameters (papermill -p NAME VALUE, -f params.yaml, or psbridge run). "
               "Secrets are references.")
_PY_TYPES = {"str": "str", "secret": "str", "int": "int", "bool": "bool", "list": "list[str]",
             "dict": "dict[str, str]"}
_EMPTY: dict[str, Any] = {"str": "", "secret": "", "int": 0, "bool": False, "list": [], "dict": {}}
PLAN_HELP = "True: read-only, only say what would change"


# --- the pydantic model ---------------------------------------------------------------------------


def _checked(name: str, spec: ParameterSpec, value: Any) -> Any:
    from psbridge.runbook.params import check_value

    normal, problems = check_value(name, spec, value)
    if problems:
        # One message a problem; params.validate splits them again, in the order found.
        raise PydanticCustomError("psbridge_parameter", "{problems}", {"problems": "\n".join(problems)})
    return normal


def _json_type(spec: ParameterSpec) -> dict[str, Any]:
    schema: dict[str, Any]
    if spec.type == "list":
        schema = {"type": "array", "items": {"type": "string"}}
    elif spec.type == "secret":
        schema = {"type": "string", "pattern": r"^[a-z][a-z0-9+.-]*:.+$", "x-psbridge-secret": True,
                  "description": "a secret reference (env:NAME, file:PATH, keyring:SERVICE/NAME, lab:NAME)"}
    else:
        schema = {"type": {"str": "string", "int": "integer", "bool": "boolean"}[spec.type]}
    if spec.help:
        schema["description"] = spec.help + (f" — {schema['description']}" if "description" in schema else "")
    if spec.default is not None:
        schema["default"] = spec.default
    if spec.choices:
        schema["enum"] = spec.choices
    if spec.min is not None:
        schema["minimum"] = spec.min
    if spec.max is not None:
        schema["maximum"] = spec.max
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    if spec.format:
        schema["x-psbridge-format"] = spec.format
    if spec.writable:
        schema["x-psbridge-written-by-a-step"] = True
    return schema


_MODELS: dict[tuple[str, str, str], type[BaseModel]] = {}


def parameters_model(book: Runbook) -> type[BaseModel]:
    """A pydantic model of the runbook's parameters (facts of earlier runs may be given too).

    Built once a process for the same parameters (a few milliseconds of pydantic's schema work,
    which a batch would pay for each organization); the specs are frozen models, and their repr
    holds every field, so equal keys build equal models.
    """
    key = (book.name, book.title, repr(book.parameters))
    if key not in _MODELS:
        if len(_MODELS) >= 32:
            _MODELS.clear()
        _MODELS[key] = _build_model(book)
    return _MODELS[key]


def _build_model(book: Runbook) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, spec in book.parameters.items():
        annotation = Annotated[Any, BeforeValidator(partial(_checked, name, spec)),
                               WithJsonSchema(_json_type(spec))]
        if spec.required:
            fields[name] = (annotation, Field(...))
        else:
            fields[name] = (annotation, Field(default=spec.default))
    model = create_model(  # type: ignore[call-overload]
        f"{''.join(p.capitalize() for p in book.name.replace('_', '-').split('-'))}Parameters",
        __config__=ConfigDict(extra="forbid", title=book.title or book.name),
        **fields,
    )
    return model  # type: ignore[no-any-return]


def json_schema(book: Runbook) -> dict[str, Any]:
    schema = parameters_model(book).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = f"Parameter file of the psbridge runbook {book.name} (version {book.version})."
    return schema


# --- the notebooks' parameters cells -------------------------------------------------------------


def _literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(bool(value))
    if isinstance(value, int):
        return str(value)
    # JSON's string and list forms are Python literals too (and keep a backslash visible as \\).
    return json.dumps(value, ensure_ascii=False)


def _cell_help(text: str) -> str:
    # papermill's --help-notebook cannot read a line with a second '='.
    return " ".join(text.replace("=", " ").split())


def cell_lines(book: Runbook, step: StepSpec) -> list[tuple[str, str, str, str]]:
    """(name, type, starting value, help) for each line of the step's parameters cell."""
    lines = []
    for name in book.step_parameters(step):
        spec = book.parameters[name]
        start = spec.interactive if spec.interactive is not None else spec.default
        if start is None:
            start = _EMPTY[spec.type]
        lines.append((name, _PY_TYPES[spec.type], _literal(start), _cell_help(spec.help)))
    for fact in step.consumes:
        fspec: FactSpec = book.facts[fact]
        producer = next((s.stem for s in book.steps if fact in s.produces), "an earlier step")
        lines.append((fact, _PY_TYPES[fspec.type], _literal(_EMPTY[fspec.type]),
                      _cell_help(f"fact from {producer}: {fspec.help}")))
    lines.append((MODE_PARAMETER, "bool", "False", PLAN_HELP))
    return lines


def parameters_cell(book: Runbook, step: StepSpec) -> str:
    rows = cell_lines(book, step)
    width = max(len(f"{n}: {t} = {v}") for n, t, v, _ in rows)
    out = [CELL_HEADER]
    for name, kind, value, help_ in rows:
        left = f"{name}: {kind} = {value}"
        out.append(f"{left:<{width}}  # {help_}" if help_ else left)
    return "\n".join(out)
