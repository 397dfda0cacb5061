"""The CRM deployment cmdlets live in a snap-in each runspace must load first."""

from __future__ import annotations

from psbridge.remote.command import Cmd
from psbridge.remote.session import Session

SNAPIN = "Microsoft.Crm.PowerShell"


def use_crm_snapin(session: Session) -> Session:
    """Load the snap-in on this session's pool, and again on any pool it opens after a drop."""
    # "Cannot add ... because it is already added": a script run earlier in this pool loaded it.
    session.on_open(Cmd("Add-PSSnapin", Name=SNAPIN), already_done="AddPSSnapInRead")
    return session
