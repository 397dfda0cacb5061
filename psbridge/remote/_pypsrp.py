"""The only place psbridge reads pypsrp's private attributes, because it has no public ones for
them (pypsrp 0.x; its 1.0 rewrite on psrpcore changes all of this, and pyproject.toml keeps us
below it). tests/remote/test_pypsrp_adapter.py fails when an attribute moves.

- the pool's session key (``RunspacePool._serializer.cipher``), set once ``exchange_keys()`` ran:
  with it, a SecureString nested in an object psrpcore re-reads is decrypted as pypsrp decrypts
  a top-level one;
- the CLIXML pypsrp kept of an object it deserialized (``ComplexObject._xml``), which psrpcore
  reads again with every primitive type intact;
- the wire properties of a type pypsrp models itself (``_property_sets``, ``_adapted_properties``,
  ``_extended_properties``: pairs of attribute name and ``ObjectMeta``) and its ``ToString``
  (``_to_string``).
"""

from __future__ import annotations

from typing import Any

from pypsrp.complex_objects import ComplexObject
from pypsrp.powershell import RunspacePool


def session_cipher(pool: RunspacePool) -> Any:
    """The AES cipher of the pool's session key, or None before keys were exchanged."""
    return pool._serializer.cipher


def clixml(obj: ComplexObject) -> str | None:
    """The CLIXML ``obj`` was deserialized from (None for one built locally)."""
    xml: str | None = obj._xml
    return xml


def wire_properties(obj: ComplexObject) -> tuple[tuple[str, Any], ...]:
    """``(attribute, ObjectMeta)`` for each property set, adapted and extended property."""
    return (*obj._property_sets, *obj._adapted_properties, *obj._extended_properties)


def to_string(obj: Any) -> Any:
    """The object's ``ToString`` as it came over the wire (None when it had none)."""
    return getattr(obj, "_to_string", None)
