"""Write the step notebooks of the exchange-online-s2s runbook (stored without outputs).

    python notebooks/_generate.py          # rewrite notebooks/*.ipynb
    python notebooks/_generate.py --check  # exit 1 if a notebook differs from what this writes

Each notebook: markdown that explains the step (purpose, prerequisites, what changes where,
how to roll it back), a cell tagged ``parameters`` whose defaults target the lab (papermill
``--help-notebook`` reads each line's comment), then short calls into psbridge that show the
before state, the action and the after state, and the facts it records for later steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

# name -> (annotation, default source, help)
P = {
    "customer": ("str", '"demo"', "short name of the customer; records go to records/<customer>/<organization>/"),
    "organization": ("str", '"contoso"', "CRM organization unique name"),
    "lab": ("str", '"auto"', "'auto': the running lab (PSBRIDGE_LAB_STATE); '' for a real deployment"),
    "servers": ("list", "[]", "async servers, each 'NAME https://host:5986/wsman' (lab: names; []: all)"),
    "deployment_server": ("str", '""', "server with the Deployment Tools role (default: the first)"),
    "winrm_scheme": ("str", '"http"', "http (NTLM/Kerberos message encryption) or https"),
    "winrm_user": ("str", '""', "DOMAIN\\\\user: local administrator and CRM deployment administrator"),
    "winrm_password": ("str", '"lab:accounts/crmadmin"', "secret reference of that account's password"),
    "ca_bundle": ("str", '""', "CA bundle for the servers' WinRM HTTPS certificates"),
    "tools_folder": ("str", 'r"C:\\Program Files\\Microsoft Dynamics CRM\\Tools"', "CRM Tools folder on the servers"),
    "service_account": ("str", '""', "CRM Asynchronous Processing Service identity (lab: from lab.json)"),
    "pfx_path": ("str", '""', "a CA-issued PFX to use; '': generate a self-signed certificate"),
    "pfx_password": ("str", '"lab:demo/contoso/pfx-password"', "secret reference of the PFX password"),
    "certificate_days": ("int", "365", "lifetime of a generated certificate, in days"),
    "replace_certificate": ("str", '""', "why a kept certificate that no longer opens may be replaced ('': never)"),
    "cloud": ("str", '"lab"', "Entra ID cloud: lab, global, usgov, usgov-dod, china"),
    "tenant": ("str", '""', "tenant domain or GUID ('' in the lab: the twin's tenant)"),
    "admin_account": ("str", '""', "administrator who signs in with a device code"),
    "app_name": ("str", '"psbridge server-side sync"', "display name of the app registration"),
    "redirect_uri": ("str", '"https://localhost/psbridge"', "redirect URI of the app registration"),
    "client_secret": ("str", '"lab:demo/contoso/client-secret"', "secret reference where the client secret is stored"),
    "client_secret_days": ("int", "180", "client secret lifetime in days (at most 730)"),
    "teardown": ("bool", "True", "after step 4, remove the setup client secret and consent (the app stays)"),
    # facts from earlier steps ('' / [] = not given: the step finds them itself)
    "organization_id": ("str", '""', "fact from 00-preflight: the organization's GUID"),
    "async_servers": ("list", "[]", "fact from 00-preflight: servers running the async service"),
    "pfx_file": ("str", '""', "fact from 10-certificate: local path of the PFX"),
    "thumbprint": ("str", '""', "fact from 10-certificate: SHA-1 thumbprint"),
    "certificate_subject": ("str", '""', "fact from 10-certificate: the certificate's subject"),
    "certificate_not_after": ("str", '""', "fact from 10-certificate: end of validity"),
    "installed_on": ("list", "[]", "fact from 20-install-certificate"),
    "app_id": ("str", '""', "fact from 30-entra-app: application (client) id"),
    "tenant_id": ("str", '""', "fact from 30-entra-app: tenant GUID"),
    "client_secret_ref": ("str", '""', "fact from 30-entra-app: where the client secret is"),
    "s2s_configured": ("bool", "False", "fact from 40-configure-s2s"),
    "s2s_tenant_id": ("str", '""', "fact from 50-tenant-id"),
    "setup_access_left": ("list", "[]", "fact from 40-configure-s2s: setup secret and consent still there"),
    "plan": ("bool", "False", "True: read-only, only say what would change"),
}

CONNECTION = ["lab", "servers", "deployment_server", "winrm_scheme", "winrm_user", "winrm_password", "ca_bundle",
              "tools_folder", "service_account", "cloud", "tenant"]

DEPLOYMENT = """from psbridge.runbook import record, record_changes, steps
from psbridge.runbook.deployment import Deployment

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep"""

ROLLBACK_NOTE = "Nothing to roll back: this step only reads."


def params_cell(names: list[str]) -> str:
    width = max(len(f"{n}: {P[n][0]} = {P[n][1]}") for n in names)
    lines = ["# Parameters (papermill -p NAME VALUE, -f params.yaml, or psbridge run). Secrets are references."]
    for n in names:
        ann, default, help_ = P[n]
        # papermill's --help-notebook skips a line holding a second '='
        assert "=" not in help_, n
        left = f"{n}: {ann} = {default}"
        lines.append(f"{left:<{width}}  # {help_}")
    return "\n".join(lines)


NOTEBOOKS: dict[str, dict[str, object]] = {}


def notebook(stem: str, params: list[str], cells: list[tuple[str, str]]) -> None:
    NOTEBOOKS[stem] = {"params": params, "cells": cells}


notebook("00-preflight", ["customer", "organization", *CONNECTION, "plan"], [
    ("md", """# Step 0 — Prerequisites

