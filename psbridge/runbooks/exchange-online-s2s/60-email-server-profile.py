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
# # Step 6 — The email server profile and the organization's email configuration
#
# **Purpose.** Server-side sync reaches Exchange Online through an **email server profile** of type *Exchange
# Online (Hybrid)* that signs in with **server-to-server authentication** (the certificate of steps 1–4), uses
# the organization's **default tenant id** (its `S2STenantId`, step 5) and finds each mailbox's server by
# **autodiscover**. The organization must name that profile as its default, use **server-side sync** as its
# email connection channel and give new users and queues server-side sync as their delivery methods (email;
# appointments, contacts and tasks). This step makes that so through the organization's Web API, changing only
# what differs.
#
# **Prerequisites.** Steps 1–5 (the S2S chain the profile relies on). A System Administrator of the
# organization signs in to its Web API the way the organization asks (Windows authentication, or AD FS with a
# device code on an Internet-facing deployment).
#
# **What changes where.** In the organization: one email server profile (created or updated) and the
# organization record's email settings (default profile, email connection channel, default email settings).
#
# **Roll back.** In the web client, Settings > Email Configuration: set the previous values shown under *Before*,
# and deactivate or delete the profile.

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
profile_name: str = "Exchange Online (psbridge)"                        # name of the Exchange Online (Hybrid) email server profile
organization_id: str = ""                                               # fact from 00-preflight: GUID of the CRM organization
s2s_tenant_id: str = ""                                                 # fact from 50-tenant-id: the organization's S2STenantId as read back
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import email_profile as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
target = step.web_api_target(dep, crm_url=crm_url, crm_user=crm_user, crm_password=crm_password,
                             crm_sign_in=crm_sign_in, adfs_client_id=adfs_client_id,
                             adfs_client_secret=adfs_client_secret,
                             ca_bundle=crm_ca_bundle or ca_bundle)
target

# %% [markdown]
# ## Sign in to the organization's Web API
# One connection, reused for every call of this step.

# %%
api = step.web_api(dep, target)
api

# %% [markdown]
# ## Before

# %%
before = step.profile_state(api, profile_name, s2s_tenant_id)
before

# %% [markdown]
# ## Action

# %%
action = step.ensure_profile(api, before, plan=plan)
action

# %% [markdown]
# ## After

# %%
after = step.profile_state(api, profile_name, s2s_tenant_id)
if not plan:
    after.require("after the change,")
after

# %% [markdown]
# ## Facts

# %%
record("email_server_profile_id", after.profile.id if after.profile else "")
record_changes(action)

# %%
api.close()  # the Web API connection this step opened
