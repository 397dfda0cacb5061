"""Objects as pypsrp deserializes them from CLIXML become plain Python values."""

from __future__ import annotations

import datetime as dt
import uuid
import xml.etree.ElementTree as ET

import psrpcore.types as pst
from pypsrp.serializer import Serializer

from psbridge.remote.convert import PSRecord, from_wire


def over_the_wire(value: object) -> object:
    """What a client receives: the server's CLIXML, read back by pypsrp's own deserializer."""
    xml = ET.tostring(pst.serialize(value, None), encoding="unicode")
    return Serializer().deserialize(xml)


def test_object_becomes_a_record_with_native_values() -> None:
    org_id = uuid.uuid4()
    created = pst.PSDateTime(2024, 3, 30, 12, 0, 0)
    o = pst.PSCustomObject(
        Id=org_id, UniqueName="contoso", Created=created, Count=pst.PSInt(3), Tags=["a", "b"]
    )
    o.PSObject.type_names.insert(0, "Deserialized.Microsoft.Xrm.Sdk.Deployment.Organization")
    rec = from_wire(over_the_wire(o))
    assert isinstance(rec, PSRecord)
    assert rec.type_name == "Microsoft.Xrm.Sdk.Deployment.Organization"
    assert rec["Id"] == org_id and rec.uniquename == "contoso" and rec.get_ci("COUNT") == 3
    assert rec["Created"] == dt.datetime(2024, 3, 30, 12, 0, 0)
    assert rec["Tags"] == ["a", "b"]


def test_primitives_pass_through() -> None:
    assert from_wire(over_the_wire(pst.PSString("x;$(y)`'\"\nü"))) == "x;$(y)`'\"\nü"
    assert from_wire(over_the_wire(pst.PSInt(7))) == 7
    assert from_wire(over_the_wire(pst.PSByteArray(b"\x00\x01"))) == b"\x00\x01"
    assert from_wire(over_the_wire([pst.PSInt(1), pst.PSString("a")])) == [1, "a"]
