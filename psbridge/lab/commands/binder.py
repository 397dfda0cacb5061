"""Parameter binding as PowerShell does it, for commands sent as PSRP Commands.

Named parameters match case-insensitively, by full name, alias or unique prefix; positional
arguments fill the positions of the parameter set being bound; switches take ``$true``/
``$false`` or no value; the parameter set is resolved from what was bound; values are
converted to the parameter's type; a missing mandatory parameter is the terminating
ParameterBindingException a remote, non-interactive pipeline gets (nobody can be prompted).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import psrpcore.types as pst

from psbridge.errors import TwinAnswer
from psbridge.lab.commands import errors
from psbridge.lab.commands.objects import type_names_of
from psbridge.lab.commands.registry import (
    ALL_SETS,
    GUID,
    INT,
    OBJECT,
    OBJECTS,
    PSOBJECT,
    SECURE,
    STRING,
    STRINGS,
    CommandSpec,
    Param,
)
from psbridge.lab.runspace import ErrorRecord, Invocation, TerminatingError

TRANSFORMATION = "System.Management.Automation.ParameterBindingArgumentTransformationException"
VALIDATION = "System.Management.Automation.ParameterBindingValidationException"
_SECRET_WORDS = ("password", "secret")


@dataclass
class Bound:
    """The outcome of binding: canonical parameter names to converted values."""

    values: dict[str, Any]
    set_name: str
    spec: CommandSpec

    def has(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


class _NoConversion(TwinAnswer):
    def __init__(self, detail: str, transformation: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transformation = transformation


def _fail(
    spec: CommandSpec,
    message: str,
    fqid: str,
    *,
    category: str = "InvalidArgument",
    exception: str = errors.BINDING,
    target: Any = None,
) -> TerminatingError:
    return TerminatingError(
        errors.binding(
            message, fqid, spec.name, _fqid_type(spec), category=category, exception=exception, target=target
        )
    )


def _fqid_type(spec: CommandSpec) -> str:
    return spec.name if spec.kind == "ExternalScript" else spec.type_name


def _shown(param: Param, value: Any) -> str:
    """A value as an error message shows it; never a secret's text."""
    if param.type == SECURE or any(w in param.name.lower() for w in _SECRET_WORDS):
        return "********"
    if isinstance(value, pst.PSObject) and not isinstance(value, str | int):
        return str(value.PSObject.to_string or type_names_of(value)[0])
    return str(value)


def _net_type(value: Any) -> str:
    if isinstance(value, bool):
        return "System.Boolean"
    if isinstance(value, str):
        return "System.String"
    if isinstance(value, int):
        return "System.Int32"
    if isinstance(value, bytes):
        return "System.Byte[]"
    if isinstance(value, list | tuple):
        return "System.Object[]"
    if isinstance(value, pst.PSObject):
        return type_names_of(value)[0].removeprefix("Deserialized.")
    return type(value).__name__


def resolve_name(spec: CommandSpec, given: str) -> Param:
    """The parameter a name given on the command line means (exact, alias, then unique prefix)."""
    name = given.lstrip("-").rstrip(":")
    low = name.lower()
    params = spec.all_params
    for p in params:
        if p.name.lower() == low or low in (a.lower() for a in p.aliases):
            return p
    matches = [p for p in params if p.name.lower().startswith(low)]
    matches += [p for p in params for a in p.aliases if a.lower().startswith(low) and p not in matches]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise _fail(
            spec,
            f"A parameter cannot be found that matches parameter name '{name}'.",
            "NamedParameterNotFound",
            target=name,
        )
    listed = " ".join(f"-{p.name}" for p in matches)
    raise _fail(
        spec,
        f"Parameter cannot be processed because the parameter name '{name}' is ambiguous. "
        f"Possible matches include: {listed}.",
        "AmbiguousParameter",
        target=name,
    )


def convert(param: Param, value: Any, spec: CommandSpec) -> Any:
    """Convert one argument to the parameter's type, or raise the binding error PowerShell raises."""
    try:
        return _convert(param, value, spec)
    except _NoConversion as e:
        script = spec.kind == "ExternalScript"
        if script or e.transformation:
            message = f"Cannot process argument transformation on parameter '{param.name}'. {e.detail}"
            raise _fail(
                spec,
                message,
                "ParameterArgumentTransformationError",
                category="InvalidData",
                exception=TRANSFORMATION,
            ) from None
        fqid = "CannotConvertArgumentNoMessage" if "Error:" in e.detail else "CannotConvertArgument"
        raise _fail(spec, f"Cannot bind parameter '{param.name}'. {e.detail}", fqid) from None


