"""The S2S certificate renewed the way Microsoft documents it, without a moment where CRM signs untrusted.

1. a new certificate with a unique subject (a CA-issued PFX, or a self-signed one made once and kept
   beside the first as ``s2s-renewal.pfx``, its password at ``new_pfx_password``);
2. installed on every async server as ``AlternativeS2STokenIssuer``, ``-updateCrm`` once;
3. trusted by the Dynamics CRM service principal (a new key credential) — before CRM signs with it;
4. the switch: ``CertificateReconfiguration.ps1 -certificateType S2STokenIssuer -updateCrm`` with the
   new PFX on the Deployment Tools server makes it the one CRM signs with; the alternative entry, now
   the same certificate, leaves the configuration database;
5. the old certificate leaves every server's store and the service principal;
6. every mailbox on the profile is tested again (Test & Enable).

Each step reads the world first and does only what is not done (a server already holding the new
certificate, a key credential already there, a switch already made), and every change is journalled
first, so a run killed at any point resumes with nothing done twice. SharePoint server-based
integration signs with the same S2STokenIssuer certificate: the plan says so before anything changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psbridge import certs, secrets
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    Action,
    StepError,
    graph_client,
    norm_thumbprint,
    sign_in,
    sweep_leftovers,
    web_api,
    web_api_target,
)

if TYPE_CHECKING:
    from psbridge.cloud import GraphClient
    from psbridge.crm import CrmCertificate
    from psbridge.crm.webapi import WebApi

__all__ = [
    "ALTERNATIVE",
    "ISSUER",
    "SHAREPOINT",
    "current",
    "graph_client",
    "install_alternative",
    "new_certificate",
    "retest_mailboxes",
    "retire_in_entra",
    "retire_on_servers",
    "sign_in",
    "sweep_leftovers",
    "switch",
    "trust_new",
    "web_api",
    "web_api_target",
]

ISSUER = "S2STokenIssuer"
ALTERNATIVE = "AlternativeS2STokenIssuer"
RENEWAL_PFX = "s2s-renewal.pfx"
SHAREPOINT = ("SharePoint server-based integration, where it is used, signs with this same "
              "S2STokenIssuer certificate: once the switch is made it signs with the new one, and SharePoint "
              "must trust it too (its trusted token issuer); plan that change with the SharePoint "
              "administrator.")


def _recorded(dep: Deployment, kind: str) -> CrmCertificate | None:
    from psbridge.crm import crm_certificates

    found = crm_certificates(dep.session(dep.deployment_server), kind)
    return found[0] if found else None


def current(dep: Deployment) -> dict[str, str]:
    """The configuration database's certificates by type: what CRM signs with, and a renewal in flight."""
    issuer, alternative = _recorded(dep, ISSUER), _recorded(dep, ALTERNATIVE)
    if issuer is None:
        raise StepError(f"the configuration database holds no {ISSUER} certificate: there is nothing to "
                        "renew (set up server-side sync with exchange-online-s2s)")
    return {ISSUER: issuer.thumbprint, ALTERNATIVE: alternative.thumbprint if alternative else ""}