**Purpose.** Before anything changes, check that the runbook can do its work: a PowerShell session opens on
every CRM server that runs the Asynchronous Processing Service, the CRM snap-in loads, the two official scripts
are in the CRM Tools folder, the organization exists, the installed `ConfigureCrmServerSideSync.ps1` takes
`-ClientID`/`-ClientSecret` (older CRM 9.1 builds ship an MSOnline-era script that does not), and the Entra ID
tenant answers.

**Prerequisites.** An account that is a local administrator on the servers and a CRM deployment administrator;
WinRM reachable (5985 with message encryption, or 5986 over TLS); outbound HTTPS from the CRM servers to
Entra ID and Microsoft Graph (MSOnline is retired: Graph is the way).

**What changes where.** Nothing, anywhere. Every check is read-only.

**Roll back.** """ + ROLLBACK_NOTE),
    ("params", ""),
    ("md", "## The deployment\nServers, accounts and the cloud come from the parameters (in the lab, from `lab.json`)."),
    ("code", DEPLOYMENT),
    ("md", "## Checks\nEach row is one check; all of them run, so every problem shows at once."),
    ("code", "checks = steps.preflight(dep)\nchecks"),
    ("code", "steps.require_all(checks)  # stops the runbook here, naming each unmet prerequisite"),
    ("md", """## Leftovers of earlier runs
A PFX waits in `C:\\Windows\\Temp\\psbridge` on a server only while a script reads it. A run that was killed
in between leaves it there: it is removed now (in a plan, listed)."""),
    ("code", "cleanup = steps.sweep_leftovers(dep, plan=plan)\ncleanup"),
    ("md", "## Facts for the next steps"),
    ("code", """record("organization_id", checks.attrs["organization_id"])
record("async_servers", dep.servers)
record_changes(cleanup)"""),
])

notebook("10-certificate", ["customer", "organization", *CONNECTION, "pfx_path", "pfx_password",
                            "certificate_days", "replace_certificate", "plan"], [
    ("md", """# Step 1 — The S2S certificate

