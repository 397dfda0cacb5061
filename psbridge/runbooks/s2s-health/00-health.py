# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (psbridge)
#     language: python
#     name: psbridge
# ---

# %% [markdown]
# # Health of server-side sync with Exchange Online
#
# **Purpose.** Read every link of the server-to-server chain where it lives and give one verdict for the
# organization: **ok**, **action needed** (it works, but something ends soon or is left that should not be) or
# **broken** (server-side sync cannot work now), with the reasons; **not set up** when no link of the chain is
# there at all (as after `s2s-decommission`).
#
# **What is read.** The configuration database's certificates by type and `ServerSettings`; the S2S certificate on
# every server running the Asynchronous Processing Service (with its private key, and whether the service's
# account may read that key: its file's ACL, without which Test & Enable fails with "Keyset does not exist"); the
# organization's `S2STenantId`; the Dynamics CRM service principal's key credentials in Entra ID; the setup app's
# access left in the tenant; the email server profile and every mailbox on it; PFX files psbridge left on a
# server; the dates that matter.
#
# **What changes where.** Nothing: every call is a read (`Get-*` cmdlets, `certutil -store`, Graph and Web API
# `GET`).
#
# **Roll back.** Nothing to roll back.

# %% tags=["parameters"]
# Parameters (papermill -p NAME VALUE, -f params.yaml, or psbridge run). Secrets are references.
customer: str = "demo"                                                  # short name of the customer; records go to records/<customer>/<organization>/
organization: str = "contoso"                                           # CRM organization unique name (Get-CrmOrganization -Name)
lab: str = "auto"                                                       # 'auto' (the running lab, PSBRIDGE_LAB_STATE), a lab state directory or lab.json; empty for a real deployment
servers: list[str] = []                                                 # CRM servers running the Asynchronous Processing Service: NAME https://host:5986/wsman each (in the lab, names or empty for all)
deployment_server: str = ""                                             # the server with the Deployment Tools role (default the first server)
winrm_scheme: str = "http"                                              # WinRM transport (http uses NTLM/Kerberos message encryption)
winrm_user: str = ""                                                    # DOMAIN\user, local administrator and CRM deployment administrator (in the lab: LAB\crmadmin)
winrm_password: str = "lab:accounts/crmadmin"                           # where that account's password is kept
ca_bundle: str = ""                                                     # CA bundle that issued the servers' WinRM HTTPS certificates
tools_folder: str = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"  # the CRM Tools folder holding CertificateReconfiguration.ps1 and ConfigureCrmServerSideSync.ps1
service_account: str = ""                                               # identity of the CRM Asynchronous Processing Service (DOMAIN\user or Network Service); in the lab: from lab.json
cloud: str = "lab"                                                      # which Entra ID cloud; 'lab' is the embedded lab's twin
tenant: str = ""                                                        # Entra ID tenant, domain (contoso.onmicrosoft.com) or GUID; in the lab empty means the twin's
crm_url: str = ""                                                       # the organization's URL: https://server/org (Active Directory) or https://org.domain (IFD); its Web API is <url>/api/data/v9.0; in the lab: from lab.json
crm_user: str = ""                                                      # who signs in to the Web API (a System Administrator of the organization): DOMAIN\user for Windows authentication, user@domain for AD FS; empty: winrm_user
crm_password: str = ""                                                  # where that account's password is kept (Windows authentication, or AD FS username/password sign-in); empty: winrm_password
crm_sign_in: str = "device-code"                                        # how to get an AD FS token when the organization asks for claims: device-code (the consultant enters a code) or password (needs a confidential client: adfs_client_secret)
adfs_client_id: str = ""                                                # the client registered on AD FS for psbridge (Add-AdfsClient -ClientId); in the lab: from lab.json
adfs_client_secret: str = ""                                            # the secret of a confidential AD FS client (Add-AdfsClient -GenerateClientSecret), for crm_sign_in: password
crm_ca_bundle: str = ""                                                 # CA bundle that issued the CRM web site's and AD FS's certificates; empty: ca_bundle, else the machine's trust store
admin_account: str = ""                                                 # the administrator who signs in with a device code (empty to choose when signing in)
app_name: str = "psbridge server-side sync"                             # display name of the app registration in Entra ID
profile_name: str = "Exchange Online (psbridge)"                        # name of the Exchange Online (Hybrid) email server profile
warn_days: int = 30                                                     # a certificate or key credential ending within this many days needs action
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import health_checks as check
from psbridge.runbook.steps.health import Health, Milestones

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep
health = Health(organization)
today = check.today()

# %% [markdown]
# ## The deployment: configuration database and servers

# %%
database, issuer = check.configuration_database(dep, today, warn_days)
thumbprint = issuer.thumbprint if issuer else ""
health.extend(database)
health.extend(check.server_settings(dep))
health.extend(check.servers(dep, thumbprint, check.issuer_subject(issuer)))
health.extend(check.leftovers(dep))
Health("deployment", health.checks)

# %% [markdown]
# ## The tenant: the Dynamics CRM service principal and the setup app

# %%
from psbridge.cloud import tenant_id_from_graph

graph = check.graph_client(dep, check.sign_in(dep, admin_account))
tenant_id = tenant_id_from_graph(graph)
tenant_checks = check.service_principal(graph, thumbprint, today, warn_days) + check.setup_access(graph, app_name)
health.extend(tenant_checks)
Health("tenant " + tenant_id, tenant_checks)

# %% [markdown]
# ## The organization: S2STenantId, email server profile, mailboxes

# %%
org_checks, organization_id = check.tenant_settings(dep, tenant_id)
target = check.web_api_target(dep, crm_url=crm_url, crm_user=crm_user, crm_password=crm_password,
                              crm_sign_in=crm_sign_in, adfs_client_id=adfs_client_id,
                              adfs_client_secret=adfs_client_secret, ca_bundle=crm_ca_bundle or ca_bundle)
org_checks += check.web_api_checks(dep, target, profile_name)
health.extend(org_checks)
Health(organization, org_checks)

# %% [markdown]
# ## The dates that matter
# Exchange Web Services leave Exchange Online in April 2027, and support for CRM 9.0 with Exchange Online ends on
# 1 April 2027: plan the move, and the clean removal of this integration (`s2s-decommission`).

# %%
health.milestones = Milestones(today, check.issuer_expiry(issuer))
health.milestones

# %% [markdown]
# ## Verdict

# %%
health

# %%
for name, value in health.facts().items():
    record(name, value)
record("health_notes", health.notes)
record("thumbprint", thumbprint)
end = check.issuer_expiry(issuer)
record("certificate_not_after", end.isoformat() if end else "")
record("mailboxes_failing", [c.what.removeprefix("mailbox ") for c in health.checks
                             if c.where == "mailboxes" and c.found.startswith("failure")])
record_changes([])
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
