"""The health checks themselves: each link of the S2S chain read where it lives, nothing changed.

In the order a mailbox's connection meets them: the configuration database's certificates and
``ServerSettings``, the S2S certificate on every server running the Asynchronous Processing Service
and whether the service's account may read its private key, the organization's ``S2STenantId``,
the Dynamics CRM service principal's key credentials, the email server profile and every mailbox
on it; then what should not be there: setup access left in the tenant and PFX files psbridge left
on a server. Every reader only reads (``Get-*`` cmdlets, ``certutil -store``, Graph ``GET``, Web
API ``GET``): a health run leaves the world as it found it, which its tests assert.

A reader that cannot read (a server down, the Web API refusing) says so as a broken check rather
than stopping: the verdict of an org that cannot be read is not "ok".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING

from psbridge.crm.settings import S2S_TENANT_ID
from psbridge.errors import CloudError, PsbridgeError
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import (
    WebApiTarget,
    graph_client,
    norm_thumbprint,
    sign_in,
    web_api_target,
)
from psbridge.runbook.steps.health import WARN_DAYS, Check, Severity, days_until

if TYPE_CHECKING:
    from psbridge.cloud import GraphClient
    from psbridge.crm import CrmCertificate
    from psbridge.crm.webapi import WebApi

__all__ = ["configuration_database", "email_health", "expiry_check", "graph_client", "issuer_expiry",
           "issuer_subject", "key_access", "leftovers", "server_settings", "servers", "service_principal",
           "setup_access", "sign_in", "tenant_settings", "today", "web_api_checks", "web_api_target"]

ISSUER = "S2STokenIssuer"
ALTERNATIVE = "AlternativeS2STokenIssuer"
S2S_PRINCIPAL_ID = "00000001-0000-0000-c000-000000000000"
RENEW = ("renew it (psbridge run --runbook s2s-renew-certificate): a new certificate with a unique subject, "
         "installed with "
         "CertificateReconfiguration.ps1 -certificateType AlternativeS2STokenIssuer -updateCrm on every "
         "async server, trusted by the Dynamics CRM service principal before CRM signs with it")


def _day(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d}" if moment else "?"


def certificate_end(der: bytes) -> dt.datetime | None:
    """The end of a DER certificate's validity (None when it cannot be read)."""
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


def expiry_check(where: str, what: str, end: dt.datetime | None, today: dt.date, warn_days: int,
            area: str = "deployment", *, renew: str = RENEW) -> Check:
    days = days_until(end, today)
    found = f"until {_day(end)} ({days} days left)" if days is not None else "validity unknown"
    if days is None:
        return Check(area, where, what, found, Severity.ACTION,
                     f"{where}: the {what}'s validity cannot be read")
    if days < 0:
        return Check(area, where, what, f"EXPIRED on {_day(end)}", Severity.BROKEN,
                     f"{where}: the {what} expired on {_day(end)}: server-side sync cannot sign in; {renew}")
    if days <= warn_days:
        return Check(area, where, what, found, Severity.ACTION,
                     f"{where}: the {what} expires in {days} days ({_day(end)}): {renew}")
    return Check(area, where, what, found)