**Purpose.** The CRM asynchronous service signs its token requests to Entra ID with this certificate. It must
be RSA (at least 2048 bits) with its private key, not expired, a key usable for key exchange (KeySpec 1), and
exported as a PFX with a password. Its subject must be **unique** in each server's `LocalMachine\\My` store:
two certificates with one subject make `CertificateReconfiguration.ps1` fail with "Private key not found".

* With `pfx_path` set, the customer's CA-issued PFX is validated (every problem listed at once).
* Without it, a self-signed certificate (acceptable for evaluation) is generated once, with a unique subject,
  and kept in the organization's work folder; a re-run reuses it.
* A kept certificate that no longer opens with its password, or expires within 30 days, **stops the step**:
  a new one would be a second certificate on the servers and in Entra ID, a rotation. Set
  `replace_certificate` to the reason to make a new one anyway (the record keeps it), or renew with the
  certificate renewal runbook.

**Prerequisites.** For a provided PFX: its password at the `pfx_password` reference.

**What changes where.** Only on this machine: a new PFX file, and a new random password stored at
`pfx_password` (its value is never shown). Nothing on the servers or in the cloud.

**Roll back.** Delete the PFX file and the stored password; nothing else knows about them yet."""),
    ("params", ""),
    ("code", DEPLOYMENT),
    ("md", "## The certificate\nBefore: what is kept (or given); action: generate or validate; after: the certificate."),
    ("code", """choice = steps.ensure_certificate(dep, customer, pfx_path, pfx_password, certificate_days,
                                   replace_certificate=replace_certificate, plan=plan)
choice.changes or "already done: the kept certificate is valid and reused\""""),
    ("code", "choice"),
    ("md", "## Facts for the next steps"),
    ("code", """if choice.info is not None:
    record("pfx_file", str(choice.path))
    record("thumbprint", choice.info.thumbprint)
    record("certificate_subject", choice.info.subject)
    record("certificate_not_after", choice.info.not_after)
record_changes(choice.changes)"""),
])

notebook("20-install-certificate", ["customer", "organization", *CONNECTION, "pfx_path", "pfx_password",
                                    "async_servers", "pfx_file", "thumbprint", "certificate_subject", "plan"], [
    ("md", """# Step 2 — Install the certificate on every asynchronous server

**Purpose.** Run the official `CertificateReconfiguration.ps1` (CRM Tools folder) on **every** server that runs
the Asynchronous Processing Service, with `-certificateType S2STokenIssuer`, the service account (it is granted
read access to the private key) and `-storeFindType FindBySubjectDistinguishedName`; `-updateCrm` (record the
certificate in the CRM configuration database) only once for the deployment.

**Prerequisites.** Step 0 and step 1. The PFX travels over the PowerShell session (chunks verified by
SHA-256 on the server) to `C:\\Windows\\Temp\\psbridge` and is **always removed** afterwards.

**What changes where.** Each server's `LocalMachine\\My` store gains the certificate with its private key; the
configuration database's S2STokenIssuer certificate is replaced. A server that already has the certificate is
left alone.

**Roll back.** On each server remove the certificate from `LocalMachine\\My` (`Remove-Item
Cert:\\LocalMachine\\My\\<thumbprint>`); in CRM, `Get-CrmCertificate` then `Remove-CrmCertificate -Certificate $c`
for the S2STokenIssuer entry, or reinstall the previous certificate with `CertificateReconfiguration.ps1`."""),
    ("params", ""),
    ("code", DEPLOYMENT + """
if async_servers:
    dep.servers = list(async_servers)
cert = steps.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=not plan)
cert"""),
    ("md", "## Before"),
    ("code", "before = steps.certificate_state(dep, cert.thumbprint, cert.subject)\nbefore"),
    ("md", "## Action"),
    ("code", """action = steps.install_certificate(dep, cert.pfx_file, pfx_password, cert.thumbprint, cert.subject,
                                   plan=plan)
action"""),
    ("md", "## After"),
    ("code", """after = steps.certificate_state(dep, cert.thumbprint, cert.subject)
if not plan:
    steps.require_present(after)
after"""),
    ("code", "dep.journal()"),
    ("md", "## Facts for the next steps"),
    ("code", """record("installed_on", [s for s, ok in zip(dep.servers, after["present"]) if ok])
record_changes(action)"""),
])

