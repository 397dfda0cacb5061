"""Step 0: can this account run the deployment operations on this server?

Checked with ordinary commands, no script text: the snap-in is registered, the account is a CRM
deployment administrator (the snap-in refuses others), a local administrator, and the official
scripts are where the procedure expects them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from psbridge.crm.scripts import (
    CERTIFICATE_RECONFIGURATION,
    CONFIGURE_SERVER_SIDE_SYNC,
    TOOLS_FOLDER,
    script_path,
)
from psbridge.crm.snapin import SNAPIN
from psbridge.errors import PrerequisiteFailed as PrerequisiteFailed  # re-exported for its callers
from psbridge.remote.command import Cmd
from psbridge.remote.session import Session


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: could not be decided on this server
    detail: str


@dataclass
class Prerequisites:
    server: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def raise_for_failures(self) -> None:
        if not self.passed:
            what = "; ".join(f"{c.name}: {c.detail}" for c in self.failures)
            raise PrerequisiteFailed(f"{self.server} is not ready: {what}", self)

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"check": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks])

    def __str__(self) -> str:
        mark = {True: "ok", False: "FAILED", None: "unknown"}
        return "\n".join([f"Prerequisites on {self.server}:"] + [
            f"  [{mark[c.ok]}] {c.name}: {c.detail}" for c in self.checks
        ])

    def _repr_html_(self) -> str:
        colour = {True: "#2e7d32", False: "#c62828", None: "#b8860b"}
        rows = "".join(
            f'<tr><td style="color:{colour[c.ok]}">{"✔" if c.ok else ("✘" if c.ok is False else "?")}</td>'
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td></tr>"
            for c in self.checks
        )
        return f"<b>Prerequisites on {html.escape(self.server)}</b><table>{rows}</table>"


def check_prerequisites(session: Session, tools_folder: str | PurePath = TOOLS_FOLDER) -> Prerequisites:
    report = Prerequisites(session.server)
    report.checks.append(_snapin(session))
    if report.checks[-1].ok:
        report.checks.append(_deployment_admin(session))
    report.checks.append(_local_admin(session))
    for name in (CERTIFICATE_RECONFIGURATION, CONFIGURE_SERVER_SIDE_SYNC):
        path = script_path(name, tools_folder)
        # -LiteralPath: with -Path, a [ or ] in the folder name would be read as a wildcard.
        present = session.invoke("Test-Path", LiteralPath=str(path)).output
        ok = bool(present) and present[-1] is True
        report.checks.append(Check(f"{name} present", ok, str(path) if ok else f"not found at {path}"))
    session.record("prerequisites", "; ".join(f"{c.name}={c.ok}" for c in report.checks))
    return report


def _snapin(session: Session) -> Check:
    found = session.invoke("Get-PSSnapin", Registered=True, Name=SNAPIN, check=False)
    if found.output:
        return Check("CRM PowerShell snap-in", True, f"{SNAPIN} is registered")
    why = found.errors[0].message if found.errors else "not registered"
    return Check("CRM PowerShell snap-in", False, f"{SNAPIN}: {why}; run on a server with Deployment Tools")


def _deployment_admin(session: Session) -> Check:
    name = "CRM deployment administrator"
    result = session.invoke(
        [Cmd("Add-PSSnapin", Name=SNAPIN, ErrorAction="SilentlyContinue"), Cmd("Get-CrmOrganization")],
        check=False,
    )
    who = session.profile.user or "this account"
    if result.state == "Failed" or result.errors:
        why = result.errors[-1].message if result.errors else "Get-CrmOrganization failed"
        return Check(name, False, f"{who}: {why}")
    return Check(name, True, f"{who} can read {len(result.output)} organization(s)")


def _local_admin(session: Session) -> Check:
    name = "local administrator"
    user = (session.profile.user or "").lower()
    result = session.invoke("Get-LocalGroupMember", Group="Administrators", check=False)
    if result.state == "Failed" and any("CommandNotFound" in e.fqid for e in result.errors):
        return Check(name, None, "Get-LocalGroupMember is not available on this server")
    if result.state == "Failed" or result.errors:
        why = result.errors[-1].message if result.errors else "could not list Administrators"
        return Check(name, None, why)
    members = [m for m in result.output if hasattr(m, "get_ci")]
    names = [str(m.get_ci("Name") or "") for m in members]
    if any(_same_account(n, user) for n in names):
        return Check(name, True, f"{session.profile.user} is a member of Administrators")
    groups = [str(m.get_ci("Name")) for m in members if str(m.get_ci("ObjectClass") or "").lower() == "group"]
    if groups:
        # Membership through a domain group cannot be read from here: say so rather than guess.
        return Check(
            name, None,
            f"{session.profile.user} is not a direct member of Administrators; it may be one through "
            f"{', '.join(groups)}",
        )
    return Check(name, False, f"{session.profile.user} is not a member of Administrators")


def _same_account(member: str, user: str) -> bool:
    m = member.lower()
    if not user:
        return False
    if "@" in user and "\\" in m:
        return m.split("\\", 1)[1] == user.split("@", 1)[0]
    return m == user