def configuration_database(dep: Deployment, today: dt.date, warn_days: int = WARN_DAYS
                           ) -> tuple[list[Check], CrmCertificate | None]:
    """Every certificate recorded there, by type; the S2STokenIssuer one (what CRM signs with)."""
    from psbridge.crm import crm_certificates

    where = "configuration database"
    try:
        recorded = crm_certificates(dep.session(dep.deployment_server))
    except PsbridgeError as e:
        return [Check("deployment", where, "certificates", f"not read: {e}", Severity.BROKEN,
                      f"{where}: Get-CrmCertificate failed on {dep.deployment_server}: {e}")], None
    checks: list[Check] = []
    issuer = next((c for c in recorded if c.certificate_type.lower() == ISSUER.lower()), None)
    for c in recorded:
        what = f"{c.certificate_type} certificate {c.thumbprint}"
        end = certificate_end(c.data)
        if c.certificate_type.lower() == ALTERNATIVE.lower():
            checks.append(Check("deployment", where, what, f"until {_day(end)}", Severity.INFO,
                                f"{where}: an {ALTERNATIVE} certificate ({c.thumbprint}) is "
                                "recorded: a renewal under way, or one left half done"))
        elif c is issuer:
            checks.append(replace(expiry_check(where, what, end, today, warn_days), link=True))
        else:
            checks.append(Check("deployment", where, what, f"until {_day(end)}", Severity.INFO))
    if issuer is None:
        checks.append(Check("deployment", where, f"{ISSUER} certificate", "none", Severity.BROKEN,
                            f"{where}: no {ISSUER} certificate is recorded: CRM has nothing to sign "
                            "its tokens with (CertificateReconfiguration.ps1 -updateCrm)",
                            link=True, absent=True))
    else:
        # SharePoint server-based integration signs with the same one: a renewal or removal touches it.
        checks.append(Check("deployment", where, "shared with SharePoint integration", "the same "
                            f"{ISSUER} certificate", Severity.INFO,
                            f"{where}: SharePoint server-based integration, where it is used, signs "
                            f"with the same {ISSUER} certificate: renewing or removing it affects "
                            "SharePoint too"))
    return checks, issuer


def server_settings(dep: Deployment) -> list[Check]:
    from psbridge.crm import get_advanced_setting
    from psbridge.runbook.steps.s2s import METADATA_SETTING, PRINCIPAL_SETTING

    session = dep.session(dep.deployment_server)
    checks = []
    wanted_settings = ((PRINCIPAL_SETTING, S2S_PRINCIPAL_ID), (METADATA_SETTING, dep.cloud.acs_metadata_url))
    for setting, wanted in wanted_settings:
        now = str(get_advanced_setting(session, "ServerSettings", setting) or "")
        ok = now.lower() == wanted.lower()
        reason = "" if ok else (f"ServerSettings {setting} is {now or 'not set'}, wanted {wanted} "
                                "(ConfigureCrmServerSideSync.ps1)")
        checks.append(Check("deployment", "configuration database", f"ServerSettings {setting}",
                            now or "not set", Severity.OK if ok else Severity.BROKEN, reason, absent=not now))
    return checks


def servers(dep: Deployment, thumbprint: str, subject: str) -> list[Check]:
    """The S2S certificate in every async server's ``LocalMachine\\My``, with its private key."""
    from psbridge.crm import store_certificates

    want = norm_thumbprint(thumbprint)
    checks: list[Check] = []
    if not want:
        return checks  # no S2STokenIssuer recorded: said once, by the configuration database's check
    for name in dep.servers:
        where = f"{name} LocalMachine\\My"
        try:
            session = dep.session(name)
            found = store_certificates(session, thumbprint=want)
            same = [c for c in store_certificates(session, subject=subject) if c.thumbprint != want] \
                if subject else []
        except PsbridgeError as e:
            checks.append(Check("deployment", where, "S2S certificate", f"not read: {e}", Severity.BROKEN,
                                f"{name} cannot be read: {e}"))
            continue
        if not found:
            checks.append(Check("deployment", where, f"S2S certificate {want}", "MISSING", Severity.BROKEN,
                                f"{name} runs the Asynchronous Processing Service but lacks the S2S "
                                f"certificate {want}: install it there (CertificateReconfiguration.ps1)"))
        elif not found[0].has_private_key:
            checks.append(Check("deployment", where, f"S2S certificate {want}", "no private key",
                                Severity.BROKEN, f"{name} holds {want} without its private key: "
                                "reinstall it from the PFX (CertificateReconfiguration.ps1)"))
        else:
            checks.append(Check("deployment", where, f"S2S certificate {want}",
                                "present, with its private key"))
        if found and found[0].has_private_key:
            checks.append(key_access(dep, name, want))
        if same:
            listed = ", ".join(c.thumbprint for c in same)
            checks.append(Check("deployment", where, "subject unique", f"{len(same)} other(s): {listed}",
                                Severity.ACTION, f"{name} holds other certificates with the subject "
                                f"{subject!r} ({listed}): CertificateReconfiguration.ps1 fails with "
                                "'Private key not found' until they are removed"))
    return checks