def new_certificate(dep: Deployment, customer: str, old_thumbprint: str, pfx_path: str, new_pfx_password: str,
                    days: int, *, plan: bool = False) -> tuple[certs.CertificateInfo | None, Path, Action]:
    """The renewal certificate: a given PFX validated, or a self-signed one made once and reused on resume."""
    old = norm_thumbprint(old_thumbprint)
    if pfx_path:
        path = Path(pfx_path).expanduser()
        info = certs.validate_pfx(path, secrets.resolve(new_pfx_password))
        if info.thumbprint == old:
            raise StepError(f"{path} holds the certificate CRM signs with now ({old}): give the new one")
        return info, path, Action([], plan)
    path = dep.work_dir(customer) / RENEWAL_PFX
    if path.exists():
        kept: certs.CertificateInfo | None
        try:
            kept = certs.inspect_pfx(path, secrets.resolve(new_pfx_password))
        except (secrets.SecretError, certs.CertificateError):
            kept = None
        # Made by this renewal (a resume): kept. The one a finished renewal made is now the old one.
        if kept is not None and kept.thumbprint != old and not kept.problems():
            return kept, path, Action([], plan)
    if plan:
        return None, path, Action([f"generate a self-signed RSA 2048 certificate with a unique subject, "
                                   f"valid {days} days, at {path}"], True)
    try:
        password = secrets.resolve(new_pfx_password)
        stored: list[str] = []
    except secrets.SecretError:
        password = certs.new_pfx_password()
        secrets.store(new_pfx_password, password)  # kept before it seals anything
        stored = [f"stored a new PFX password at {new_pfx_password}"]
    kept_old = []
    if path.exists():
        # The one an earlier renewal made (CRM signs with it now): kept beside, for a roll back.
        aside = path.with_name(f"s2s-renewal-{old or 'unknown'}.pfx")
        shutil.copy2(path, aside)
        kept_old = [f"kept the earlier renewal's PFX at {aside}"]
    made = certs.generate_self_signed(dep.organization, password, days=days)
    made.write(path)
    return made.info, path, Action([f"generated a self-signed certificate {made.info.thumbprint} "
                                    f"({made.info.subject}) valid {days} days", *stored, *kept_old])


def _reconfigure(dep: Deployment, servers: list[str], pfx_file: str, password: str, kind: str) -> Action:
    from psbridge.crm import certificate_reconfiguration

    swept = sweep_leftovers(dep)
    report = certificate_reconfiguration([dep.session(s) for s in servers], Path(pfx_file), password,
                                         dep.service_account, kind, tools_folder=dep.tools_folder)
    shown: list[Any] = [report.to_table()]
    return swept + Action([f"{o.server}: {o.detail} as {kind}" for o in report.servers if o.changed], False,
                          shown)


def _order(dep: Deployment) -> list[str]:
    return [dep.deployment_server, *[s for s in dep.servers if s != dep.deployment_server]]


def install_alternative(dep: Deployment, pfx_file: str, password: str, thumbprint: str, *,
                        plan: bool = False) -> Action:
    """The new certificate on every async server as AlternativeS2STokenIssuer (``-updateCrm`` once)."""
    from psbridge.crm import store_certificates

    want = norm_thumbprint(thumbprint)
    state = current(dep)
    if state[ISSUER] == want:
        return Action([], plan, ["The switch is made already: CRM signs with the new certificate."])
    lacking = [s for s in _order(dep) if not any(c.has_private_key for c in
                                                  store_certificates(dep.session(s), thumbprint=want))]
    recorded = state[ALTERNATIVE] == want
    if not lacking and recorded:
        return Action([], plan)
    if plan:
        todo = [f"install the new certificate on {s} as {ALTERNATIVE}" for s in lacking]
        if not recorded:
            todo.append(f"record it in the configuration database as {ALTERNATIVE} (-updateCrm on "
                        f"{dep.deployment_server})")
        return Action(todo, True)
    return _reconfigure(dep, _order(dep), pfx_file, password, ALTERNATIVE)


def trust_new(graph: GraphClient, der: bytes, thumbprint: str, *, plan: bool = False) -> Action:
    """A key credential for the new certificate on the Dynamics CRM service principal (before the switch)."""
    from psbridge.cloud import read_crm_service_principal, trust_certificate

    if read_crm_service_principal(graph).has_certificate(thumbprint):
        return Action([], plan)
    if plan:
        return Action([f"add key credential {norm_thumbprint(thumbprint)} to the Dynamics CRM service "
                       "principal"], True)
    return Action(trust_certificate(graph, der))


