"""Test & Enable as CRM's Asynchronous Processing Service runs it: later, and only over a working chain.

A mailbox scheduled for Test & Enable (``testemailconfigurationscheduled``) is tested once its
time has come. The test succeeds only if everything server-to-server authentication rests on
holds in the lab world, checked in the order a real connection meets it:

1. the mailbox's email server profile is Exchange Online (Hybrid) with server-to-server
   authentication, and the mailbox is approved where the organization requires it;
2. the deployment's ServerSettings name the S2S authorization server, and the configuration
   database holds an ``S2STokenIssuer`` certificate;
3. every server running the Asynchronous Processing Service has that certificate, with its
   private key, readable by the service account;
4. the organization's ``S2STenantId`` (or the profile's own tenant id) is the tenant's;
5. the Dynamics CRM service principal in the tenant trusts the certificate (a key credential
   with its thumbprint, not expired);
6. Exchange Online lets the tenant in (the allow-list Microsoft requires since 1 October 2025,
   a lab knob);
7. the mailbox's address exists in Exchange Online (the tenant's domain).

The first link that fails is the failure the mailbox reports: its statuses say Failure and an
error trace (``tracelog``, regarding the mailbox) carries the reason, worded as CRM's alerts
are. Plain functions over the world's data and the tenant's directory: no sockets, no clock
but the one handed in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psbridge.lab.webapi.records import iso

CRM_APP_ID = "00000007-0000-0000-c000-000000000000"
ASYNC_ROLE = "asynchronousprocessingservice"
EXCHANGE_ONLINE_HYBRID = 3
SERVER_TO_SERVER = 2
SERVER_SIDE_SYNC = 2  # incoming/outgoing delivery method
ACT_SERVER_SIDE_SYNC = 1  # appointments, contacts and tasks: a different code


def _records(org: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(org["crm"]["records"].get(name, []))


def _by_id(org: dict[str, Any], name: str, key: str, rid: str | None) -> dict[str, Any] | None:
    return next((r for r in _records(org, name) if rid and str(r[key]).lower() == str(rid).lower()), None)


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def chain_problem(world: dict[str, Any], org: dict[str, Any], mailbox: dict[str, Any],
                  directory: dict[str, Any] | None, allow_listed: bool, now: float,
                  service_account: str) -> str | None:
    """Why Test & Enable fails for ``mailbox`` now (the first broken link), or None: it succeeds."""
    name = mailbox.get("name") or mailbox.get("emailaddress") or mailbox["mailboxid"]
    profile = _by_id(org, "emailserverprofiles", "emailserverprofileid",
                     (mailbox.get("emailserverprofile") or {}).get("id"))
    if profile is None:
        return (f"Email cannot be received or sent for the mailbox {name} because it has no email server "
                "profile. Associate the mailbox with an email server profile, then test and enable it again.")
    if profile.get("statecode", 0) != 0:
        return f"The email server profile {profile['name']} of the mailbox {name} is inactive."
    if profile.get("servertype") != EXCHANGE_ONLINE_HYBRID or SERVER_TO_SERVER not in (
            profile.get("incomingcredentialretrieval"), profile.get("outgoingcredentialretrieval")):
        return (f"Email cannot be received or sent for the mailbox {name}: the email server profile "
                f"{profile['name']} is not an Exchange Online (Hybrid) profile with server-to-server "
                "authentication.")
    settings = org["crm"]["records"]["organizations"][0]
    regarding = (mailbox.get("regardingobjectid") or {}).get("type")
    flag = "requireapprovalforqueueemail" if regarding == "queue" else "requireapprovalforuseremail"
    needs = settings.get(flag)
    if needs and mailbox.get("emailrouteraccessapproval") != 1:
        return (f"The email address of the mailbox {name} has not been approved. Approve the email address "
                "(Approve Email), then test and enable the mailbox again.")
    deployment = world["deployment"]
    server = deployment["server_settings"]
    if not server.get("S2SDefaultAuthorizationServerPrincipalId") or not server.get(
            "S2SDefaultAuthorizationServerMetadataUrl"):
        return ("Server-to-server authentication is not configured for this deployment: ServerSettings "
                "S2SDefaultAuthorizationServerPrincipalId and S2SDefaultAuthorizationServerMetadataUrl must "
                "be "
                "set (ConfigureCrmServerSideSync.ps1).")
    issuers = [c for c in deployment["certificates"] if c.get("certificate_type") == "S2STokenIssuer"]
    if not issuers:
        return ("The S2STokenIssuer certificate is not registered in the CRM configuration database "
                "(CertificateReconfiguration.ps1 -updateCrm).")
    thumb = str(issuers[-1]["thumbprint"]).upper()
    for s in world["servers"]:
        if not any(ASYNC_ROLE in r.lower().replace(" ", "") for r in s["roles"]):
            continue
        entry = next((c for c in s["store"] if str(c["thumbprint"]).upper() == thumb), None)
        if entry is None:
            return (f"The server-to-server authentication certificate {thumb} was not found in the "
                    f"LocalMachine\\My store of {s['name']}, which runs the Asynchronous Processing Service.")
        readers = [r.lower() for r in entry.get("key_readers", [])]
        if not entry.get("has_private_key") or service_account.lower() not in readers:
            return (f"The server-to-server authentication certificate {thumb} could not be used on "
                    f"{s['name']}: "
                    f"Keyset does not exist. The account that runs the Asynchronous Processing Service "
                    f"({service_account}) must be able to read its private key.")
    if directory is None:
        return ("The Microsoft Entra ID endpoint could not be reached from the server (no route to "
                "login.microsoftonline.com).")
    tenant_id = str(directory["tenant"]["id"])
    tenant = str(org["settings"].get("S2STenantId") or "")
    if not profile.get("usedefaulttenantid", True):
        tenant = str(profile.get("exchangeonlinetenantid") or "")
    if tenant.lower() != tenant_id.lower():
        shown = tenant or "not set"
        return (f"Email cannot be received for the mailbox {name} because the Exchange Online tenant id of "
                f"the organization ({shown}) is not the tenant {tenant_id}: AADSTS90002: Tenant '{shown}' "
                "not "
                "found. Set S2STenantId (Set-CrmAdvancedSetting) and test the mailbox again.")
    crm_sp = next((sp for sp in directory["servicePrincipals"] if sp["appId"] == CRM_APP_ID), None)
    trusted = [k for k in (crm_sp or {}).get("keyCredentials", [])
               if str(k.get("customKeyIdentifier") or "").upper() == thumb]
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if not any((_parse(k.get("endDateTime")) or moment) >= moment for k in trusted):
        return (f"Email cannot be received for the mailbox {name} because an authentication failure occurred "
                "while connecting to Exchange Online. The remote server returned an error: (401) "
                "Unauthorized. "
                "AADSTS700027: The certificate with identifier used to sign the client assertion is not "
                f"registered on application. [Thumbprint of key used by client: '{thumb}'] Make sure the "
                "certificate is a key credential of the Dynamics CRM service principal "
                f"({CRM_APP_ID}).")
    if not allow_listed:
        return (f"Exchange Online refused the connection for the mailbox {name}: The remote server returned "
                "an "
                "error: (403) Forbidden. Since 1 October 2025 Exchange Online connects Dynamics 365 "
                "(on-premises) only for tenants that Exchange Support has allow-listed; the tenant's "
                "Exchange "
                f"Online administrator must request it for tenant {tenant_id}.")
    address = str(mailbox.get("emailaddress") or "")
    domain = str(directory["tenant"]["domain"]).lower()
    if not address.lower().endswith("@" + domain):
        return (f"The mailbox {address or name} was not found in Exchange Online: The SMTP address has no "
                "mailbox associated with it (ErrorNonExistentMailbox).")
    return None


def due(world: dict[str, Any], now: float) -> bool:
    return any(m.get("_test_due") is not None and m["_test_due"] <= now
               for org in world["organizations"] if "crm" in org
               for m in org["crm"]["records"].get("mailboxes", []))


def run_due(world: dict[str, Any], directory: dict[str, Any] | None, allow_listed: bool, now: float,
            service_account: str, machine: str) -> list[str]:
    """Finish every Test & Enable whose time has come (changes ``world`` in place); their mailbox ids."""
    done = []
    for org in world["organizations"]:
        if "crm" not in org:
            continue
        traces = org["crm"]["records"].setdefault("tracelogs", [])
        for box in org["crm"]["records"].get("mailboxes", []):
            when = box.get("_test_due")
            if when is None or when > now:
                continue
            problem = chain_problem(world, org, box, directory, allow_listed, now, service_account)
            status = 2 if problem else 1
            tested = {
                "incomingemailstatus": box.get("incomingemaildeliverymethod") == SERVER_SIDE_SYNC,
                "outgoingemailstatus": box.get("outgoingemaildeliverymethod") == SERVER_SIDE_SYNC,
                "actstatus": box.get("actdeliverymethod") == ACT_SERVER_SIDE_SYNC,
            }
            for field, applies in tested.items():
                box[field] = status if applies else 0
            box["mailboxstatus"] = status
            box["testemailconfigurationscheduled"] = False
            box["testmailboxaccesscompletedon"] = iso(now)
            if problem:
                tries = int(box.get("testemailconfigurationretrycount") or 0)
                box["testemailconfigurationretrycount"] = tries + 1
            box.pop("_test_due", None)
            box["versionnumber"] = int(box.get("versionnumber") or 0) + 1
            box["modifiedon"] = iso(now)
            text = problem or (f"The mailbox {box.get('name')} was tested and enabled for server-side "
                               "synchronization: incoming email, outgoing email, appointments, contacts "
                               "and tasks.")
            traces.append({
                "tracelogid": str(uuid.uuid4()), "text": text[:2000], "level": 3 if problem else 1,
                "tracecode": 1 if problem else 0, "machinename": machine,
                "regardingobjectid": {"id": box["mailboxid"], "type": "mailbox"}, "createdon": iso(now),
            })
            done.append(box["mailboxid"])
    return done