def key_access(dep: Deployment, name: str, thumbprint: str) -> Check:
    """On one server: may the async services' account read the S2S certificate's private key?"""
    from psbridge.crm import keyaccess

    where, what = f"{name} LocalMachine\\My", "service account key access"
    try:
        session = dep.session(name)
        accounts = sorted({a for a in keyaccess.service_accounts(session).values() if a}, key=str.lower)
        if not accounts:
            return Check("deployment", where, what, "not read", Severity.INFO,
                         f"{name}: no {keyaccess.ASYNC_SERVICES[0]} service (Win32_Service) names "
                         f"the account it runs as: whether it may read the key of {thumbprint} is not read")
        rules = keyaccess.key_rules(session, keyaccess.key_file(session, thumbprint))
    except PsbridgeError as e:
        # The ACL cannot be read (certutil names no file, Get-Acl refused): say so, do not guess.
        return Check("deployment", where, what, "not read", Severity.INFO,
                     f"{name}: whether the Asynchronous Processing Service's account may read the key of "
                     f"{thumbprint} is not read: {e}")
    found = [keyaccess.key_access(a, rules, name) for a in accounts]
    said = {True: "may read", False: "may not read", None: "?"}
    shown = "; ".join(f"{a.account}: {said[a.may_read]}" for a in found)
    refused = [a for a in found if a.may_read is False]
    if refused:
        names = ", ".join(a.account for a in refused)
        return Check("deployment", where, what, shown, Severity.BROKEN,
                     f"{name}: {names} (the Asynchronous Processing Service's account) may not read "
                     f"the private key of the S2S certificate {thumbprint} ({refused[0].why}): Test & "
                     "Enable of a mailbox fails with 'Keyset does not exist'; run "
                     "CertificateReconfiguration.ps1 there again, or grant the account read on the key")
    unknown = [a for a in found if a.may_read is None]
    if unknown:
        return Check("deployment", where, what, "not read", Severity.INFO,
                     f"{name}: whether {unknown[0].account} may read the key of {thumbprint} is not read: "
                     f"{unknown[0].why}")
    return Check("deployment", where, what, shown)


def leftovers(dep: Deployment) -> list[Check]:
    from psbridge.crm import UPLOAD_FOLDER, find_leftovers

    checks = []
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        found = find_leftovers(dep.session(name))
        if found:
            checks.append(Check("deployment", f"{name} {UPLOAD_FOLDER}", "psbridge leftovers",
                                "; ".join(str(f.path) for f in found), Severity.ACTION,
                                f"{name}: {len(found)} PFX file(s) (a private key) left in "
                                f"{UPLOAD_FOLDER} by a run that did not finish: any psbridge run that "
                                "changes things removes them, or delete them"))
        else:
            checks.append(Check("deployment", f"{name} {UPLOAD_FOLDER}", "psbridge leftovers", "none"))
    return checks


def tenant_settings(dep: Deployment, tenant_id: str) -> tuple[list[Check], str]:
    """The organization's ``S2STenantId`` against the tenant's id; and the organization's id."""
    from psbridge.crm import get_advanced_setting, get_organization

    session = dep.session(dep.deployment_server)
    org = get_organization(session, dep.organization)
    now = str(get_advanced_setting(session, "Organization", S2S_TENANT_ID, org.id) or "")
    ok = bool(now) and now.lower() == tenant_id.lower()
    reason = "" if ok else (f"{org.unique_name} {S2S_TENANT_ID} is {now or 'not set'}, but the tenant is "
                            f"{tenant_id}: Exchange Online refuses the mailboxes (Set-CrmAdvancedSetting)")
    return [Check("organization", "configuration database", f"{org.unique_name} {S2S_TENANT_ID}",
                  now or "not set", Severity.OK if ok else Severity.BROKEN, reason, link=True,
                  absent=not now)], str(org.id)


