"""Objects that came over the wire, as plain Python values.

pypsrp deserializes what it knows and keeps the CLIXML of every complex object it does not
(read through :mod:`psbridge.remote._pypsrp`). That CLIXML goes through psrpcore's deserializer,
which knows every primitive type (dates stay dates, GUIDs stay GUIDs, enums keep their names),
and the result is flattened into what a notebook wants: ``str``, ``int``, ``datetime``,
``uuid.UUID``, ``bytes``, lists, dicts, and :class:`PSRecord` for objects (a ``dict`` of
properties that remembers its .NET type names).
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import psrpcore.types as pst
from defusedxml.ElementTree import fromstring as parse_xml
from pypsrp.complex_objects import ComplexObject, GenericComplexObject

from psbridge.remote._pypsrp import clixml, to_string, wire_properties
from psbridge.secrets import Secret

log = logging.getLogger(__name__)

_DESERIALIZED = "Deserialized."


def _undeserialized(type_name: str) -> str:
    # Remoting prefixes "Deserialized."; psrpcore adds one more when it reads the CLIXML again.
    while type_name.startswith(_DESERIALIZED):
        type_name = type_name[len(_DESERIALIZED):]
    return type_name


class PSRecord(dict[str, Any]):
    """A PowerShell object's properties, in order, plus its type names.

    Property lookup by attribute is case-insensitive, as in PowerShell: ``rec.thumbprint``.
    ``type_names`` carries the .NET types without the ``Deserialized.`` prefix remoting adds.
    """

    def __init__(self, props: Mapping[str, Any], type_names: list[str], to_string: str | None = None) -> None:
        super().__init__(props)
        self.type_names = [_undeserialized(t) for t in type_names]
        self.to_string = to_string

    @property
    def type_name(self) -> str:
        return self.type_names[0] if self.type_names else "System.Object"

    def get_ci(self, name: str, default: Any = None) -> Any:
        if name in self:
            return self[name]
        low = name.lower()
        for k, v in self.items():
            if k.lower() == low:
                return v
        return default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        missing = object()
        value = self.get_ci(name, missing)
        if value is missing:
            raise AttributeError(f"{self.type_name} has no property {name!r}")
        return value

    def __repr__(self) -> str:
        return f"PSRecord({self.type_name}, {dict.__repr__(self)})"


class _NoCipher(pst.PSCryptoProvider):
    """Output SecureStrings stay masked unless the pool holds a session key."""

    def __init__(self, cipher: Any = None) -> None:
        self._cipher = cipher

    def decrypt(self, value: str) -> str:
        if self._cipher is None:
            raise ValueError("no session key to decrypt a SecureString")
        import base64

        from cryptography.hazmat.primitives.padding import PKCS7

        data = base64.b64decode(value)
        dec = self._cipher.decryptor()
        raw = dec.update(data) + dec.finalize()
        unpad = PKCS7(128).unpadder()
        return (unpad.update(raw) + unpad.finalize()).decode("utf-16-le")

    def encrypt(self, value: str) -> str:  # pragma: no cover - output is never re-sent
        raise NotImplementedError


def from_wire(value: Any, cipher: Any = None) -> Any:
    """Turn one value as pypsrp hands it over into a plain Python value."""
    if isinstance(value, ComplexObject):
        xml = clixml(value)
        if xml:
            try:
                return to_plain(pst.deserialize(parse_xml(xml), _NoCipher(cipher)))
            except Exception as e:
                # Best effort over a whole deserializer and whatever a server sent: pypsrp has
                # already built a value from the same CLIXML, so any failure falls back to it
                # (logged with its cause) rather than losing the command's output.
                log.debug("psrpcore could not deserialize %s: %s: %s", type(value).__name__,
                          type(e).__name__, e)
        if isinstance(value, GenericComplexObject):
            return _from_generic(value, cipher)
        return _from_known(value, cipher)
    if isinstance(value, str) and value.startswith("<Obj"):
        # pypsrp returns the raw CLIXML of a nested object whose type it does not know.
        try:
            return to_plain(pst.deserialize(parse_xml(value), _NoCipher(cipher)))
        except Exception as e:
            # As above: the raw CLIXML is still a faithful value, and better than no output.
            log.debug("psrpcore could not deserialize a nested object: %s: %s", type(e).__name__, e)
            return value
    if isinstance(value, ET.Element):  # a SecureString pypsrp could not decrypt
        return Secret("") if value.tag == "SS" else ET.tostring(value, encoding="unicode")
    if isinstance(value, list):
        return [from_wire(v, cipher) for v in value]
    if isinstance(value, dict):
        return {from_wire(k, cipher): from_wire(v, cipher) for k, v in value.items()}
    return value


def _from_generic(obj: GenericComplexObject, cipher: Any) -> Any:
    props = {**obj.adapted_properties, **obj.extended_properties}
    if not props:
        if obj.property_sets and len(obj.property_sets) == 1 and obj.to_string is None:
            return from_wire(obj.property_sets[0], cipher)
        return obj.to_string
    return PSRecord({k: from_wire(v, cipher) for k, v in props.items()}, list(obj.types), obj.to_string)


def _from_known(obj: ComplexObject, cipher: Any) -> Any:
    """A type pypsrp models itself (ParameterMetadata, ...): its properties by their wire names."""
    props: dict[str, Any] = {}
    for attr, meta in wire_properties(obj):
        name = getattr(meta, "name", None)
        if name:
            props[str(name)] = from_wire(getattr(obj, attr, None), cipher)
    if not props:
        return str(obj)
    return PSRecord(props, list(getattr(obj, "types", []) or []), to_string(obj))


def to_plain(value: Any) -> Any:
    """Flatten a psrpcore value (PSString, PSDateTime, PSObject, ...) into plain Python."""
    if value is None or value is pst.PSNull:
        return None
    if isinstance(value, pst.PSEnumBase | pst.PSFlagBase):
        return value.name if value.name else str(value.PSObject.to_string or int(value))
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, pst.PSSecureString):
        try:
            return Secret(value.decrypt())
        except ValueError:
            # No session key (_NoCipher), or a value that is not base64, not whole blocks, badly
            # padded or not UTF-16: all ValueError. The value stays masked and empty.
            return Secret("")
    if isinstance(value, pst.PSChar):
        return chr(int(value))
    if isinstance(value, dt.datetime):
        return dt.datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.tzinfo,
        )
    if isinstance(value, dt.timedelta):
        return dt.timedelta(days=value.days, seconds=value.seconds, microseconds=value.microseconds)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, decimal.Decimal):
        return decimal.Decimal(value)
    if isinstance(value, uuid.UUID):
        return uuid.UUID(str(value))
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, pst.PSVersion):
        return str(value)
    if isinstance(value, Mapping):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, pst.PSObject):
        return _record(value)
    return value


def _record(obj: pst.PSObject) -> Any:
    meta = obj.PSObject
    names = [p.name for p in (*meta.adapted_properties, *meta.extended_properties)]
    type_names = list(meta.type_names)
    if not names:
        if any(t.removeprefix(_DESERIALIZED) == "System.Enum" for t in type_names):
            return meta.to_string
        return meta.to_string
    props = {}
    for name in names:
        try:
            props[name] = to_plain(obj[name])
        except (AttributeError, TypeError, ValueError) as e:
            # A property psrpcore cannot read back (its lookup, getter or type cast fails): keep
            # going with the rest.
            log.debug("property %s cannot be read back: %s: %s", name, type(e).__name__, e)
            props[name] = None
    return PSRecord(props, type_names, meta.to_string)