def _convert(param: Param, value: Any, spec: CommandSpec) -> Any:
    t = param.type
    if param.is_switch:
        return True if value is None else bool(value)
    if value is None:
        return None
    if param.enum:
        text = str(value).strip()
        for name in param.enum:
            if name.lower() == text.lower():
                return name
        names = ", ".join(param.enum)
        raise _NoConversion(
            f'Cannot convert value "{text}" to type "{t}". Error: "Unable to match the identifier name '
            f"{text} to a valid enumerator name. Specify one of the following enumerator names and try "
            f"again:\r\n"
            f'{names}"'
        )
    if t == STRING:
        if isinstance(value, pst.PSSecureString):
            return SECURE
        if isinstance(value, list | tuple):
            return " ".join(str(v) for v in value)
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, pst.PSObject) and not isinstance(value, str | int | float):
            return str(value.PSObject.to_string or type_names_of(value)[0])
        return str(value)
    if t == STRINGS:
        items = value if isinstance(value, list | tuple) else [value]
        return [_convert(Param(param.name), v, spec) for v in items]
    if t == SECURE:
        if isinstance(value, pst.PSSecureString):
            return value
        raise _NoConversion(
            f'Cannot convert the "{_shown(param, value)}" value of type "{_net_type(value)}" '
            f'to type "{SECURE}".'
        )
    if t == INT:
        if isinstance(value, bool | int):
            return int(value)
        if isinstance(value, float):
            return _to_int32(value, param, value)
        try:
            return int(str(value).strip())
        except ValueError:
            pass
        try:
            # PowerShell reads "2.5" as a double and rounds it to even, as [int] does.
            return _to_int32(float(str(value).strip()), param, value)
        except ValueError:
            raise _NoConversion(
                f'Cannot convert value "{_shown(param, value)}" to type "{t}". Error: "Input '
                'string was not in a correct format."'
            ) from None
    if t == GUID:
        if isinstance(value, uuid.UUID):
            return uuid.UUID(str(value))
        try:
            return uuid.UUID(str(value).strip())
        except ValueError:
            raise _NoConversion(
                f'Cannot convert value "{_shown(param, value)}" to type "{t}". Error: "Guid '
                'should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."'
            ) from None
    if t == "System.DateTime":
        if isinstance(value, dt.datetime):
            return value
        try:
            return dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise _NoConversion(
                f'Cannot convert value "{value}" to type "{t}". Error: "String was not '
                'recognized as a valid DateTime."'
            ) from None
    if t in (OBJECT, OBJECTS, PSOBJECT):
        if t == OBJECTS and not isinstance(value, list | tuple | bytes):
            return [value]
        return value
    # A .NET class parameter (a CRM Certificate, a ConfigurationEntity...): the object must be one.
    if isinstance(value, pst.PSObject):
        value_types = [n.removeprefix("Deserialized.") for n in type_names_of(value)]
        if t in value_types:
            return value
    raise _NoConversion(
        f'Cannot convert the "{_shown(param, value)}" value of type "{_net_type(value)}" to type "{t}".'
    )


def _to_int32(number: float, param: Param, shown: Any) -> int:
    if number != number or abs(number) > 2**31:
        raise _NoConversion(
            f'Cannot convert value "{shown}" to type "System.Int32". Error: "Value was either too large '
            'or too small for an Int32."'
        )
    return round(number)  # banker's rounding, as .NET's Convert.ToInt32


def _check(param: Param, value: Any, spec: CommandSpec, mandatory: bool) -> None:
    if mandatory and value is None:
        raise _fail(
            spec,
            f"Cannot bind argument to parameter '{param.name}' because it is null.",
            "ParameterArgumentValidationErrorNullNotAllowed",
            category="InvalidData",
            exception=VALIDATION,
        )
    if (mandatory or param.not_null_or_empty) and param.type == STRING and value == "":
        raise _fail(
            spec,
            f"Cannot bind argument to parameter '{param.name}' because it is an empty string.",
            "ParameterArgumentValidationErrorEmptyStringNotAllowed",
            category="InvalidData",
            exception=VALIDATION,
        )
    if param.range and isinstance(value, int) and not isinstance(value, bool):
        low, high = param.range
        if not low <= value <= high:
            edge, word, compare = (low, "less than the minimum", "greater than or equal to") if value < low \
                else (high, "greater than the maximum", "less than or equal to")
            raise _fail(
                spec,
                f"Cannot validate argument on parameter '{param.name}'. The {value} argument is {word} "
                f"allowed range of {edge}. Supply an argument that is {compare} {edge} and then try the "
                "command again.",
                "ParameterArgumentValidationError",
                category="InvalidData",
                exception=VALIDATION,
            )
    if param.choices and value is not None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if str(v).lower() not in (c.lower() for c in param.choices):
                raise _fail(
                    spec,
                    f"Cannot validate argument on parameter '{param.name}'. "
                    f'The argument "{_shown(param, v)}" does not belong to the set '
                    f'"{",".join(param.choices)}" specified by the ValidateSet '
                    "attribute. Supply an argument that is in the set and then try the command again.",
                    "ParameterArgumentValidationError",
                    category="InvalidData",
                    exception=VALIDATION,
                )


