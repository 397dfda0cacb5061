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
# # Step 1 — The S2S certificate
#
# **Purpose.** The CRM asynchronous service signs its token requests to Entra ID with this certificate. It must
# be RSA (at least 2048 bits) with its private key, not expired, a key usable for key exchange (KeySpec 1), and
# exported as a PFX with a password. Its subject must be **unique** in each server's `LocalMachine\My` store:
# two certificates with one subject make `CertificateReconfiguration.ps1` fail with "Private key not found".
#
# * With `pfx_path` set, the customer's CA-issued PFX is validated (every problem listed at once).
# * Without it, a self-signed certificate (acceptable for evaluation) is generated once, with a unique subject,
#   and kept in the organization's work folder; a re-run reuses it.
# * A kept certificate that no longer opens with its password, or expires within 30 days, **stops the step**:
#   a new one would be a second certificate on the servers and in Entra ID, a rotation. Set
#   `replace_certificate` to the reason to make a new one anyway (the record keeps it), or renew with the
#   certificate renewal runbook.
#
# **Prerequisites.** For a provided PFX: its password at the `pfx_password` reference.
#
# **What changes where.** Only on this machine: a new PFX file, and a new random password stored at
# `pfx_password` (its value is never shown). Nothing on the servers or in the cloud.
#
# **Roll back.** Delete the PFX file and the stored password; nothing else knows about them yet.

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
certificate_days: int = 365                                             # lifetime of a generated self-signed certificate
replace_certificate: str = ""                                           # why a kept self-signed certificate that no longer opens (or expires within 30 days) may be replaced by a new one; empty: the run stops instead
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import certificate as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## The certificate
# Before: what is kept (or given); action: generate or validate; after: the certificate.

# %%
choice = step.ensure_certificate(dep, customer, pfx_path, pfx_password, certificate_days,
                                   replace_certificate=replace_certificate, plan=plan)
choice.changes or "already done: the kept certificate is valid and reused"

# %%
choice

# %% [markdown]
# ## Facts for the next steps

# %%
if choice.info is not None:
    record("pfx_file", str(choice.path))
    record("thumbprint", choice.info.thumbprint)
    record("certificate_subject", choice.info.subject)
    record("certificate_not_after", choice.info.not_after)
record_changes(choice.changes)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
