"""Step 6b — mailboxes: on the profile with server-side sync, approved, tested and enabled.

Which mailboxes: every active user's (the default), a list of users and queues, or an OData
query on users. Each is pointed at the email server profile of step 60 with server-side sync for
incoming and outgoing email (2) and for appointments, contacts and tasks (1: another code); its
owner's email address is approved where the organization requires approval — the signed-in
user needs *Approve Email Addresses for Users or Queues* (``prvApproveRejectEmailAddress``),
which is checked before anything changes; then Test & Enable is scheduled and the step waits,
showing progress, until every mailbox reports success or failure, or the timeout passes. A
failure carries the server's own words (the mailbox's alert). A mailbox already enabled is left
alone; one whose test is still running is waited for, not scheduled again.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from psbridge.crm import email
from psbridge.runbook.steps.common import Action, StepError, web_api, web_api_target
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.crm.webapi import WebApi

__all__ = ["MailboxRow", "MailboxesState", "enable_mailboxes", "mailboxes_state", "web_api", "web_api_target"]


@dataclass(frozen=True)
class MailboxRow:
    owner: email.Owner
    mailbox: email.Mailbox | None
    profile_id: str | None
    needs_approval: bool
    alert: str = ""  # the server's message for a failed test

    @property
    def configured(self) -> bool:
        return self.mailbox is not None and self.profile_id is not None and self.mailbox.configured_for(
            self.profile_id)

    @property
    def approved(self) -> bool:
        return not self.needs_approval or self.owner.approval == email.Approval.APPROVED

    @property
    def pending(self) -> bool:
        return self.mailbox is not None and self.mailbox.scheduled

    @property
    def enabled(self) -> bool:
        return self.mailbox is not None and self.mailbox.enabled

    @property
    def ok(self) -> bool:
        return self.configured and self.approved and self.enabled

    def as_dict(self) -> dict[str, Any]:
        m = self.mailbox
        status = "scheduled" if self.pending else email.label(email.TestStatus, m.status if m else None)
        return {
            "mailbox": m.name if m else self.owner.name,
            "owner": "queue" if self.owner.kind == "queue" else "user",
            "address": self.owner.address,
            "on the profile": "yes" if m and self.profile_id and m.profile_id == self.profile_id else "no",
            "incoming": email.label(email.Delivery, m.incoming if m else None),
            "outgoing": email.label(email.Delivery, m.outgoing if m else None),
            "appointments, contacts, tasks": email.label(email.ActDelivery, m.act if m else None),
            "approval": (email.label(email.Approval, self.owner.approval) if self.needs_approval
                         else "not required"),
            "test": status,
            "incoming status": email.label(email.TestStatus, m.incoming_status if m else None),
            "outgoing status": email.label(email.TestStatus, m.outgoing_status if m else None),
            "ACT status": email.label(email.TestStatus, m.act_status if m else None),
            "server's message": self.alert,
        }


@dataclass
class MailboxesState:
    """Every chosen mailbox as it is, and what stands in the way (selection, privilege, profile)."""

    rows: list[MailboxRow]
    profile_name: str
    profile_id: str | None
    caller: str
    may_approve: bool
    problems: list[str] = field(default_factory=list)
    allow_listed: str = ""

    COLUMNS: ClassVar[list[str]] = ["mailbox", "owner", "address", "on the profile", "incoming", "outgoing",
                                    "appointments, contacts, tasks", "approval", "test", "incoming status",
                                    "outgoing status", "ACT status", "server's message"]

    @property
    def ok(self) -> bool:
        return not self.problems and self.profile_id is not None and all(r.ok for r in self.rows)

    @property
    def enabled(self) -> list[MailboxRow]:
        return [r for r in self.rows if r.enabled]

    @property
    def failed(self) -> list[MailboxRow]:
        return [r for r in self.rows if r.mailbox is not None and r.mailbox.failed]

    @property
    def pending(self) -> list[MailboxRow]:
        return [r for r in self.rows if r.pending]

    def frame(self) -> pd.DataFrame:
        return dataframe([r.as_dict() for r in self.rows], self.COLUMNS)

    def _summary(self) -> str:
        parts = [f"{len(self.rows)} mailboxes on profile {self.profile_name!r}: {len(self.enabled)} enabled"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.pending:
            parts.append(f"{len(self.pending)} still testing")
        return ", ".join(parts)

    def _repr_html_(self) -> str:
        notes = [html.escape(self._summary())]
        notes += [f"<b>Not found:</b> {html.escape(p)}" for p in self.problems]
        if not self.allow_listed:
            notes.append("<b>Tenant allow-list not confirmed</b> (exchange_allow_list): for a tenant "
                         "connected since 1 October 2025 Test &amp; Enable fails until Exchange Support "
                         "allow-lists it.")
        if not self.may_approve and any(not r.approved for r in self.rows):
            notes.append(f"<b>{html.escape(self.caller)}</b> lacks {email.APPROVE_EMAIL_NAME} "
                         f"({email.APPROVE_EMAIL}).")
        table = html_table([r.as_dict() for r in self.rows], self.COLUMNS)
        return "<p>" + "<br>".join(notes) + "</p>" + table

    def __repr__(self) -> str:
        lines = [self._summary()]
        for r in self.rows:
            d = r.as_dict()
            alert = f" - {r.alert}" if r.alert else ""
            lines.append(f"{'ok ' if r.ok else 'NO '} {d['mailbox']} <{d['address']}>: test {d['test']}, "
                         f"approval {d['approval']}{alert}")
        return "\n".join(lines)

    def require(self) -> None:
        """Stop the run naming every mailbox not enabled, with the server's message."""
        if self.ok:
            return
        lines = [*self.problems]
        if self.profile_id is None:
            lines.append(f"there is no email server profile {self.profile_name!r}: run step 60 first")
        for r in self.rows:
            name = r.mailbox.name if r.mailbox else r.owner.name
            if r.pending:
                lines.append(f"{name}: Test & Enable has not reported yet (run this step again to wait for "
                             "it; it is not scheduled twice)")
            elif r.mailbox is not None and r.mailbox.failed:
                lines.append(f"{name}: Test & Enable failed: {r.alert or 'the server gave no reason'}")
            elif not r.ok:
                lines.append(f"{name}: not enabled (on the profile: {r.configured}, approved: {r.approved})")
        raise StepError(f"{len(lines)} mailbox problem(s):\n  - " + "\n  - ".join(lines))


