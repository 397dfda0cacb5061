"""Output objects: psrpcore ``PSObject``s with the type names and properties real commands give.

Inside a pipeline objects are whole (``Get-Command P | Select-Object -ExpandProperty
Parameters`` reaches the live dictionary). What leaves the server is shaped as Windows
PowerShell 5.1's serializer shapes it, at depth 1 (:func:`for_wire`): the object's own (adapted)
properties travel one level down, so a property that is itself an object travels as its
``ToString()`` and an enum as its name; containers do not count as a level (a collection past
the depth is still a list, of such strings); properties added to the object itself (a
PSCustomObject's, a provider's PSPath) travel at the object's own depth; a type whose type data
names a serialization set (ParameterMetadata) sends only those properties.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import psrpcore.types as pst

_SENTINEL = object()


def new_object(
    type_names: list[str],
    props: dict[str, Any],
    to_string: str | None = None,
    extended: dict[str, Any] | None = None,
    serialize: tuple[str, ...] | None = None,
) -> pst.PSObject:
    """A .NET object: adapted properties (its own), extended ones (what PowerShell adds).

    ``serialize`` is the type data's PropertySerializationSet: only those adapted properties
    leave the server.
    """
    obj = pst.PSObject()
    if serialize is not None:
        obj._lab_serialization_set = serialize  # type: ignore[attr-defined]
    obj.PSObject.type_names = (
        [*type_names, "System.Object"] if type_names[-1] != "System.Object" else list(type_names)
    )
    obj.PSObject.adapted_properties = [pst.PSNoteProperty(k, v) for k, v in props.items()]
    obj.PSObject.extended_properties = [pst.PSNoteProperty(k, v) for k, v in (extended or {}).items()]
    obj.PSObject.to_string = to_string if to_string is not None else type_names[0]
    return obj


def custom_object(props: dict[str, Any], type_name: str | None = None) -> pst.PSObject:
    """``[PSCustomObject]@{...}``, with an optional ``PSTypeName`` on top."""
    obj = pst.PSObject()
    obj.PSObject.type_names = ([type_name] if type_name else []) + [
        "System.Management.Automation.PSCustomObject",
        "System.Object",
    ]
    obj.PSObject.extended_properties = [pst.PSNoteProperty(k, v) for k, v in props.items()]
    obj.PSObject.to_string = ""
    return obj


MSCORLIB = "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"
SMA_ASSEMBLY = (
    "System.Management.Automation, Version=3.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35"
)


def typed_list(
    items: list[Any], element_type: str, generic: str = "System.Collections.ObjectModel.Collection`1"
) -> pst.PSList:
    assembly = SMA_ASSEMBLY if element_type.startswith("System.Management.Automation.") else MSCORLIB
    lst = pst.PSList(items)
    lst.PSObject.type_names = [f"{generic}[[{element_type}, {assembly}]]", "System.Object"]
    return lst


def array(items: list[Any], element_type: str) -> pst.PSList:
    lst = pst.PSList(items)
    lst.PSObject.type_names = [f"{element_type}[]", "System.Array", "System.Object"]
    return lst


class Dictionary(pst.PSDict):
    """A ``Dictionary<TKey,TValue>``: its ``Keys``/``Values``/``Count`` are properties too."""


def dictionary(items: dict[str, Any], key_type: str, value_type: str, value_assembly: str) -> Dictionary:
    d = Dictionary(items)
    d.PSObject.type_names = [
        f"System.Collections.Generic.Dictionary`2[[{key_type}, mscorlib, Version=4.0.0.0, Culture=neutral, "
        f"PublicKeyToken=b77a5c561934e089],[{value_type}, {value_assembly}]]",
        "System.Object",
    ]
    d.PSObject.to_string = f"System.Collections.Generic.Dictionary`2[{key_type},{value_type}]"
    return d


def type_names_of(value: Any) -> list[str]:
    meta = getattr(value, "PSObject", None)
    if meta is not None and meta.type_names:
        return list(meta.type_names)
    if isinstance(value, bool):
        return ["System.Boolean", "System.ValueType", "System.Object"]
    if isinstance(value, str):
        return ["System.String", "System.Object"]
    if isinstance(value, int):
        return ["System.Int32", "System.ValueType", "System.Object"]
    return ["System.Object"]


def property_names(value: Any) -> list[str]:
    meta = getattr(value, "PSObject", None)
    if meta is None or isinstance(value, str):
        return []
    names = [p.name for p in meta.adapted_properties]
    names += [p.name for p in meta.extended_properties if p.name not in names]
    if isinstance(value, Dictionary):
        names += ["Keys", "Values", "Count"]
    return names


def get_property(value: Any, name: str, default: Any = _SENTINEL) -> Any:
    """``$value.Name``: case-insensitive, extended properties first, dictionary members too."""
    low = name.lower()
    meta = getattr(value, "PSObject", None)
    if meta is not None and not isinstance(value, str):
        for prop in (*meta.extended_properties, *meta.adapted_properties):
            if prop.name.lower() == low:
                return prop.get_value(value)
    if isinstance(value, dict):
        if low == "values":
            return list(value.values())
        if low == "keys":
            return list(value.keys())
        if low == "count":
            return len(value)
        for k, v in value.items():
            if str(k).lower() == low:
                return v
    if isinstance(value, str) and low == "length":
        return len(value)
    if isinstance(value, list | tuple) and low in ("count", "length"):
        return len(value)
    if default is _SENTINEL:
        raise KeyError(name)
    return default


def has_property(value: Any, name: str) -> bool:
    return get_property(value, name, _SENTINEL_MISSING) is not _SENTINEL_MISSING


_SENTINEL_MISSING = object()


def to_string(value: Any) -> str:
    """``$value.ToString()`` as remoting calls it for an object past the serialization depth."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, enum.Enum):
        return str(value.name)
    if isinstance(value, str | int | float | decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%m/%d/%Y %H:%M:%S")
    meta = getattr(value, "PSObject", None)
    if meta is not None:
        if meta.to_string is not None:
            return str(meta.to_string)
        return str(meta.type_names[0]) if meta.type_names else ""
    if isinstance(value, list | tuple):
        return " ".join(to_string(v) for v in value)
    return str(value)


def _is_primitive(value: Any) -> bool:
    if value is None or isinstance(
        value,
        bool
        | str
        | bytes
        | dt.datetime
        | dt.timedelta
        | uuid.UUID
        | decimal.Decimal
        | enum.Enum
        | pst.PSSecureString
        | pst.PSVersion,
    ):
        return True
    return isinstance(value, int | float) and not isinstance(value, pst.PSEnumBase | pst.PSFlagBase)


def for_wire(value: Any, depth: int = 1) -> Any:
    """Shape an object as remoting serializes it (``SerializationDepth`` 1 by default)."""
    if isinstance(value, enum.Enum | pst.PSEnumBase | pst.PSFlagBase) and not isinstance(value, bool):
        # Past the depth an enum is a complex value like any other: its name.
        return value if depth > 0 else to_string(value)
    if _is_primitive(value):
        return value
    # Containers do not count as a level: their items travel at the container's own depth.
    if isinstance(value, dict):
        shaped_d = pst.PSDict({for_wire(k, 0): for_wire(v, depth) for k, v in value.items()})
        meta_d = getattr(value, "PSObject", None)
        if meta_d is not None:
            shaped_d.PSObject.type_names = list(meta_d.type_names)
            shaped_d.PSObject.to_string = meta_d.to_string
        return shaped_d
    if isinstance(value, list | tuple):
        shaped_l = pst.PSList([for_wire(v, depth) for v in value])
        meta_l = getattr(value, "PSObject", None)
        if meta_l is not None:
            shaped_l.PSObject.type_names = list(meta_l.type_names)
        return shaped_l
    meta = getattr(value, "PSObject", None)
    if meta is None:
        return to_string(value)
    if depth <= 0:
        return to_string(value)
    out = pst.PSObject()
    out.PSObject.type_names = list(meta.type_names)
    only = getattr(value, "_lab_serialization_set", None)
    adapted = list(meta.adapted_properties)
    if only is not None:  # the set's properties, in the set's order
        adapted = [p for name in only for p in adapted if p.name == name]
    out.PSObject.adapted_properties = [
        pst.PSNoteProperty(p.name, for_wire(p.get_value(value), depth - 1)) for p in adapted
    ]
    # Members of the object itself keep its depth (5.1: IsInstance ? depth : depth - 1).
    out.PSObject.extended_properties = [
        pst.PSNoteProperty(p.name, for_wire(p.get_value(value), depth)) for p in meta.extended_properties
    ]
    out.PSObject.to_string = to_string(value)
    return out
