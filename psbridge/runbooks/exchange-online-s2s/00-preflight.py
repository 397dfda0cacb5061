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
# # Step 0 — Prerequisites
#
# **Purpose.** Before anything changes, check that the runbook can do its work: a PowerShell session opens on
# every CRM server that runs the Asynchronous Processing Service, the CRM snap-in loads, the two official scripts
# are in the CRM Tools folder, the organization exists, the installed `ConfigureCrmServerSideSync.ps1` takes
# `-ClientID`/`-ClientSecret` (older CRM 9.1 builds ship an MSOnline-era script that does not), and the Entra ID
# tenant answers. Then the organization's **Web API**: it answers, it says which sign-in it wants (Active
# Directory, or claims through AD FS on an Internet-facing deployment), the sign-in works, the names steps 6 and 7
# write are in its `$metadata`, and the signed-in user may approve email addresses.
#
# **Exchange Online.** Server-side sync with Exchange Online rests on Exchange Web Services, which Microsoft
# removes from Exchange Online in April 2027; since 1 October 2025 a tenant is connected only once Exchange
# Support has allow-listed it, at its Exchange Online administrator's request. The administrator's confirmation
# is the parameter `exchange_allow_list` and is recorded here; without it this step says plainly that Test &
# Enable (step 7) will fail.
#
# **Prerequisites.** An account that is a local administrator on the servers and a CRM deployment administrator;
# WinRM reachable (5985 with message encryption, or 5986 over TLS); outbound HTTPS from the CRM servers to
# Entra ID and Microsoft Graph (MSOnline is retired: Graph is the way).
#
# **What changes where.** Nothing, anywhere. Every check is read-only (signing in to AD FS leaves a token in this
# machine's token cache).
#
# **Roll back.** Nothing to roll back: this step only reads.

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
exchange_allow_list: str = ""                                           # the Exchange Online administrator's confirmation that Exchange Support allow-listed the tenant for server-side sync from Dynamics 365 on-premises (who, when, ticket); without it Test & Enable fails for a tenant connected since 1 Oct 2025
plan: bool = False                                                      # True: read-only, only say what would change

# %% [markdown]
# ## The deployment
# Servers, accounts and the cloud come from the parameters (in the lab, from `lab.json`).

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import preflight as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## Checks
# Each row is one check; all of them run, so every problem shows at once.

# %%
checks = step.check(dep)
target = step.web_api_target(dep, crm_url=crm_url, crm_user=crm_user, crm_password=crm_password,
                             crm_sign_in=crm_sign_in, adfs_client_id=adfs_client_id,
                             adfs_client_secret=adfs_client_secret, ca_bundle=crm_ca_bundle or ca_bundle)
step.check_web_api(checks, dep, target, exchange_allow_list)
checks

# %%
checks.require()  # stops the runbook here, naming each unmet prerequisite

# %% [markdown]
# ## Leftovers of earlier runs
# A PFX waits in `C:\Windows\Temp\psbridge` on a server only while a script reads it. A run that was killed
# in between leaves it there: it is removed now (in a plan, listed).

# %%
cleanup = step.sweep_leftovers(dep, plan=plan)
cleanup

# %% [markdown]
# ## Facts for the next steps

# %%
record("organization_id", checks.organization_id)
record("async_servers", dep.servers)
record("web_api_sign_in", checks.web_api_sign_in)
record_changes(cleanup)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