def mailboxes_state(api: WebApi, profile_name: str, mailboxes: list[str] | None = None,
                    mailbox_filter: str = "", exchange_allow_list: str = "") -> MailboxesState:
    """Read every chosen mailbox, its owner's approval and the caller's privilege; nothing changes."""
    email.check_names(api)
    found = email.find_profiles(api, profile_name)
    profile_id = found[0].id if len(found) == 1 else None
    owners, problems = email.select_owners(api, list(mailboxes or []), mailbox_filter)
    settings = email.email_settings(api)
    boxes = email.mailboxes(api, [o.mailbox_id for o in owners if o.mailbox_id])
    rows = []
    for owner in owners:
        box = boxes.get(owner.mailbox_id or "")
        needs = settings.approve_queues if owner.kind == "queue" else settings.approve_users
        alert = email.last_alert(api, box.id) if box is not None and box.failed else ""
        rows.append(MailboxRow(owner, box, profile_id, needs, alert))
    me = api.whoami()
    caller = str(api.describe().get("as") or me.user_id)
    may = email.has_privilege(api, me.user_id, email.APPROVE_EMAIL)
    return MailboxesState(rows, profile_name, profile_id, caller, may, problems, exchange_allow_list.strip())


class Progress:
    """Where the tests stand, as one line a notebook updates in place (a terminal gets a line each)."""

    def __init__(self) -> None:
        self._handle: Any = None
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self._handle = display({"text/plain": "Test & Enable: scheduled"}, raw=True, display_id=True)
        except ImportError:
            pass
        self.said: list[str] = []

    def __call__(self, text: str) -> None:
        self.said.append(text)
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
        else:
            print(text, flush=True)


