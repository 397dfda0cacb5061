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
# # The S2S certificate out of the configuration database and the servers
#
# **Purpose.** `Remove-CrmCertificate` for the S2S certificates (S2STokenIssuer, AlternativeS2STokenIssuer) and
# `Remove-Item Cert:\LocalMachine\My\<thumbprint> -DeleteKey` on every server running the Asynchronous Processing
# Service. **Kept** while another organization of the deployment uses server-to-server authentication, or when
# SharePoint server-based integration signs with the same certificate (`sharepoint_integration`): it says so.
#
# **What changes where.** The configuration database and each server's `LocalMachine\My`.
#
# **Roll back.** Reinstall the certificate from its PFX: `exchange-online-s2s` step 20.

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
confirm: str = ""                                                       # the organization's unique name, to confirm the decommission (nothing changes without it; a plan needs none)
sharepoint_integration: bool = False                                    # SharePoint server-based integration signs with the deployment's S2S certificate: keep the certificate and its key credential
thumbprints: list[str] = []                                             # fact from 00-plan: the S2S certificates (S2STokenIssuer, AlternativeS2STokenIssuer) found before anything was removed
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import decommission as step

step.require_confirmation(organization, confirm, plan=plan)

# %%
dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## Before

# %%
before = step.remaining(dep, None, None, "", "", thumbprints, sharepoint_integration=sharepoint_integration)
before

# %% [markdown]
# ## Action

# %%
action = step.remove_certificate(dep, thumbprints, sharepoint_integration=sharepoint_integration, plan=plan)
action

# %% [markdown]
# ## After

# %%
after = step.remaining(dep, None, None, "", "", thumbprints, sharepoint_integration=sharepoint_integration)
after

# %%
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