def switch(dep: Deployment, graph: GraphClient, pfx_file: str, password: str, thumbprint: str, *,
           plan: bool = False) -> Action:
    """CRM signs with the new certificate: S2STokenIssuer is the new one, the alternative entry goes."""
    from psbridge.cloud import read_crm_service_principal
    from psbridge.crm.removal import remove_crm_certificate

    want = norm_thumbprint(thumbprint)
    state = current(dep)
    changes: list[str] = []
    if state[ISSUER] != want:
        if not read_crm_service_principal(graph).has_certificate(want) and not plan:
            raise StepError(f"the Dynamics CRM service principal does not trust {want} yet: CRM would sign "
                            "tokens Entra ID refuses. Run the trust step first (nothing was changed)")
        if plan:
            changes.append(f"make {want} the {ISSUER} certificate (CertificateReconfiguration.ps1 "
                           f"-updateCrm on {dep.deployment_server})")
        else:
            changes += _reconfigure(dep, [dep.deployment_server], pfx_file, password, ISSUER).changes
    alternative = _recorded(dep, ALTERNATIVE)
    if alternative is not None and alternative.thumbprint == want:
        changes.append(f"remove the {ALTERNATIVE} entry {want} from the configuration database (it is the "
                       f"{ISSUER} now)")
        if not plan:
            remove_crm_certificate(dep.session(dep.deployment_server), alternative)
    return Action(changes, plan)


def retire_on_servers(dep: Deployment, old_thumbprint: str, new_thumbprint: str, *,
                      plan: bool = False) -> Action:
    """The old certificate (and its private key) out of every server's store, once CRM signs with the new."""
    from psbridge.crm import store_certificates
    from psbridge.crm.removal import remove_store_certificate

    old, new = norm_thumbprint(old_thumbprint), norm_thumbprint(new_thumbprint)
    if old == new or not old:
        return Action([], plan)
    if current(dep)[ISSUER] != new and not plan:
        raise StepError(f"CRM still signs with {current(dep)[ISSUER]}: make the switch first (nothing was "
                        "changed)")
    changes = []
    for name in _order(dep):
        if store_certificates(dep.session(name), thumbprint=old):
            changes.append(f"remove the old certificate {old} and its private key from {name} "
                           "LocalMachine\\My")
            if not plan:
                remove_store_certificate(dep.session(name), old)
    return Action(changes, plan)


def retire_in_entra(graph: GraphClient, old_thumbprint: str, new_thumbprint: str, *, plan: bool = False
                    ) -> Action:
    from psbridge.cloud import read_crm_service_principal, untrust_certificate

    old = norm_thumbprint(old_thumbprint)
    if not old or old == norm_thumbprint(new_thumbprint):
        return Action([], plan)
    sp = read_crm_service_principal(graph)
    if not any((k.thumbprint or "").upper() == old for k in sp.key_credentials):
        return Action([], plan)
    if plan:
        return Action([f"remove key credential {old} from the Dynamics CRM service principal"], True)
    return Action(untrust_certificate(graph, old))


def retest_mailboxes(api: WebApi, profile_name: str, timeout: float, *, plan: bool = False) -> Action:
    """Test & Enable every mailbox on the profile again, and wait for each to report."""
    from psbridge.crm import email
    from psbridge.runbook.steps.mailboxes import wait_for_tests

    found = email.find_profiles(api, profile_name)
    if len(found) != 1:
        raise StepError(f"there is no single email server profile {profile_name!r}")
    rows = api.get_all("mailboxes", {"$select": ",".join(email.MAILBOX_ATTRIBUTES),
                                     "$filter": f"_emailserverprofile_value eq {found[0].id}"})
    boxes = [email.Mailbox.of(r) for r in rows]
    todo = [m for m in boxes if not m.scheduled]
    names = ", ".join(m.name for m in boxes)
    if plan:
        return Action([f"schedule Test & Enable for {names}"] if boxes else [], True)
    for m in todo:
        email.test_and_enable(api, m.id)
    done = wait_for_tests(api, [m.id for m in boxes], timeout)
    failed = [b.name for b in done.values() if b.failed]
    if failed:
        raise StepError("Test & Enable failed after the renewal for " + ", ".join(failed))
    return Action([f"scheduled Test & Enable for {', '.join(m.name for m in todo)}"] if todo else [], False,
                  [f"Test & Enable: {sum(1 for b in done.values() if b.enabled)} success"])