notebook("30-entra-app", ["customer", "organization", *CONNECTION, "admin_account", "app_name", "redirect_uri",
                          "client_secret", "client_secret_days", "pfx_path", "pfx_password", "pfx_file",
                          "thumbprint", "plan"], [
    ("md", """# Step 3 — The app registration in Entra ID

**Purpose.** `ConfigureCrmServerSideSync.ps1` signs in to Microsoft Graph as an app (client credentials) to
trust the certificate on the Dynamics CRM service principal. This step makes that app, idempotently:
single tenant, a redirect URI, a **client secret** (its value goes straight to the `client_secret` secret
store and is never shown), Graph application permissions `Application.ReadWrite.All` and
`Organization.Read.All`, delegated `User.Read`, and **admin consent** for them.

**Prerequisites.** An Entra ID administrator who can consent to application permissions (Global or Privileged
Role Administrator). You sign in with a device code: open the address shown below and enter the code.

**What changes where.** In the tenant: the app registration, its service principal, a client secret named
"psbridge setup", required resource access, app role assignments and a delegated permission grant. On this
machine: the client secret at `client_secret`, and the sign-in's token cache.

The secret and the consent are needed once, by step 4, which removes them again afterwards (`teardown`, on
by default). So when step 4's state for this certificate is already complete (a re-run), this step adds
nothing.

**Roll back.** Delete the app registration in the Entra admin center (App registrations → the app →
Delete); this removes its secret, permissions and consent. Delete the stored client secret."""),
    ("params", ""),
    ("code", DEPLOYMENT),
    ("md", "## Sign in (device code)"),
    ("code", "admin = steps.sign_in(dep, admin_account)\nadmin"),
    ("code", "graph = steps.graph_client(dep, admin)"),
    ("md", "## Before"),
    ("code", "before = steps.app_state(graph, app_name)\nbefore"),
    ("md", "Is S2S already configured with this certificate? Then the app needs no secret or consent again."),
    ("code", """cert = steps.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=False)
configured = steps.s2s_configured_already(dep, graph, cert)
configured"""),
    ("md", "## Action"),
    ("code", """entra = steps.ensure_entra_app(graph, app_name, redirect_uri, client_secret, client_secret_days, plan=plan,
                               configured=configured)
entra"""),
    ("md", "## After"),
    ("code", "steps.app_state(graph, app_name)"),
    ("md", "## Facts for the next steps\nThe client secret is handed on as its *reference*, never its value."),
    ("code", """if entra.app is not None:
    record("app_id", entra.app.app_id)
    record("client_secret_ref", entra.secret.secret_ref if entra.secret else client_secret)
record("tenant_id", entra.tenant_id)
record_changes(entra.changes)"""),
])

