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
# # Step 4 — Configure server-to-server authentication in CRM
#
# **Purpose.** Run the official `ConfigureCrmServerSideSync.ps1` on the Deployment Tools server. It signs in to
# Graph as the app of step 3, reads the tenant id, adds the certificate as a key credential of the *Dynamics CRM*
# service principal (appId `00000007-0000-0000-c000-000000000000`) and its appId among its
# servicePrincipalNames, sets the deployment's `S2SDefaultAuthorizationServerPrincipalId` and
# `S2SDefaultAuthorizationServerMetadataUrl`, and the organization's `S2STenantId`. Secrets are passed as
# parameters (the PFX password as a SecureString), never formatted into script text.
#
# **Prerequisites.** Steps 1–3. The script reports failure by printing "Process Failed." and `exit 1` while the
# remote pipeline still completes: psbridge reads `$LASTEXITCODE` and stops with the script's own words.
#
# **What changes where.** In the tenant: the Dynamics CRM service principal's key credentials. In the CRM
# configuration database: ServerSettings and the organization's S2STenantId. When all of these already hold the
# wanted values, the script is not run. Then, with `teardown` on (the default), the app of step 3 loses its client
# secret (and the stored value) and its admin consent: nothing needs them any more, and a live secret of an app
# allowed `Application.ReadWrite.All` is a standing risk. The app registration stays, named in the record.
#
# **Roll back.** Remove the key credential (by its thumbprint) from the Dynamics CRM service principal with Graph
# (`PATCH /servicePrincipals/{id}` with the remaining `keyCredentials`); clear `S2STenantId` with
# `Set-CrmAdvancedSetting`.

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
pfx_path: str = ""                                                      # a CA-issued PFX to use; empty to generate a self-signed certificate (evaluation)
pfx_password: str = "lab:demo/contoso/pfx-password"                     # where the PFX password is kept (a generated certificate's new password is stored here)
client_secret: str = "lab:demo/contoso/client-secret"                   # where the app's client secret is stored when it is created (its value is never shown)
teardown: bool = True                                                   # once S2S is configured, remove the setup client secret (and its stored value) and the admin consent; the app registration stays
pfx_file: str = ""                                                      # fact from 10-certificate: local path of the PFX the later steps upload
thumbprint: str = ""                                                    # fact from 10-certificate: SHA-1 thumbprint of the S2S certificate
app_id: str = ""                                                        # fact from 30-entra-app: application (client) id of the app registration
tenant_id: str = ""                                                     # fact from 30-entra-app: Entra ID tenant GUID
client_secret_ref: str = ""                                             # fact from 30-entra-app: reference of the stored client secret
plan: bool = False                                                      # True: read-only, only say what would change

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import s2s as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep
cert = step.certificate_for(dep, customer, pfx_path, pfx_file, pfx_password, thumbprint, required=not plan)
admin = step.sign_in(dep, admin_account)
graph = step.graph_client(dep, admin)
app_id, tenant_id, client_secret_ref = step.entra_facts(graph, app_name, app_id, tenant_id,
                                                         client_secret_ref or client_secret)
cert

# %% [markdown]
# ## Before

# %%
before = step.s2s_state(dep, graph, cert.thumbprint, tenant_id)
before

# %% [markdown]
# ## Action

# %%
action = step.configure_s2s(dep, before, cert.pfx_file, pfx_password, app_id, tenant_id, client_secret_ref,
                             graph=graph, cert_der=cert.der, plan=plan)
action

# %% [markdown]
# ## After

# %%
after = step.s2s_state(dep, graph, cert.thumbprint, tenant_id)
if not plan:
    after.require("step 4 completed but")
after

# %% [markdown]
# ## Teardown: the setup secret and consent go

# %%
cleanup = step.remove_setup_access(graph, app_name, client_secret_ref, teardown=teardown,
                                   configured=after.ok, plan=plan)
cleanup

# %%
dep.journal()

# %% [markdown]
# ## Facts for the next steps

# %%
record("s2s_configured", after.ok)
record("setup_access_left", step.setup_access_left(graph, app_name))
record_changes(action.changes + cleanup.changes)
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
