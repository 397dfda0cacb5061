"""nbformat's schema checks of a part of a notebook (an output, a cell) at fastjsonschema's speed.

nbformat checks each output nbclient builds from a kernel message, and the parameters cell
papermill injects, against one definition of its schema (``validate(node, ref="output")``). Its
fast validator takes whole notebooks only and hands a definition to jsonschema, which costs the
runner's main thread 70-100 ms a run of the runbook (a kernel message's output, 0.2-6 ms each).

:func:`install` replaces the cached validator nbformat hands out for the current v4 schema with
one that also checks a definition with fastjsonschema (compiled once a definition). Only a pass
is decided there: a part fastjsonschema rejects is checked again by nbformat's own path
(jsonschema), so errors, their messages and what is accepted stay nbformat's. A whole notebook is
checked exactly as before. Where ``NBFORMAT_VALIDATOR`` chose jsonschema, nothing is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import fastjsonschema
from nbformat import validator as nbvalidator
from nbformat.json_compat import FastJsonSchemaValidator

_DEFINITION = "#/definitions/"
_lock = threading.Lock()


class DefinitionsToo(FastJsonSchemaValidator):  # type: ignore[misc]  # nbformat has no annotations
    """nbformat's fastjsonschema validator, which also checks a ``{"$ref": "#/definitions/X"}``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)  # type: ignore[no-untyped-call]
        self._parts: dict[str, Callable[[Any], Any]] = {}

    def _part(self, ref: str) -> Callable[[Any], Any]:
        check = self._parts.get(ref)
        if check is None:
            # The whole schema, its root a reference: the definitions resolve as in the notebook's.
            check = self._parts[ref] = fastjsonschema.compile({**self._schema, "$ref": ref})
        return check

    def iter_errors(self, data: Any, schema: Any = None) -> Iterable[Any]:
        ref = schema.get("$ref") if isinstance(schema, dict) and len(schema) == 1 else None
        if not (isinstance(ref, str) and ref.startswith(_DEFINITION)):
            errors: Iterable[Any] = super().iter_errors(data, schema)  # type: ignore[no-untyped-call]
            return errors
        try:
            self._part(ref)(data)
        except fastjsonschema.JsonSchemaException:
            # jsonschema: nbformat's own errors and messages.
            errors = super().iter_errors(data, schema)  # type: ignore[no-untyped-call]
            return errors
        return []


# What a step's execution checks: each output (nbclient) and the injected parameters (papermill).
EXECUTION_PARTS = ("output", "code_cell")


def install(compile_now: Iterable[str] = EXECUTION_PARTS) -> bool:
    """Have nbformat check parts of v4 notebooks with :class:`DefinitionsToo`; True if it does.

    ``compile_now``: definitions compiled here (15-25 ms each), not at their first check.
    """
    with _lock:
        current = nbvalidator.get_validator(version=4)  # the current minor, built and cached
        if type(current) is FastJsonSchemaValidator:
            faster = DefinitionsToo(current._schema)
            for key, cached in list(nbvalidator.validators.items()):
                if cached is current:
                    nbvalidator.validators[key] = faster
            current = faster
        if not isinstance(current, DefinitionsToo):
            return False
        for name in compile_now:
            current._part(_DEFINITION + name)
        return True