notebook("40-configure-s2s", ["customer", "organization", *CONNECTION, "admin_account", "app_name", "pfx_path",
                              "pfx_password", "client_secret", "teardown", "pfx_file", "thumbprint", "app_id",
                              "tenant_id", "client_secret_ref", "plan"], [
    ("md", """# Step 4 — Configure server-to-server authentication in CRM

**Purpose.** Run the official `ConfigureCrmServerSideSync.ps1` on the Deployment Tools server. It signs in to
Graph as the app of step 3, reads the tenant id, adds the certificate as a key credential of the *Dynamics CRM*
service principal (appId `00000007-0000-0000-c000-000000000000`) and its appId among its
servicePrincipalNames, sets the deployment's `S2SDefaultAuthorizationServerPrincipalId` and
`S2SDefaultAuthorizationServerMetadataUrl`, and the organization's `S2STenantId`. Secrets are passed as
parameters (the PFX password as a SecureString), never formatted into script text.

**Prerequisites.** Steps 1–3. The script reports failure by printing "Process Failed." and `exit 1` while the
remote pipeline still completes: psbridge reads `$LASTEXITCODE` and stops with the script's own words.

**What changes where.** In the tenant: the Dynamics CRM service principal's key credentials. In the CRM
configuration database: ServerSettings and the organization's S2STenantId. When all of these already hold the
wanted values, the script is not run. Then, with `teardown` on (the default), the app of step 3 loses its client
secret (and the stored value) and its admin consent: nothing needs them any more, and a live secret of an app
allowed `Application.ReadWrite.All` is a standing risk. The app registration stays, named in the record.

**Roll back.** Remove the key credential (by its thumbprint) from the Dynamics CRM service principal with Graph
(`PATCH /servicePrincipals/{id}` with the remaining `keyCredentials`); clear `S2STenantId` with
`Set-CrmAdvancedSetting`."""),
    ("params", ""),
    ("code", DEPLOYMENT + """
cert = steps.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=not plan)
admin = steps.sign_in(dep, admin_account)
graph = steps.graph_client(dep, admin)
app_id, tenant_id, client_secret_ref = steps.entra_facts(dep, graph, app_name, app_id, tenant_id,
                                                         client_secret_ref or client_secret)
cert"""),
    ("md", "## Before"),
    ("code", "before = steps.s2s_state(dep, graph, cert.thumbprint, tenant_id)\nbefore"),
    ("md", "## Action"),
    ("code", """action = steps.configure_s2s(dep, before, cert.pfx_file, pfx_password, app_id, tenant_id, client_secret_ref,
                             plan=plan)
action"""),
    ("md", "## After"),
    ("code", """after = steps.s2s_state(dep, graph, cert.thumbprint, tenant_id)
if not plan:
    steps.require_ok(after, "ConfigureCrmServerSideSync.ps1 completed but")
after"""),
    ("md", "## Teardown: the setup secret and consent go"),
    ("code", """cleanup = steps.remove_setup_access(graph, app_name, client_secret_ref, teardown=teardown,
                                   configured=after.ok, plan=plan)
cleanup"""),
    ("code", "dep.journal()"),
    ("md", "## Facts for the next steps"),
    ("code", """record("s2s_configured", after.ok)
record("setup_access_left", steps.setup_access_left(graph, app_name))
record_changes(action.changes + cleanup.changes)"""),
])

notebook("50-tenant-id", ["customer", "organization", *CONNECTION, "organization_id", "tenant_id", "plan"], [
    ("md", """# Step 5 — The Exchange Online tenant id in CRM

**Purpose.** The organization's `S2STenantId` setting must hold the tenant GUID (`Get-CrmOrganization -Name`,
then `Set-CrmAdvancedSetting -ID <org id> -configurationEntityName Organization -setting S2STenantId -value
<tenant id>`). The current script of step 4 already sets it: this step reads it back and sets it only if it
differs. The tenant id comes from Graph (step 3) or the tenant's OpenID metadata; `Get-MsolCompanyInformation`
is retired.

**Prerequisites.** Step 0 (the organization) and the tenant id.

**What changes where.** One setting in the CRM configuration database, only when it differs.

**Roll back.** Set the previous value shown under *Before* with `Set-CrmAdvancedSetting`."""),
    ("params", ""),
    ("code", DEPLOYMENT + """
tenant_id = tenant_id or steps.discover_tenant_id(dep)"""),
    ("md", "## Before"),
    ("code", "before = steps.tenant_id_state(dep, tenant_id)\nbefore"),
    ("md", "## Action"),
    ("code", """action = steps.set_tenant_id(dep, tenant_id, plan=plan)
action"""),
    ("md", "## After"),
    ("code", """after = steps.tenant_id_state(dep, tenant_id)
if not plan:
    steps.require_ok(after, "after setting it,")
after"""),
    ("md", "## Facts"),
    ("code", """record("s2s_tenant_id", after.rows[0].now)
record_changes(action)"""),
])