def wait_for_tests(api: WebApi, ids: list[str], timeout: float, report: Callable[[str], None] | None = None,
                   *, sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> dict[str, email.Mailbox]:
    """Poll until every mailbox's Test & Enable has reported, or ``timeout`` seconds have passed."""
    started = clock()
    interval = 0.5
    while True:
        boxes = email.mailboxes(api, ids)
        done = [b for b in boxes.values() if not b.scheduled]
        good = sum(1 for b in done if b.enabled)
        elapsed = clock() - started
        if report is not None:
            report(f"Test & Enable: {len(done)}/{len(ids)} reported ({good} success, "
                   f"{len(done) - good} failure) after {elapsed:.0f} s")
        if len(done) == len(ids) or elapsed >= timeout:
            return boxes
        sleep(min(interval, max(0.0, timeout - elapsed)))
        # The asynchronous service takes minutes on a real server: ask less often as time goes by.
        interval = min(interval * 1.5, 15.0)


def enable_mailboxes(api: WebApi, state: MailboxesState, *, plan: bool = False, timeout: float = 900.0,
                     report: Callable[[str], None] | None = None) -> Action:
    """Configure, approve, Test & Enable what is not right yet, and wait for the tests."""
    if state.problems:
        raise StepError("the mailboxes to set up are not all found:\n  - " + "\n  - ".join(state.problems))
    if state.profile_id is None and not plan:
        raise StepError(f"there is no (single) email server profile {state.profile_name!r}: run step 60 "
                        "first")
    if state.ok:
        return Action([], plan)
    to_configure = [r for r in state.rows if not r.configured]
    to_approve = [r for r in state.rows if not r.approved]
    to_test = [r for r in state.rows if not r.pending and not r.ok]
    waiting = [r for r in state.rows if r.pending]
    if to_approve and not state.may_approve:
        raise StepError(
            f"{state.caller} may not approve email addresses: the role lacks {email.APPROVE_EMAIL_NAME} "
            f"({email.APPROVE_EMAIL}), and {len(to_approve)} mailbox(es) still need approval: "
            + ", ".join(r.owner.name for r in to_approve) + ". Nothing was changed. Sign in as a System "
            "Administrator of the organization, or approve them in the web client (Mailboxes > Approve "
            "Email).")

    def names(rows: list[MailboxRow]) -> str:
        return ", ".join(r.mailbox.name if r.mailbox else r.owner.name for r in rows)

    changes = []
    if to_configure:
        changes.append(f"point {len(to_configure)} mailbox(es) at {state.profile_name!r} with server-side "
                       f"sync for email and for appointments, contacts and tasks: {names(to_configure)}")
    if to_approve:
        changes.append(f"approve the email address of {names(to_approve)}")
    if to_test:
        changes.append(f"schedule Test & Enable for {names(to_test)}")
    if plan:
        if state.profile_id is None:
            changes.insert(0, f"(the email server profile {state.profile_name!r} is step 60's to create)")
        if waiting:
            changes.append(f"wait for the Test & Enable already running for {names(waiting)}")
        return Action(changes, True)
    assert state.profile_id is not None
    for r in to_configure:
        assert r.mailbox is not None
        email.configure_mailbox(api, r.mailbox.id, state.profile_id)
    for r in to_approve:
        email.approve(api, r.owner)
    for r in to_test:
        assert r.mailbox is not None
        email.test_and_enable(api, r.mailbox.id)
    watched = [r.mailbox.id for r in [*to_test, *waiting] if r.mailbox is not None]
    shown: list[Any] = []
    if watched:
        from psbridge.runbook.timing import timed

        boxes = wait_for_tests(api, watched, timeout, report, sleep=timed("webapi_wait", time.sleep))
        good = sum(1 for b in boxes.values() if b.enabled)
        bad = sum(1 for b in boxes.values() if b.failed)
        left = len(watched) - good - bad
        late = f", {left} not reported in {timeout:g} s" if left else ""
        shown.append(f"Test & Enable: {good} success, {bad} failure{late}")
    return Action(changes, False, shown)
