"""CRM deployment operations over the PowerShell bridge: the official scripts and snap-in cmdlets.

Every operation takes a :class:`psbridge.remote.Session` (or several) and validates its inputs
before anything is sent; values travel as command parameters, never as script text.
"""

from psbridge.crm.certificates import (
    CrmCertificate,
    StoreCertificate,
    check_subject_unique,
    crm_certificates,
    store_certificates,
)
from psbridge.crm.leftovers import UPLOAD_FOLDER, Leftover, find_leftovers, sweep_leftovers
from psbridge.crm.organizations import Organization, get_organization, list_organizations
from psbridge.crm.prerequisites import Check, PrerequisiteFailed, Prerequisites, check_prerequisites
from psbridge.crm.reconfiguration import CertificateInstallation, ServerOutcome, certificate_reconfiguration
from psbridge.crm.scripts import (
    CERTIFICATE_RECONFIGURATION,
    CONFIGURE_SERVER_SIDE_SYNC,
    TOOLS_FOLDER,
    ScriptParameter,
    require_parameters,
    script_parameters,
    script_path,
)
from psbridge.crm.serversidesync import ServerSideSyncConfiguration, configure_server_side_sync
from psbridge.crm.settings import S2S_TENANT_ID, get_advanced_setting, set_advanced_setting, set_tenant_id
from psbridge.crm.snapin import SNAPIN, use_crm_snapin
from psbridge.crm.validation import PfxInfo, inspect_pfx

__all__ = [
    "CERTIFICATE_RECONFIGURATION",
    "CONFIGURE_SERVER_SIDE_SYNC",
    "S2S_TENANT_ID",
    "SNAPIN",
    "TOOLS_FOLDER",
    "UPLOAD_FOLDER",
    "CertificateInstallation",
    "Check",
    "CrmCertificate",
    "Leftover",
    "Organization",
    "PfxInfo",
    "PrerequisiteFailed",
    "Prerequisites",
    "ScriptParameter",
    "ServerOutcome",
    "ServerSideSyncConfiguration",
    "StoreCertificate",
    "certificate_reconfiguration",
    "check_prerequisites",
    "check_subject_unique",
    "configure_server_side_sync",
    "crm_certificates",
    "find_leftovers",
    "get_advanced_setting",
    "get_organization",
    "inspect_pfx",
    "list_organizations",
    "require_parameters",
    "script_parameters",
    "script_path",
    "set_advanced_setting",
    "set_tenant_id",
    "store_certificates",
    "sweep_leftovers",
    "use_crm_snapin",
]
