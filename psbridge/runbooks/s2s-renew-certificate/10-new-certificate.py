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
# # The new certificate
#
# **Purpose.** A certificate with a subject unique in every server's store (two with one subject make
# `CertificateReconfiguration.ps1` fail with "Private key not found"): the CA-issued PFX given, or a self-signed one
# made once and kept (a resume reuses it).
#
# **What changes where.** A local PFX, and its password at `new_pfx_password`.
#
# **Roll back.** Delete the PFX; nothing on the servers or in Entra ID changed yet.

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
pfx_path: str = ""                                                      # the new CA-issued PFX; empty to generate a self-signed certificate (evaluation)
new_pfx_password: str = "lab:demo/contoso/pfx-password-renewal"         # where the new PFX's password is kept (a generated certificate's new password is stored here)
certificate_days: int = 365                                             # lifetime of a generated self-signed certificate
old_thumbprint: str = ""                                                # fact from 00-current: the S2STokenIssuer certificate CRM signed with before the renewal
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import renewal as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %%
info, path, action = step.new_certificate(dep, customer, old_thumbprint, pfx_path, new_pfx_password,
                                          certificate_days, plan=plan)
info

# %%
action

# %%
record("new_pfx_file", str(path))
record("new_thumbprint", info.thumbprint if info else "")
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
