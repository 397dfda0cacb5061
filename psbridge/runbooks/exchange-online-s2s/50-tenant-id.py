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
# # Step 5 — The Exchange Online tenant id in CRM
#
# **Purpose.** The organization's `S2STenantId` setting must hold the tenant GUID (`Get-CrmOrganization -Name`,
# then `Set-CrmAdvancedSetting -ID <org id> -configurationEntityName Organization -setting S2STenantId -value
# <tenant id>`). The current script of step 4 already sets it: this step reads it back and sets it only if it
# differs. The tenant id comes from Graph (step 3) or the tenant's OpenID metadata; `Get-MsolCompanyInformation`
# is retired.
#
# **Prerequisites.** Step 0 (the organization) and the tenant id.
#
# **What changes where.** One setting in the CRM configuration database, only when it differs.
#
# **Roll back.** Set the previous value shown under *Before* with `Set-CrmAdvancedSetting`.

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
organization_id: str = ""                                               # fact from 00-preflight: GUID of the CRM organization
tenant_id: str = ""                                                     # fact from 30-entra-app: Entra ID tenant GUID
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import tenant_id as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep
tenant_id = tenant_id or step.discover_tenant_id(dep)

# %% [markdown]
# ## Before

# %%
before = step.tenant_id_state(dep, tenant_id)
before

# %% [markdown]
# ## Action

# %%
action = step.set_tenant_id(dep, tenant_id, plan=plan)
action

# %% [markdown]
# ## After

# %%
after = step.tenant_id_state(dep, tenant_id)
if not plan:
    after.require("after setting it,")
after

# %% [markdown]
# ## Facts

# %%
record("s2s_tenant_id", after.rows[0].now)
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
