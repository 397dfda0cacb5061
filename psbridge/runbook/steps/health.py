"""The health of one organization's integration: every check, the dates that matter, one verdict.

A check says what was read, where, what it found and how much that matters (:class:`Severity`).
The verdict is the worst of them: **broken** (server-side sync cannot work now: a link of the S2S
chain is missing), **action needed** (it works, but something will break or is left that should
not be: a certificate or key credential near its end, a mailbox failing, setup access still in the
tenant, a PFX left on a server) or **ok**. When every link of the chain is absent (no S2STokenIssuer
certificate, no S2STenantId, no active email server profile) and nothing broken is anything but an
absence, the verdict is **not set up**: what a decommission leaves, or an org never set up — not
a broken integration to repair. The reasons are the sentences of every check that is not
ok, so a record, a batch board and a change ticket all say the same thing.

The dates are information, never a reason on their own: every organization shares them, and a
verdict that said "action needed" everywhere until 2027 would hide the orgs that need it now.
Pure data and rules here; what reads the world is :mod:`psbridge.runbook.steps.health_checks`.
"""

from __future__ import annotations

import datetime as dt
import enum
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["END_OF_SUPPORT", "EWS_END", "Check", "Health", "Milestones", "Severity", "Verdict", "days_until"]

# From Microsoft's page for this procedure: support for CRM 9.0 with Exchange Online ends on 1 April
# 2027, and Exchange Web Services leave Exchange Online in April 2027 (no day published: its first is
# counted, the earliest it may be).
END_OF_SUPPORT = dt.date(2027, 4, 1)
EWS_END = dt.date(2027, 4, 1)
WARN_DAYS = 30


class Severity(enum.IntEnum):
    """How much one check matters; ordered, so the verdict is the worst."""

    OK = 0
    INFO = 1  # worth knowing, nothing to do
    ACTION = 2
    BROKEN = 3


class Verdict(enum.StrEnum):
    OK = "ok"
    ACTION_NEEDED = "action needed"
    BROKEN = "broken"
    NOT_SET_UP = "not set up"


_VERDICT = {Severity.OK: Verdict.OK, Severity.INFO: Verdict.OK, Severity.ACTION: Verdict.ACTION_NEEDED,
            Severity.BROKEN: Verdict.BROKEN}
_SHOWN = {Severity.OK: "ok", Severity.INFO: "note", Severity.ACTION: "action needed",
          Severity.BROKEN: "broken"}
COLUMNS = ["area", "where", "check", "found", "status"]


@dataclass(frozen=True)
class Check:
    area: str  # deployment | tenant | organization | email
    where: str  # a server, the configuration database, Entra ID, the Web API
    what: str
    found: str
    severity: Severity = Severity.OK
    # What to do (or why it matters), said when the check is not ok; the verdict's reason.
    reason: str = ""
    # It reads one of the S2S chain's links (the S2STokenIssuer certificate, S2STenantId, the profile).
    link: bool = False
    # What it reads is not there at all (not set, none recorded), as before a setup or after a decommission.
    absent: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"area": self.area, "where": self.where, "check": self.what, "found": self.found,
                "status": _SHOWN[self.severity]}


def days_until(moment: dt.datetime | dt.date | None, today: dt.date) -> int | None:
    """Whole days from ``today`` to ``moment`` (negative once past); None when there is no date."""
    if moment is None:
        return None
    day = moment.astimezone(dt.UTC).date() if isinstance(moment, dt.datetime) else moment
    return (day - today).days