def service_principal(graph: GraphClient, thumbprint: str, today: dt.date, warn_days: int = WARN_DAYS
                      ) -> list[Check]:
    """The Dynamics CRM service principal: does it trust CRM's certificate, and what else it holds."""
    from psbridge.cloud import read_crm_service_principal
    from psbridge.cloud.crm_sp import CRM_APP_ID

    where = "Dynamics CRM service principal"
    try:
        sp = read_crm_service_principal(graph)
    except CloudError as e:
        return [Check("tenant", where, "key credentials", f"not read: {e}", Severity.BROKEN, f"{where}: {e}")]
    want = norm_thumbprint(thumbprint)
    checks = []
    matching = [k for k in sp.key_credentials if (k.thumbprint or "").upper() == want]
    if want and not matching:
        checks.append(Check("tenant", where, f"key credential {want}", "MISSING", Severity.BROKEN,
                            f"the {where} does not trust the S2S certificate {want} (no key credential "
                            "with its thumbprint): Entra ID refuses CRM's tokens (AADSTS700027); add it "
                            "(ConfigureCrmServerSideSync.ps1, or psbridge's configure-s2s step)"))
    for k in matching:
        checks.append(expiry_check(where, f"key credential {want}", k.end, today, warn_days, "tenant"))
    for k in sp.key_credentials:
        if k in matching:
            continue
        shown = k.thumbprint or k.key_id
        if k.expired:
            checks.append(Check("tenant", where, f"key credential {shown}", f"expired on {_day(k.end)}",
                                Severity.ACTION,
                                f"the {where} keeps an expired key credential {shown}: remove it"))
        else:
            checks.append(Check("tenant", where, f"key credential {shown}", f"until {_day(k.end)}, not CRM's "
                                "certificate", Severity.INFO,
                                f"the {where} also trusts {shown}, which is not CRM's certificate (another "
                                "deployment's, or one replaced and not removed)"))
    if CRM_APP_ID not in sp.service_principal_names:
        checks.append(Check("tenant", where, "servicePrincipalNames", ", ".join(sp.service_principal_names),
                            Severity.BROKEN, f"the {where}'s servicePrincipalNames lack {CRM_APP_ID}"))
    return checks


def setup_access(graph: GraphClient, app_name: str) -> list[Check]:
    """The setup app: its client secret and consent should be gone; the app may go too."""
    from psbridge.cloud import get_app
    from psbridge.cloud import setup_access as left_of

    where = f"app registration {app_name!r}"
    app = get_app(graph, app_name)
    if app is None:
        return [Check("tenant", where, "setup app", "not registered")]
    left = left_of(graph, app)
    checks = [Check("tenant", where, "setup app", f"registered ({app.app_id})", Severity.INFO,
                    f"the setup app {app_name!r} ({app.app_id}) is still registered: only the setup "
                    "needed it; it can be deleted")]
    if left:
        checks.append(Check("tenant", where, "setup access", "; ".join(left), Severity.ACTION,
                            f"the setup app {app_name!r} still holds {'; '.join(left)}: a standing "
                            "risk for an app allowed Application.ReadWrite.All; remove them "
                            "(configure-s2s with teardown, or the Entra admin center)"))
    else:
        checks.append(Check("tenant", where, "setup access", "no client secret, no consent"))
    return checks


