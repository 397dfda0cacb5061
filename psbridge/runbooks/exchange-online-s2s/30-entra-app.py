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
# # Step 3 — The app registration in Entra ID
#
# **Purpose.** `ConfigureCrmServerSideSync.ps1` signs in to Microsoft Graph as an app (client credentials) to
# trust the certificate on the Dynamics CRM service principal. This step makes that app, idempotently:
# single tenant, a redirect URI, a **client secret** (its value goes straight to the `client_secret` secret
# store and is never shown), Graph application permissions `Application.ReadWrite.All` and
# `Organization.Read.All`, delegated `User.Read`, and **admin consent** for them.
#
# **Prerequisites.** An Entra ID administrator who can consent to application permissions (Global or Privileged
# Role Administrator). You sign in with a device code: open the address shown below and enter the code.
#
# **What changes where.** In the tenant: the app registration, its service principal, a client secret named
# "psbridge setup", required resource access, app role assignments and a delegated permission grant. On this
# machine: the client secret at `client_secret`, and the sign-in's token cache.
#
# The secret and the consent are needed once, by step 4, which removes them again afterwards (`teardown`, on
# by default). So when step 4's state for this certificate is already complete (a re-run), this step adds
# nothing.
#
# **Roll back.** Delete the app registration in the Entra admin center (App registrations → the app →
# Delete); this removes its secret, permissions and consent. Delete the stored client secret.

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
app_name: str = "psbridge server-side sync"                             # display name of the app registration in Entra ID
redirect_uri: str = "https://localhost/psbridge"                        # the app registration's redirect URI
client_secret: str = "lab:demo/contoso/client-secret"                   # where the app's client secret is stored when it is created (its value is never shown)
client_secret_days: int = 180                                           # client secret lifetime (at most 24 months; Microsoft recommends under 12)
pfx_path: str = ""                                                      # a CA-issued PFX to use; empty to generate a self-signed certificate (evaluation)
pfx_password: str = "lab:demo/contoso/pfx-password"                     # where the PFX password is kept (a generated certificate's new password is stored here)
pfx_file: str = ""                                                      # fact from 10-certificate: local path of the PFX the later steps upload
thumbprint: str = ""                                                    # fact from 10-certificate: SHA-1 thumbprint of the S2S certificate
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import entra as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## Sign in (device code)

# %%
admin = step.sign_in(dep, admin_account)
graph = step.graph_client(dep, admin)
admin

# %% [markdown]
# ## Before

# %%
before = step.app_state(graph, app_name)
before

# %% [markdown]
# Is S2S already configured with this certificate? Then the app needs no secret or consent again.

# %%
cert = step.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=False)
configured = step.s2s_configured_already(dep, graph, cert)
configured

# %% [markdown]
# ## Action

# %%
entra = step.ensure_entra_app(graph, app_name, redirect_uri, client_secret, client_secret_days, plan=plan,
                               configured=configured)
entra

# %% [markdown]
# ## After

# %%
step.app_state(graph, app_name)

# %% [markdown]
# ## Facts for the next steps
# The client secret is handed on as its *reference*, never its value.

# %%
if entra.app is not None:
    record("app_id", entra.app.app_id)
    record("client_secret_ref", entra.secret.secret_ref if entra.secret else client_secret)
record("tenant_id", entra.tenant_id)
record_changes(entra.changes)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
