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
# # Step 0 — Prerequisites
#
# **Purpose.** Before anything changes, check that the runbook can do its work: a PowerShell session opens on
# every CRM server that runs the Asynchronous Processing Service, the CRM snap-in loads, the two official scripts
# are in the CRM Tools folder, the organization exists, the installed `ConfigureCrmServerSideSync.ps1` takes
# `-ClientID`/`-ClientSecret` (older CRM 9.1 builds ship an MSOnline-era script that does not), and the Entra ID
# tenant answers.
#
# **Prerequisites.** An account that is a local administrator on the servers and a CRM deployment administrator;
# WinRM reachable (5985 with message encryption, or 5986 over TLS); outbound HTTPS from the CRM servers to
# Entra ID and Microsoft Graph (MSOnline is retired: Graph is the way).
#
# **What changes where.** Nothing, anywhere. Every check is read-only.
#
# **Roll back.** Nothing to roll back: this step only reads.

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
plan: bool = False                                                      # True: read-only, only say what would change

# %% [markdown]
# ## The deployment
# Servers, accounts and the cloud come from the parameters (in the lab, from `lab.json`).

# %%
from psbridge.runbook import record, record_changes
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps import preflight as step

dep = Deployment.from_params(
    organization, lab=lab, servers=servers, deployment_server=deployment_server, winrm_scheme=winrm_scheme,
    winrm_user=winrm_user, winrm_password=winrm_password, ca_bundle=ca_bundle, tools_folder=tools_folder,
    service_account=service_account, cloud=cloud, tenant=tenant,
)
dep

# %% [markdown]
# ## Checks
# Each row is one check; all of them run, so every problem shows at once.

# %%
checks = step.check(dep)
checks

# %%
checks.require()  # stops the runbook here, naming each unmet prerequisite

# %% [markdown]
# ## Leftovers of earlier runs
# A PFX waits in `C:\Windows\Temp\psbridge` on a server only while a script reads it. A run that was killed
# in between leaves it there: it is removed now (in a plan, listed).

# %%
cleanup = step.sweep_leftovers(dep, plan=plan)
cleanup

# %% [markdown]
# ## Facts for the next steps

# %%
record("organization_id", checks.organization_id)
record("async_servers", dep.servers)
record_changes(cleanup)

# %%
dep.close()  # ends the PowerShell sessions (WinRM shells) this step opened on the servers