notebook("90-summary", ["customer", "organization", *CONNECTION, "admin_account", "app_name", "teardown",
                        "pfx_path", "pfx_password", "organization_id", "async_servers", "pfx_file", "thumbprint",
                        "certificate_subject", "certificate_not_after", "installed_on", "app_id", "tenant_id",
                        "client_secret_ref", "s2s_configured", "s2s_tenant_id", "setup_access_left", "plan"], [
    ("md", """# Summary

**Purpose.** The final state, read again from the servers, CRM and Entra ID, beside the facts each step
recorded; and what to do next.

**What changes where.** Nothing: this step only reads.

**Roll back.** """ + ROLLBACK_NOTE),
    ("params", ""),
    ("code", DEPLOYMENT),
    ("md", "## What the steps recorded"),
    ("code", """steps.facts_table(organization_id=organization_id, async_servers=async_servers, pfx_file=pfx_file,
                  thumbprint=thumbprint, certificate_subject=certificate_subject,
                  certificate_not_after=certificate_not_after, installed_on=installed_on, app_id=app_id,
                  tenant_id=tenant_id, client_secret_ref=client_secret_ref, s2s_configured=s2s_configured,
                  s2s_tenant_id=s2s_tenant_id, setup_access_left=setup_access_left)"""),
    ("md", "## Leftovers of earlier runs\nAny PFX an interrupted run left in the servers' upload folder goes now."),
    ("code", """if async_servers:
    dep.servers = list(async_servers)
cleanup = steps.sweep_leftovers(dep, plan=plan)
cleanup"""),
    ("md", "## Final state"),
    ("code", """if async_servers:
    dep.servers = list(async_servers)
# Run on its own (JupyterLab, papermill without facts), it finds the certificate and tenant itself.
cert = steps.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=False)
tenant_id = tenant_id or steps.discover_tenant_id(dep)
final = steps.final_state(dep, admin_account, cert.thumbprint, tenant_id, app_name, teardown)
final"""),
    ("md", """## What to do next

1. In CRM, create an **email server profile**: type *Exchange Online (Hybrid)*, authentication *Server to
   Server*, use the default tenant id, auto-discover server location.
2. Make it the default profile in the email configuration settings and point the mailboxes at it.
3. **Approve** the mailboxes, then **Test & Enable** them, and check their incoming/outgoing status.
4. Keep this record: `psbridge verify` on its folder proves it is unchanged.
5. Renew the certificate before it expires (date above): run the runbook again with the new PFX. Step 3 then
   gives the app a fresh client secret and consent for step 4, and step 4 removes them again."""),
    ("code", "record_changes(cleanup)"),
])


def build(stem: str) -> nbformat.NotebookNode:
    spec = NOTEBOOKS[stem]
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for kind, text in spec["cells"]:  # type: ignore[attr-defined]
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        elif kind == "params":
            cell = nbformat.v4.new_code_cell(params_cell(spec["params"]))  # type: ignore[arg-type]
            cell.metadata["tags"] = ["parameters"]
        else:
            cell = nbformat.v4.new_code_cell(text)
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell(
        "dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers"))
    # Stable ids keep the stored notebooks byte-identical from one generation to the next.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{stem}-{i:02d}"
    return nb


def main(argv: list[str]) -> int:
    check = "--check" in argv
    differ = []
    for stem in NOTEBOOKS:
        text = nbformat.writes(build(stem)) + "\n"
        path = HERE / f"{stem}.ipynb"
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if differ:
        print("notebooks differ from notebooks/_generate.py: " + ", ".join(differ))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