@dataclass(frozen=True)
class Milestones:
    """The dates that matter, counted from ``today``."""

    today: dt.date
    certificate_not_after: dt.datetime | None

    @property
    def days_to_certificate_expiry(self) -> int | None:
        return days_until(self.certificate_not_after, self.today)

    @property
    def days_to_end_of_support(self) -> int:
        return (END_OF_SUPPORT - self.today).days

    @property
    def days_to_ews_end(self) -> int:
        return (EWS_END - self.today).days

    def rows(self) -> list[dict[str, Any]]:
        cert = self.certificate_not_after
        return [
            {"date": f"{cert:%Y-%m-%d}" if cert else "-", "what": "the S2S certificate expires",
             "days left": self.days_to_certificate_expiry},
            {"date": f"{END_OF_SUPPORT:%Y-%m-%d}", "what": "support for CRM 9.0 with Exchange Online ends",
             "days left": self.days_to_end_of_support},
            {"date": "2027-04", "what": "Exchange Web Services leave Exchange Online (counted to 1 April)",
             "days left": self.days_to_ews_end},
        ]

    def _repr_html_(self) -> str:
        return html_table(self.rows(), ["date", "what", "days left"])


@dataclass
class Health:
    """Every check of one organization, and its verdict."""

    organization: str
    checks: list[Check] = field(default_factory=list)
    milestones: Milestones | None = None

    def add(self, area: str, where: str, what: str, found: str, severity: Severity = Severity.OK,
            reason: str = "") -> None:
        self.checks.append(Check(area, where, what, found, severity, reason))

    def extend(self, checks: list[Check]) -> None:
        self.checks.extend(checks)

    @property
    def worst(self) -> Severity:
        return max((c.severity for c in self.checks), default=Severity.OK)

    @property
    def set_up(self) -> bool:
        """False when no link of the chain is there and all that is broken is an absence."""
        links = [c for c in self.checks if c.link]
        broken = [c for c in self.checks if c.severity == Severity.BROKEN]
        return not (links and all(c.absent for c in links) and all(c.absent for c in broken))

    @property
    def verdict(self) -> Verdict:
        return _VERDICT[self.worst] if self.set_up else Verdict.NOT_SET_UP

    @property
    def reasons(self) -> list[str]:
        """Why the verdict is what it is: broken first, then what needs action.

        Not set up: that, once, instead of each absence as a repair to make; then what needs action
        still (a leftover PFX, the setup app's access).
        """
        bad = sorted((c for c in self.checks if c.severity >= Severity.ACTION), key=lambda c: -c.severity)
        if not self.set_up:
            gone = ", ".join(f"{c.what}: {c.found}" for c in self.checks if c.link)
            head = (f"server-side sync with Exchange Online is not set up for {self.organization} ({gone}): "
                    "set it up with exchange-online-s2s, or nothing is left to do after s2s-decommission")
            return [head] + [c.reason or f"{c.where}: {c.what}: {c.found}" for c in bad if not c.absent]
        return [c.reason or f"{c.where}: {c.what}: {c.found}" for c in bad]

    @property
    def notes(self) -> list[str]:
        return [c.reason or f"{c.where}: {c.what}: {c.found}" for c in self.checks
                if c.severity == Severity.INFO]

    def facts(self) -> dict[str, Any]:
        """What a batch summary reads: the verdict, its reasons and the days left."""
        m = self.milestones
        return {
            "health_verdict": str(self.verdict),
            "health_reasons": self.reasons,
            "days_to_certificate_expiry": m.days_to_certificate_expiry if m else None,
            "days_to_end_of_support": m.days_to_end_of_support if m else None,
            "days_to_ews_end": m.days_to_ews_end if m else None,
        }

    def frame(self) -> pd.DataFrame:
        return dataframe([c.as_dict() for c in self.checks], COLUMNS)

    def _repr_html_(self) -> str:
        colour = {Verdict.OK: "#1a7f37", Verdict.ACTION_NEEDED: "#9a6700", Verdict.BROKEN: "#cf222e",
                  Verdict.NOT_SET_UP: "#57606a"}
        head = (f"<p style='font-size:1.2em'><b>{html.escape(self.organization)}: "
                f"<span style='color:{colour[self.verdict]}'>{html.escape(str(self.verdict))}</span></b></p>")
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        body = f"<ul>{reasons}</ul>" if reasons else "<p>Every check is ok.</p>"
        return head + body + html_table([c.as_dict() for c in self.checks], COLUMNS)

    def __repr__(self) -> str:
        lines = [f"{self.organization}: {self.verdict}"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)
