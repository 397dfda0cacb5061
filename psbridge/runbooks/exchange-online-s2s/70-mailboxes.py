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
# # Step 7 — Mailboxes: server-side sync, approval, Test & Enable
#
# **Purpose.** Each mailbox chosen by `mailboxes` (every active user by default; or users and `queue:NAME`s;
# or an OData filter on users, `mailbox_filter`) is pointed at the email server profile of step 6 with
# server-side sync for incoming and outgoing email (delivery method 2) and for appointments, contacts and tasks
# (1: a different code); its owner's email address is **approved** where the organization requires it; then
# **Test & Enable** is scheduled and the step waits, showing progress, until each mailbox reports success or
# failure (or `test_timeout` passes). A failure shows the server's own message.
#
# **Prerequisites.** Step 6. The signed-in user needs *Approve Email Addresses for Users or Queues*
# (`prvApproveRejectEmailAddress`, which the System Administrator role has): it is checked before anything
# changes. Test & Enable succeeds only over a working S2S chain — the certificate on every server running the
# Asynchronous Processing Service, readable by its account; the certificate trusted by the Dynamics CRM service
# principal; `S2STenantId` set — and, for a tenant connected since 1 October 2025, only once Exchange Support has
# **allow-listed** the tenant (`exchange_allow_list` records the Exchange Online administrator's confirmation).
#
# **What changes where.** In the organization: the chosen mailboxes (profile, delivery methods, Test & Enable)
# and their owners' email approval (users, queues). A mailbox already enabled is left alone; a test still
# running is waited for, not scheduled again.
#
# **Roll back.** In the web client, Settings > Email Configuration > Mailboxes: set the delivery methods back
# (values under *Before*); reject or clear the approval on the users and queues.

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
mailboxes: list[str] = []                                               # mailboxes to set up: [] or [all] for every active user; else users (DOMAIN\user or email address) and queues (queue:NAME)
mailbox_filter: str = ""                                                # instead of the list: an OData $filter on systemusers, e.g. startswith(internalemailaddress,'sales')
test_timeout: int = 900                                                 # seconds to wait for Test & Enable to report on every mailbox
exchange_allow_list: str = ""                                           # the Exchange Online administrator's confirmation that Exchange Support allow-listed the tenant for server-side sync from Dynamics 365 on-premises (who, when, ticket); without it Test & Enable fails for a tenant connected since 1 Oct 2025
email_server_profile_id: str = ""                                       # fact from 60-email-server-profile: GUID of the Exchange Online (Hybrid) email server profile
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import mailboxes as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
target = step.web_api_target(dep, crm_url=crm_url, crm_user=crm_user, crm_password=crm_password,
                             crm_sign_in=crm_sign_in, adfs_client_id=adfs_client_id,
                             adfs_client_secret=adfs_client_secret,
                             ca_bundle=crm_ca_bundle or ca_bundle)
api = step.web_api(dep, target)
api

# %% [markdown]
# ## Before
# Every chosen mailbox, its owner's approval, and whether the signed-in user may approve.

# %%
before = step.mailboxes_state(api, profile_name, mailboxes, mailbox_filter, exchange_allow_list)
before

# %% [markdown]
# ## Action
# Configure, approve, schedule Test & Enable; then wait for the asynchronous job to report on each mailbox.

# %%
action = step.enable_mailboxes(api, before, plan=plan, timeout=test_timeout, report=step.Progress())
action

# %% [markdown]
# ## After
# The statuses Test & Enable left, and the server's message for each failure.

# %%
after = step.mailboxes_state(api, profile_name, mailboxes, mailbox_filter, exchange_allow_list)
after

# %% [markdown]
# ## Facts

# %%
record("mailboxes_enabled", [r.owner.address for r in after.enabled])
record("mailboxes_failed", [r.owner.address for r in after.rows if not r.ok])
record_changes(action)

# %%
if not plan:
    after.require()  # stops the run naming each mailbox that is not enabled, with the server's words

# %%
api.close()  # the Web API connection this step opened
