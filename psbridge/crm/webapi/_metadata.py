"""An organization's ``$metadata``, read once, to check the names psbridge writes before it writes them.

A bind name (``emailserverprofile@odata.bind``) or an attribute that a build of CRM does not have
fails only at the write, half-way through a step; checked against the CSDL first, every wrong
name is reported at once, with the names that are there.
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from psbridge.crm.webapi._errors import MetadataMismatch

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


@dataclass(frozen=True)
class EntityType:
    name: str
    properties: frozenset[str]
    navigations: frozenset[str]


@dataclass
class Metadata:
    entity_sets: dict[str, str] = field(default_factory=dict)  # set name -> entity type name
    types: dict[str, EntityType] = field(default_factory=dict)

    @classmethod
    def parse(cls, document: bytes) -> Metadata:
        # ElementTree resolves no external entities, and expat limits entity expansion: safe for a
        # document from the organization psbridge signed in to.
        root = ET.fromstring(document)  # noqa: S314
        meta = cls()
        for t in root.iter(f"{EDM}EntityType"):
            name = t.get("Name") or ""
            meta.types[name] = EntityType(
                name, frozenset(p.get("Name") or "" for p in t.iter(f"{EDM}Property")),
                frozenset(p.get("Name") or "" for p in t.iter(f"{EDM}NavigationProperty")))
        for s in root.iter(f"{EDM}EntitySet"):
            meta.entity_sets[s.get("Name") or ""] = (s.get("EntityType") or "").rpartition(".")[2]
        return meta

    def entity(self, entity_set: str) -> EntityType:
        kind = self.entity_sets.get(entity_set)
        if kind is None or kind not in self.types:
            close = difflib.get_close_matches(entity_set, list(self.entity_sets), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise MetadataMismatch(f"the organization has no entity set {entity_set!r}{hint}")
        return self.types[kind]

    def require(self, entity_set: str, properties: tuple[str, ...] | list[str] = (),
                navigations: tuple[str, ...] | list[str] = ()) -> None:
        """Raise :class:`MetadataMismatch` naming every property or navigation property missing."""
        t = self.entity(entity_set)
        problems = []
        for name in properties:
            if name not in t.properties:
                close = difflib.get_close_matches(name, sorted(t.properties), n=1)
                hint = f" (the organization has {close[0]!r})" if close else ""
                problems.append(f"property {name!r}{hint}")
        for name in navigations:
            if name not in t.navigations:
                close = difflib.get_close_matches(name, sorted(t.navigations), n=1)
                problems.append(f"navigation property {name!r} (to bind {name}@odata.bind)"
                                + (f"; the organization has {close[0]!r}" if close else ""))
        if problems:
            raise MetadataMismatch(f"{entity_set} ({t.name}) in this organization's $metadata lacks "
                                   + "; ".join(problems) + ": its CRM build differs from the one psbridge "
                                                           "knows")
