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
# # Summary
#
# **Purpose.** The final state, read again from the servers, CRM and Entra ID, beside the facts each step
# recorded; and what to do next.
#
# **What changes where.** Nothing: this step only reads.
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
admin_account: str = ""                                                 # the administrator who signs in with a device code (empty to choose when signing in)
app_name: str = "psbridge server-side sync"                             # display name of the app registration in Entra ID
teardown: bool = True                                                   # once S2S is configured, remove the setup client secret (and its stored value) and the admin consent; the app registration stays
pfx_path: str = ""                                                      # a CA-issued PFX to use; empty to generate a self-signed certificate (evaluation)
pfx_password: str = "lab:demo/contoso/pfx-password"                     # where the PFX password is kept (a generated certificate's new password is stored here)
profile_name: str = "Exchange Online (psbridge)"                        # name of the Exchange Online (Hybrid) email server profile
mailboxes: list[str] = []                                               # mailboxes to set up: [] or [all] for every active user; else users (DOMAIN\user or email address) and queues (queue:NAME)
mailbox_filter: str = ""                                                # instead of the list: an OData $filter on systemusers, e.g. startswith(internalemailaddress,'sales')
organization_id: str = ""                                               # fact from 00-preflight: GUID of the CRM organization
async_servers: list[str] = []                                           # fact from 00-preflight: servers that run the Asynchronous Processing Service
pfx_file: str = ""                                                      # fact from 10-certificate: local path of the PFX the later steps upload
thumbprint: str = ""                                                    # fact from 10-certificate: SHA-1 thumbprint of the S2S certificate
certificate_subject: str = ""                                           # fact from 10-certificate: subject of the S2S certificate (unique in LocalMachine\My)
certificate_not_after: str = ""                                         # fact from 10-certificate: end of the certificate's validity (UTC)
installed_on: list[str] = []                                            # fact from 20-install-certificate: servers whose LocalMachine\My store holds the certificate
app_id: str = ""                                                        # fact from 30-entra-app: application (client) id of the app registration
tenant_id: str = ""                                                     # fact from 30-entra-app: Entra ID tenant GUID
client_secret_ref: str = ""                                             # fact from 30-entra-app: reference of the stored client secret
s2s_configured: bool = False                                            # fact from 40-configure-s2s: the CRM service principal trusts the certificate and CRM knows the tenant
s2s_tenant_id: str = ""                                                 # fact from 50-tenant-id: the organization's S2STenantId as read back
setup_access_left: list[str] = []                                       # fact from 40-configure-s2s: what of the setup client secret and consent is still in the tenant ([] after the teardown)
web_api_sign_in: str = ""                                               # fact from 00-preflight: how the organization's Web API signs users in: active-directory or claims
email_server_profile_id: str = ""                                       # fact from 60-email-server-profile: GUID of the Exchange Online (Hybrid) email server profile
mailboxes_enabled: list[str] = []                                       # fact from 70-mailboxes: the mailboxes Test & Enable reported success for
mailboxes_failed: list[str] = []                                        # fact from 70-mailboxes: the mailboxes that failed Test & Enable, or did not report in time
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import summary as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## What the steps recorded

# %%
step.recorded(organization_id=organization_id, async_servers=async_servers, pfx_file=pfx_file,
                  thumbprint=thumbprint, certificate_subject=certificate_subject,
                  certificate_not_after=certificate_not_after, installed_on=installed_on, app_id=app_id,
                  tenant_id=tenant_id, client_secret_ref=client_secret_ref, s2s_configured=s2s_configured,
                  s2s_tenant_id=s2s_tenant_id, setup_access_left=setup_access_left, web_api_sign_in=web_api_sign_in,
                  email_server_profile_id=email_server_profile_id, mailboxes_enabled=mailboxes_enabled,
                  mailboxes_failed=mailboxes_failed)

# %% [markdown]
# ## Leftovers of earlier runs
# Any PFX an interrupted run left in the servers' upload folder goes now.

# %%
if async_servers:
    dep.servers = list(async_servers)
cleanup = step.sweep_leftovers(dep, plan=plan)
cleanup

# %% [markdown]
# ## Final state

# %%
if async_servers:
    dep.servers = list(async_servers)
# Run on its own (JupyterLab, papermill without facts), it finds the certificate and tenant itself.
cert = step.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=False)
tenant_id = tenant_id or step.discover_tenant_id(dep)
final = step.final_state(dep, admin_account, cert.thumbprint, tenant_id, app_name, teardown)
target = step.web_api_target(dep, crm_url=crm_url, crm_user=crm_user, crm_password=crm_password,
                             crm_sign_in=crm_sign_in, adfs_client_id=adfs_client_id,
                             adfs_client_secret=adfs_client_secret, ca_bundle=crm_ca_bundle or ca_bundle)
final.rows += step.email_rows(dep, target, profile_name, mailboxes, mailbox_filter)
final

# %% [markdown]
# ## What to do next
#
# 1. Keep this record: `psbridge verify` on its folder proves it is unchanged.
# 2. Watch the mailboxes: Settings > Email Configuration > Mailboxes, and the alerts of each. A mailbox added later
#    gets the organization's default profile and delivery methods; approve it and Test & Enable it (or run step 7
#    again).
# 3. Renew the certificate before it expires (date above): run the runbook again with the new PFX. Step 3 then
#    gives the app a fresh client secret and consent for step 4, and step 4 removes them again.
# 4. Plan the end: Exchange Online removes Exchange Web Services in April 2027, which this integration rests on
#    (see step 0): move to Dynamics 365 online or to Exchange Server on-premises, and take this integration down
#    cleanly when you do.

# %%
record_changes(cleanup)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
