"""The health verdict's rules, without a lab: the worst check decides, notes never do, the reasons put what
is broken first, and the days are counted to the dates Microsoft's page gives."""

from __future__ import annotations

import datetime as dt

from psbridge.runbook.steps.health import Check, Health, Milestones, Severity, Verdict, days_until
from psbridge.runbook.steps.health_checks import expiry_check

TODAY = dt.date(2026, 12, 2)


def test_the_worst_check_decides_and_notes_never_do() -> None:
    health = Health("contoso")
    health.add("deployment", "CRM01", "certificate", "present")
    health.add("tenant", "Entra ID", "setup app", "registered", Severity.INFO, "the setup app can be deleted")
    assert health.verdict == Verdict.OK and health.reasons == []
    assert health.notes == ["the setup app can be deleted"]
    health.add("email", "mailboxes", "mailbox Bob", "failure", Severity.ACTION, "mailbox Bob fails: 401")
    assert health.verdict == Verdict.ACTION_NEEDED
    health.add("tenant", "Entra ID", "key credential", "MISSING", Severity.BROKEN, "not trusted")
    assert health.verdict == Verdict.BROKEN
    assert health.reasons == ["not trusted", "mailbox Bob fails: 401"]
    assert health.facts()["health_verdict"] == "broken"


def test_an_empty_health_is_ok_and_renders() -> None:
    health = Health("contoso")
    assert health.verdict == Verdict.OK
    assert "Every check is ok." in health._repr_html_()


def test_days_are_counted_to_the_published_dates() -> None:
    end = dt.datetime(2026, 12, 12, 9, 30, tzinfo=dt.UTC)
    m = Milestones(TODAY, end)
    assert m.days_to_certificate_expiry == 10
    assert m.days_to_end_of_support == m.days_to_ews_end == (dt.date(2027, 4, 1) - TODAY).days == 120
    assert days_until(None, TODAY) is None
    assert days_until(dt.date(2026, 11, 30), TODAY) == -2


def test_a_certificate_is_ok_needs_action_or_is_broken_by_its_days_left() -> None:
    def sev(days: int) -> Severity:
        end = dt.datetime.combine(TODAY, dt.time(12), dt.UTC) + dt.timedelta(days=days)
        return expiry_check("configuration database", "certificate", end, TODAY, 30).severity

    assert sev(31) == Severity.OK
    assert sev(30) == sev(10) == sev(0) == Severity.ACTION
    assert sev(-1) == Severity.BROKEN
    unknown = expiry_check("configuration database", "certificate", None, TODAY, 30)
    assert unknown.severity == Severity.ACTION and "cannot be read" in unknown.reason


def _chain(health: Health, *, certificate: bool, tenant_id: bool, profile: bool) -> None:
    broken = Severity.BROKEN
    health.checks.append(Check("deployment", "configuration database", "S2STokenIssuer certificate",
                               "until 2027-12-01" if certificate else "none",
                               Severity.OK if certificate else broken, "" if certificate else "none recorded",
                               link=True, absent=not certificate))
    health.checks.append(Check("organization", "configuration database", "contoso S2STenantId",
                               "8f0c" if tenant_id else "not set", Severity.OK if tenant_id else broken,
                               "" if tenant_id else "not set", link=True, absent=not tenant_id))
    health.checks.append(Check("email", "email server profile", "status", "active" if profile else "inactive",
                               Severity.OK if profile else broken, "" if profile else "inactive",
                               link=True, absent=not profile))


def test_nothing_of_the_chain_left_is_not_set_up_not_broken() -> None:
    health = Health("contoso")
    _chain(health, certificate=False, tenant_id=False, profile=False)
    health.add("deployment", "CRM01", "psbridge uploads", "1 PFX file", Severity.ACTION, "remove the PFX")
    assert health.verdict == Verdict.NOT_SET_UP and health.facts()["health_verdict"] == "not set up"
    first, *rest = health.reasons
    assert first.startswith("server-side sync with Exchange Online is not set up for contoso")
    assert "S2STokenIssuer certificate: none" in first and "contoso S2STenantId: not set" in first
    assert rest == ["remove the PFX"]  # what needs action still; the absences are not repairs to make


def test_a_link_still_there_or_a_real_failure_is_broken() -> None:
    half = Health("contoso")  # a decommission stopped half way: the certificate is still recorded
    _chain(half, certificate=True, tenant_id=False, profile=False)
    assert half.verdict == Verdict.BROKEN and half.reasons == ["not set", "inactive"]
    failing = Health("contoso")  # nothing set up, and a mailbox still failing on its own: broken, said
    _chain(failing, certificate=False, tenant_id=False, profile=False)
    failing.add("email", "mailboxes", "mailbox Bob", "failure", Severity.BROKEN, "mailbox Bob fails: 401")
    assert failing.verdict == Verdict.BROKEN and "mailbox Bob fails: 401" in failing.reasons
    working = Health("contoso")
    _chain(working, certificate=True, tenant_id=True, profile=True)
    assert working.verdict == Verdict.OK