def bind(spec: CommandSpec, invocation: Invocation, has_input: bool) -> Bound:
    """Bind an invocation's arguments to ``spec``; raises :class:`TerminatingError` as PowerShell would."""
    raw: dict[str, tuple[Param, Any]] = {}
    positional: list[Any] = []
    for given, value in invocation.parameters:
        if given is None:
            positional.append(value)
            continue
        param = resolve_name(spec, given)
        if param.name in raw:
            raise _fail(
                spec,
                f"Cannot bind parameter because parameter '{param.name}' is specified more than "
                "once. To provide multiple values to parameters that can accept multiple values, use "
                'the array syntax. For example, "-parameter value1,value2,value3".',
                "ParameterAlreadyBound",
            )
        raw[param.name] = (param, value)

    sets = spec.set_names
    candidates = [s for s in sets if all(p.in_set(s) for p, _ in raw.values())]
    values: dict[str, Any] = {}
    for name, (param, value) in raw.items():
        values[name] = convert(param, value, spec)

    # Positional arguments: by position, trying the default set's parameter first.
    for arg in positional:
        taken = False
        for position in sorted({p.position for p in spec.params if p.position is not None}):
            options = [
                p
                for p in spec.params
                if p.position == position
                and p.name not in values
                and not p.is_switch
                and any(p.in_set(s) for s in candidates)
            ]
            if not options:
                continue
            options.sort(key=lambda p: 0 if spec.default_set and p.in_set(spec.default_set) else 1)
            last: TerminatingError | None = None
            for p in options:
                try:
                    values[p.name] = convert(p, arg, spec)
                except TerminatingError as e:
                    last = e
                    continue
                candidates = [s for s in candidates if p.in_set(s)]
                taken = True
                break
            if not taken and last is not None:
                raise last
            break
        if not taken:
            raise _fail(
                spec,
                f"A positional parameter cannot be found that accepts argument '{arg}'.",
                "PositionalParameterNotFound",
                target=arg,
            )

    chosen = _choose_set(spec, candidates, values, has_input)
    by_name = {p.name: p for p in spec.all_params}
    missing = [
        p.name
        for p in spec.params
        if p.mandatory and p.in_set(chosen) and p.name not in values and not (p.pipeline and has_input)
    ]
    if missing:
        raise _fail(
            spec,
            "Cannot process command because of one or more missing mandatory parameters: "
            f"{' '.join(missing)}.",
            "MissingMandatoryParameter",
        )
    for name, value in values.items():
        p = by_name[name]
        _check(p, value, spec, p.mandatory and p.in_set(chosen))
    return Bound(values, chosen, spec)


def _choose_set(spec: CommandSpec, candidates: list[str], values: dict[str, Any], has_input: bool) -> str:
    if not candidates:
        raise _fail(
            spec,
            "Parameter set cannot be resolved using the specified named parameters.",
            "AmbiguousParameterSet",
        )
    if len(candidates) == 1:
        return candidates[0]
    if has_input:
        fed = [
            s
            for s in candidates
            if any(p.pipeline and p.in_set(s) and p.name not in values for p in spec.params)
        ]
        if len(fed) == 1:
            return fed[0]
        candidates = fed or candidates

    def complete(s: str) -> bool:
        return all(
            p.name in values or (p.pipeline and has_input) for p in spec.params if p.mandatory and p.in_set(s)
        )

    # A set only some of whose parameters were named explicitly beats one none of whose were.
    specific = [
        s for s in candidates if any(p.sets and s in p.sets and p.name in values for p in spec.params)
    ]
    pool = specific or candidates
    done = [s for s in pool if complete(s)]
    if len(done) == 1:
        return done[0]
    if spec.default_set in (done or pool):
        return str(spec.default_set)
    if len(pool) == 1:
        return pool[0]
    raise _fail(
        spec,
        "Parameter set cannot be resolved using the specified named parameters.",
        "AmbiguousParameterSet",
    )


def binding_error(record: ErrorRecord) -> bool:
    return record.exception_type.startswith("System.Management.Automation.ParameterBinding")


__all__ = ["ALL_SETS", "Bound", "bind", "binding_error", "convert", "resolve_name"]
