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
# # Trusted by the Dynamics CRM service principal
#
# **Purpose.** Entra ID must trust the new certificate (a key credential on the Dynamics CRM service
# principal) before CRM signs a token with it; the old key credential stays until the switch is made.
#
# **What changes where.** The Dynamics CRM service principal's key credentials (Microsoft Graph).
#
# **Roll back.** Remove the new key credential.

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

# %%
from psbridge.runbook.steps.common import certificate_for

if plan and not new_thumbprint:
    action = Action(["add the new certificate as a key credential of the Dynamics CRM service principal"], True)
else:
    cert = certificate_for(dep, customer, "", new_pfx_file, new_pfx_password, new_thumbprint)
    action = step.trust_new(graph, cert.der, cert.thumbprint, plan=plan)
action

# %%
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