def email_health(api: WebApi, profile_name: str) -> list[Check]:
    """The profile (active, its last test) and every mailbox on it, with the server's message."""
    from psbridge.crm import email

    where = f"email server profile {profile_name!r}"
    found = email.find_profiles(api, profile_name)
    if not found:
        return [Check("email", where, "exists", "MISSING", Severity.BROKEN,
                      f"there is no {where}: no mailbox can synchronize (run exchange-online-s2s step 60)",
                      link=True, absent=True)]
    if len(found) > 1:
        return [Check("email", where, "exists", f"{len(found)} with this name", Severity.ACTION,
                      f"{len(found)} profiles are named {profile_name!r}: keep one")]
    profile = found[0]
    # An inactive profile is what a decommission leaves: this link is switched off, not there.
    checks = [Check("email", where, "status", "active" if profile.active else "inactive",
                    Severity.OK if profile.active else Severity.BROKEN,
                    "" if profile.active else f"the {where} is inactive: its mailboxes do not synchronize",
                    link=True, absent=not profile.active)]
    last = profile.values.get("lasttestexecutionstatus")
    said = str(profile.values.get("lastcrmmessage") or "")
    if last == 0:
        checks.append(Check("email", where, "last test", f"failure: {said}", Severity.ACTION,
                            f"the {where}'s last test failed: {said or 'no message'}"))
    else:
        shown = {1: "success", 2: "warning"}.get(last if isinstance(last, int) else -1, "not run")
        checks.append(Check("email", where, "last test", shown + (f": {said}" if said else "")))
    boxes = api.get_all("mailboxes", {"$select": ",".join(email.MAILBOX_ATTRIBUTES),
                                      "$filter": f"_emailserverprofile_value eq {profile.id}"})
    mailboxes = [email.Mailbox.of(r) for r in boxes]
    failed = [m for m in mailboxes if m.failed]
    for m in mailboxes:
        what = f"mailbox {m.name} <{m.address}>"
        statuses = (f"incoming {email.label(email.TestStatus, m.incoming_status)}, outgoing "
                    f"{email.label(email.TestStatus, m.outgoing_status)}, appointments/contacts/tasks "
                    f"{email.label(email.TestStatus, m.act_status)}")
        if m.failed:
            alert = email.last_alert(api, m.id)
            severity = Severity.BROKEN if len(failed) == len(mailboxes) else Severity.ACTION
            checks.append(Check("email", "mailboxes", what, f"failure ({statuses})", severity,
                                f"mailbox {m.name} fails: {alert or 'the server gave no reason'}"))
        elif m.scheduled:
            checks.append(Check("email", "mailboxes", what, "Test & Enable running", Severity.INFO))
        elif m.enabled:
            checks.append(Check("email", "mailboxes", what, f"success ({statuses})"))
        else:
            checks.append(Check("email", "mailboxes", what, f"not enabled ({statuses})", Severity.INFO,
                                f"mailbox {m.name} is on the profile but not tested and enabled"))
    if not mailboxes:
        checks.append(Check("email", "mailboxes", "on the profile", "none", Severity.INFO,
                            f"no mailbox uses the {where}"))
    return checks


def issuer_expiry(issuer: CrmCertificate | None) -> dt.datetime | None:
    return certificate_end(issuer.data) if issuer is not None else None


def issuer_subject(issuer: CrmCertificate | None) -> str:
    """The subject as Windows writes it (what the servers' stores are searched by), or ""."""
    from cryptography import x509

    from psbridge.crm.validation import subject_as_windows

    if issuer is None:
        return ""
    try:
        return subject_as_windows(x509.load_der_x509_certificate(issuer.data).subject)
    except ValueError:
        return ""


def web_api_checks(dep: Deployment, target: WebApiTarget, profile_name: str) -> list[Check]:
    """:func:`email_health` over a Web API connection of its own; a refusal is a broken check."""
    from psbridge.crm.webapi import WebApiError
    from psbridge.runbook.steps.common import web_api

    try:
        api = web_api(dep, target)
    except WebApiError as e:
        return [Check("email", "CRM Web API", "sign-in", str(e), Severity.BROKEN, f"the CRM Web API: {e}")]
    try:
        return email_health(api, profile_name)
    except WebApiError as e:
        return [Check("email", "CRM Web API", "email configuration", str(e), Severity.BROKEN,
                      f"the CRM Web API: {e}")]
    finally:
        api.close()


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
