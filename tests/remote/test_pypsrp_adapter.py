"""psbridge.remote._pypsrp reads pypsrp's private attributes: these tests fail, naming the
attribute, the day a pypsrp release moves one (pyproject.toml keeps pypsrp below 1.0)."""

from __future__ import annotations

from typing import Any

import pypsrp
from psrpcore.types import ConsoleColor, ErrorCategory, PSInvocationState
from pypsrp.complex_objects import ComplexObject, GenericComplexObject
from pypsrp.complex_objects import PSInvocationState as PypsrpState
from pypsrp.powershell import RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

from psbridge.remote import Cmd, SecureString, Session, _pypsrp
from psbridge.remote.result import _colour, _state_name
from psbridge.secrets import Secret

CLIXML = (
    '<Obj RefId="0"><TN RefId="0"><T>Contoso.Thing</T><T>System.Object</T></TN>'
    '<Props><S N="Name">contoso</S><I32 N="Size">3</I32></Props></Obj>'
)


def test_clixml_and_to_string_of_a_deserialized_object() -> None:
    obj = Serializer().deserialize(CLIXML)
    assert isinstance(obj, GenericComplexObject)
    xml = _pypsrp.clixml(obj)
    assert xml is not None and "Contoso.Thing" in xml, "pypsrp no longer keeps ComplexObject._xml"
    assert _pypsrp.clixml(ComplexObject()) is None


def test_wire_properties_and_to_string_of_types_pypsrp_models() -> None:
    from pypsrp.complex_objects import Color, Coordinates

    assert _pypsrp.to_string(Color(value=Color.RED)) == "Red", "pypsrp no longer has ComplexObject._to_string"
    attrs = [attr for attr, _ in _pypsrp.wire_properties(Coordinates(x=1, y=2))]
    assert attrs == ["x", "y"], "pypsrp's _property_sets/_adapted_properties/_extended_properties moved"


def test_session_cipher_is_none_before_keys_are_exchanged() -> None:
    pool = RunspacePool(WSMan("127.0.0.1", ssl=False, auth="ntlm", username="x", password="y"))
    assert hasattr(pool, "_serializer"), "pypsrp's RunspacePool no longer has _serializer"
    assert _pypsrp.session_cipher(pool) is None


def test_session_cipher_after_exchange_keys(session: Session) -> None:
    session.invoke(Cmd("Set-Variable", Name="adapter_test", Value=SecureString(Secret("s3cret"))))
    pool: Any = session._pool
    assert _pypsrp.session_cipher(pool.pool) is not None, "exchange_keys() no longer sets _serializer.cipher"


def test_psrpcore_enums_match_what_pypsrp_reports() -> None:
    assert pypsrp.__name__ == "pypsrp"
    for name in ("NOT_STARTED", "RUNNING", "STOPPING", "STOPPED", "COMPLETED", "FAILED", "DISCONNECTED"):
        value = getattr(PypsrpState, name)
        assert PSInvocationState(value).name.lower() == name.replace("_", "").lower()
        assert _state_name(value) == PSInvocationState(value).name
    assert _state_name(42) == "42"
    assert ErrorCategory(13).name == "ObjectNotFound"
    assert (_colour(int(ConsoleColor.DarkYellow)), _colour(-1), _colour(99)) == ("DarkYellow", None, None)
