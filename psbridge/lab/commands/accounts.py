"""``Get-LocalGroupMember`` (Microsoft.PowerShell.LocalAccounts): who administers a lab server.

The Administrators group holds the built-in local Administrator, the domain's Domain Admins
and the lab accounts the world names as local administrators of that server.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any

from psbridge.lab.commands.objects import new_object
from psbridge.lab.commands.registry import STRING, Param, cmdlet
from psbridge.lab.commands.runtime import Call

_TYPE = "Microsoft.PowerShell.Commands.GetLocalGroupMemberCommand"
_DOMAIN_SID = "S-1-5-21-3623811015-3361044348-30300820"


def _sid(name: str, local_rid: int | None = None) -> str:
    if local_rid is not None:
        return f"S-1-5-21-1004336348-1177238915-682003330-{local_rid}"
    rid = 1100 + int(hashlib.sha256(name.lower().encode()).hexdigest()[:4], 16) % 8000
    return f"{_DOMAIN_SID}-{rid}"


def _principal(name: str, object_class: str, source: str, sid: str) -> Any:
    return new_object(
        ["Microsoft.PowerShell.Commands.LocalPrincipal"],
        {
            "Name": name,
            "SID": new_object(
                [
                    "System.Security.Principal.SecurityIdentifier",
                    "System.Security.Principal.IdentityReference",
                ],
                {"Value": sid},
                sid,
            ),
            "PrincipalSource": source,
            "ObjectClass": object_class,
        },
        name,
    )


def administrators(call: Call) -> list[Any]:
    server = call.world.server(call.ctx.server)
    members = [
        _principal(f"{server['name']}\\Administrator", "User", "Local", _sid("", 500)),
        _principal(
            f"{call.world.data.get('domain', 'LAB')}\\Domain Admins",
            "Group",
            "ActiveDirectory",
            f"{_DOMAIN_SID}-512",
        ),
    ]
    members += [_principal(a, "User", "ActiveDirectory", _sid(a)) for a in server["local_administrators"]]
    return members


@cmdlet(
    "Get-LocalGroupMember",
    _TYPE,
    Param("Group", STRING, mandatory=True, position=0, sets=("Group",)),
    Param("Name", STRING, mandatory=True, position=0, sets=("Default",)),
    Param("SID", "System.Security.Principal.SecurityIdentifier", mandatory=True, position=0, sets=("SID",)),
    Param("Member", STRING, position=1),
    source="Microsoft.PowerShell.LocalAccounts",
    default_set="Default",
)
def get_local_group_member(call: Call) -> None:
    group = call.get("Group") or call.get("Name") or ""
    if str(group).lower() not in ("administrators", "builtin\\administrators"):
        call.error(
            call.record(
                f"Group {group} was not found.",
                "ObjectNotFound",
                "GroupNotFound",
                target=group,
                exception="Microsoft.PowerShell.Commands.GroupNotFoundException",
            )
        )
        return
    wanted = call.get("Member")
    for m in administrators(call):
        name = m.PSObject.to_string
        if (
            wanted
            and not fnmatch.fnmatchcase(name.lower(), str(wanted).lower())
            and name.lower().rsplit("\\", 1)[-1] != str(wanted).lower()
        ):
            continue
        call.write(m)
