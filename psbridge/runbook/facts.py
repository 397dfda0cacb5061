"""Facts: what a step learned that later steps need (a thumbprint, an app id, a tenant id).

Inside a notebook::

    from psbridge.runbook import record
    record("thumbprint", cert.thumbprint)

shows the fact in the notebook and leaves it in the executed notebook as a display output
of type ``application/vnd.psbridge.fact+json``; the runner reads it back from there with
:func:`read_facts` and hands it to the next steps as a parameter. So a fact is evidence
too: the change record shows exactly what was handed on.

A fact is written down, so it can never be a secret value: :func:`record` refuses a
:class:`~psbridge.secrets.Secret` and any text holding a secret value this kernel has seen.
A secret is handed on by its *reference* (``record("client_secret_ref", "lab:contoso/s2s")``).
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import Any

from psbridge.errors import ParameterError
from psbridge.secrets import Secret, redact

FACT_MIME = "application/vnd.psbridge.fact+json"
# The step's own account of what it changed (or, in a plan, would change).
CHANGES = "changes"

# Facts recorded in this process, for code that runs outside a notebook kernel.
recorded: dict[str, Any] = {}


class FactError(ParameterError):
    pass


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, Secret):
        raise FactError(f"fact {name!r}: a secret is not written down; record its reference instead")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str):
        if redact(value) != value:
            raise FactError(f"fact {name!r} holds a secret value; record its reference instead")
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(name, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(name, v) for k, v in value.items()}
    raise FactError(f"fact {name!r}: {type(value).__name__} is not text, a number, a list or a mapping")


def record(name: str, value: Any) -> Any:
    """Record a fact for later steps and show it; returns the value as recorded."""
    if not name.isidentifier():
        raise FactError(f"a fact name is an identifier, not {name!r}")
    plain = _plain(name, value)
    json.dumps(plain)  # refuse what could not be read back
    recorded[name] = plain
    text = f"fact {name} = {plain!r}"
    bundle = {
        FACT_MIME: {"name": name, "value": plain},
        "text/plain": text,
        "text/html": f"<div style='font-family:monospace;color:#555'>fact <b>{escape(name)}</b> = "
                     f"{escape(json.dumps(plain, ensure_ascii=False))}</div>",
    }
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(bundle, raw=True)
            return plain
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        pass
    print(text)
    return plain


def record_changes(changes: Any) -> None:
    """Record what this step changed (or in a plan, would change); ``[]`` means already done.

    Takes a list of sentences or anything with a ``changes`` list (a step's Action).
    """
    record(CHANGES, list(getattr(changes, "changes", changes)))


def read_facts(nb: Any) -> dict[str, Any]:
    """The facts an executed notebook recorded, in order; a later record of a name wins."""
    facts: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data") or {}
            fact = data.get(FACT_MIME)
            if isinstance(fact, dict) and "name" in fact:
                facts[str(fact["name"])] = fact.get("value")
    return facts
