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
# # The switch
#
# **Purpose.** `CertificateReconfiguration.ps1 -certificateType S2STokenIssuer -updateCrm` with the new PFX on the
# Deployment Tools server: CRM signs with the new certificate from now on. Refused while Entra ID does not trust
# it. The AlternativeS2STokenIssuer entry (the same certificate now) leaves the configuration database.
#
# **What changes where.** The configuration database's S2S certificates.
#
# **Roll back.** Reinstall the old PFX as S2STokenIssuer with `-updateCrm` (it is still on the servers until the next step).

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
admin_account: str = ""                                                 # the administrator who signs in with a device code (empty to choose when signing in)
new_pfx_password: str = "lab:demo/contoso/pfx-password-renewal"         # where the new PFX's password is kept (a generated certificate's new password is stored here)
new_pfx_file: str = ""                                                  # fact from 10-new-certificate: local path of the new certificate's PFX
new_thumbprint: str = ""                                                # fact from 10-new-certificate: SHA-1 thumbprint of the new certificate
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import renewal as step
from psbridge.runbook.steps.common import Action

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

graph = step.graph_client(dep, step.sign_in(dep, admin_account))

# %% [markdown]
# ## Before

# %%
step.current(dep)

# %%
if plan and not new_thumbprint:
    action = Action(["make the new certificate the S2STokenIssuer (-updateCrm), and remove its "
                     "AlternativeS2STokenIssuer entry"], True)
else:
    action = step.switch(dep, graph, new_pfx_file, new_pfx_password, new_thumbprint, plan=plan)
action

# %% [markdown]
# ## After

# %%
step.current(dep)

# %%
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
