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
# # Step 2 — Install the certificate on every asynchronous server
#
# **Purpose.** Run the official `CertificateReconfiguration.ps1` (CRM Tools folder) on **every** server that runs
# the Asynchronous Processing Service, with `-certificateType S2STokenIssuer`, the service account (it is granted
# read access to the private key) and `-storeFindType FindBySubjectDistinguishedName`; `-updateCrm` (record the
# certificate in the CRM configuration database) only once for the deployment.
#
# **Prerequisites.** Step 0 and step 1. The PFX travels over the PowerShell session (chunks verified by
# SHA-256 on the server) to `C:\Windows\Temp\psbridge` and is **always removed** afterwards.
#
# **What changes where.** Each server's `LocalMachine\My` store gains the certificate with its private key; the
# configuration database's S2STokenIssuer certificate is replaced. A server that already has the certificate is
# left alone.
#
# **Roll back.** On each server remove the certificate from `LocalMachine\My` (`Remove-Item
# Cert:\LocalMachine\My\<thumbprint>`); in CRM, `Get-CrmCertificate` then `Remove-CrmCertificate -Certificate $c`
# for the S2STokenIssuer entry, or reinstall the previous certificate with `CertificateReconfiguration.ps1`.

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
pfx_path: str = ""                                                      # a CA-issued PFX to use; empty to generate a self-signed certificate (evaluation)
pfx_password: str = "lab:demo/contoso/pfx-password"                     # where the PFX password is kept (a generated certificate's new password is stored here)
async_servers: list[str] = []                                           # fact from 00-preflight: servers that run the Asynchronous Processing Service
pfx_file: str = ""                                                      # fact from 10-certificate: local path of the PFX the later steps upload
thumbprint: str = ""                                                    # fact from 10-certificate: SHA-1 thumbprint of the S2S certificate
certificate_subject: str = ""                                           # fact from 10-certificate: subject of the S2S certificate (unique in LocalMachine\My)
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import install as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep
if async_servers:
    dep.servers = list(async_servers)
cert = step.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=not plan)
cert

# %% [markdown]
# ## Before

# %%
before = step.certificate_state(dep, cert.thumbprint, cert.subject)
before

# %% [markdown]
# ## Action

# %%
action = step.install_certificate(dep, cert.pfx_file, pfx_password, cert.thumbprint, cert.subject,
                                   plan=plan)
action

# %% [markdown]
# ## After

# %%
after = step.certificate_state(dep, cert.thumbprint, cert.subject)
if not plan:
    after.require_present()
after

# %%
dep.journal()

# %% [markdown]
# ## Facts for the next steps

# %%
record("installed_on", after.installed_on)
record_changes(action)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
