"""The summary — everything the runbook set, read again where it lives, beside the recorded facts:
servers, configuration database, tenant, and the organization's email server profile and mailboxes.

Read-only, but for one thing: a PFX an interrupted run left in a server's upload folder is
removed here too (the last chance within the run), and the record says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    WebApiTarget,
    certificate_for,
    discover_tenant_id,
    graph_client,
    sign_in,
    sweep_leftovers,
    web_api,
    web_api_target,
)
from psbridge.runbook.steps.install import certificate_state
from psbridge.runbook.steps.s2s import s2s_state, setup_access_left
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FinalState", "Recorded", "certificate_for", "discover_tenant_id", "email_rows", "final_state",
           "recorded", "sweep_leftovers", "web_api_target"]


@dataclass
class Recorded:
    """The facts the steps recorded, as one table."""

    facts: dict[str, Any]

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"fact": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
                for k, v in self.facts.items()]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), ["fact", "value"])

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), ["fact", "value"])


def recorded(**facts: Any) -> Recorded:
    return Recorded(facts)


@dataclass(frozen=True)
class FinalRow:
    where: str
    state: str
    ok: bool


@dataclass
class FinalState:
    rows: list[FinalRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"where": r.where, "state": r.state, "ok": r.ok} for r in self.rows]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), ["where", "state", "ok"])

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), ["where", "state", "ok"])

    def __repr__(self) -> str:
        return "\n".join(f"{'ok' if r.ok else 'NO'}  {r.where}: {r.state}" for r in self.rows)


def final_state(dep: Deployment, admin_account: str, thumbprint: str, tenant_id: str, app_name: str = "",
                teardown: bool = True) -> FinalState:
    """One table of everything the runbook set, read again where it lives."""
    from psbridge.crm import find_leftovers

    final = FinalState()
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        leftovers = find_leftovers(dep.session(name))
        final.rows.append(FinalRow(f"{name} psbridge upload folder",
                                   "; ".join(str(x.path) for x in leftovers) or "empty (no PFX left behind)",
                                   not leftovers))
    certificate = certificate_state(dep, thumbprint)
    for s in certificate.servers:
        final.rows.append(FinalRow(f"{s.server} LocalMachine\\My",
                                   "certificate present" if s.present else "certificate MISSING", s.present))
    final.rows.append(FinalRow("CRM configuration database (S2STokenIssuer)",
                               "certificate recorded" if certificate.in_database else "certificate MISSING",
                               certificate.in_database))
    graph = graph_client(dep, sign_in(dep, admin_account))
    for w in s2s_state(dep, graph, thumbprint, tenant_id).rows:
        final.rows.append(FinalRow(w.what, w.now, w.ok))
    if app_name:
        left = setup_access_left(graph, app_name)
        final.rows.append(FinalRow(f"setup access of {app_name!r} (client secret, consent)",
                                   "; ".join(left) or "removed", not (left and teardown)))
    return final


def email_rows(dep: Deployment, target: WebApiTarget, profile_name: str, mailboxes: list[str] | None = None,
               mailbox_filter: str = "") -> list[FinalRow]:
    """The email server profile, the organization's email settings and every chosen mailbox, read again."""
    from psbridge.crm.webapi import WebApiError
    from psbridge.runbook.steps.email_profile import profile_state
    from psbridge.runbook.steps.mailboxes import mailboxes_state

    try:
        api = web_api(dep, target)
    except WebApiError as e:
        return [FinalRow("CRM Web API", str(e), False)]
    try:
        rows = [FinalRow(w.what, w.now, w.ok) for w in profile_state(api, profile_name).rows]
        state = mailboxes_state(api, profile_name, mailboxes, mailbox_filter)
        for r in state.rows:
            d = r.as_dict()
            said = (f"test {d['test']} (incoming {d['incoming status']}, outgoing {d['outgoing status']}, "
                    f"appointments/contacts/tasks {d['ACT status']}); approval {d['approval']}")
            if r.alert:
                said += f": {r.alert}"
            rows.append(FinalRow(f"mailbox {d['mailbox']} <{d['address']}>", said, r.ok))
        rows += [FinalRow("mailboxes", p, False) for p in state.problems]
        return rows
    except WebApiError as e:
        return [FinalRow("CRM Web API", str(e), False)]
    finally:
        api.close()
