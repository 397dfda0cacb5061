"""Organizations of the deployment, as ``Get-CrmOrganization`` lists them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psbridge.crm import validation
from psbridge.crm.snapin import use_crm_snapin
from psbridge.remote.errors import ValidationError
from psbridge.remote.session import Session


@dataclass(frozen=True)
class Organization:
    id: uuid.UUID
    unique_name: str
    friendly_name: str
    state: str
    version: str

    @classmethod
    def from_record(cls, rec: Any) -> Organization:
        get = rec.get_ci
        return cls(
            id=validation.guid(str(get("Id")), "Id"),
            unique_name=str(get("UniqueName") or ""),
            friendly_name=str(get("FriendlyName") or ""),
            state=str(get("State") or ""),
            version=str(get("Version") or ""),
        )


def list_organizations(session: Session) -> list[Organization]:
    use_crm_snapin(session)
    result = session.invoke("Get-CrmOrganization")
    return [Organization.from_record(o) for o in result.output if hasattr(o, "get_ci")]


def get_organization(session: Session, name: str, field: str = "organization") -> Organization:
    """The organization with this unique name; :class:`ValidationError` listing the ones that exist."""
    unique = validation.organization_name(name, field)
    use_crm_snapin(session)
    result = session.invoke("Get-CrmOrganization", Name=unique, check=False)
    found = [Organization.from_record(o) for o in result.output if hasattr(o, "get_ci")]
    for org in found:
        if org.unique_name.lower() == unique.lower():
            return org
    denied = [e for e in result.errors if e.category in ("PermissionDenied", "SecurityError")]
    if denied:
        raise ValidationError(field, f"{session.server} refused to list organizations: {denied[0].message}")
    known = ", ".join(o.unique_name for o in list_organizations(session)) or "none"
    raise ValidationError(
        field, f"there is no organization {unique!r} on {session.server} (organizations: {known})"
    )
