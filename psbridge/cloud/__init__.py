"""psbridge.cloud: Entra ID sign-in (msal) and the Microsoft Graph operations of step 3.

The whole step, as a notebook runs it::

    from psbridge.cloud import *
    settings = CloudSettings.from_lab(lab_json)          # or CloudSettings.named("global")
    admin = sign_in_device_code(settings, "contoso.onmicrosoft.com")
    graph = GraphClient(settings, admin)
    app = ensure_app(graph, "psbridge S2S", "https://localhost/psbridge")
    secret = ensure_client_secret(graph, app, "keyring:psbridge/contoso-s2s")
    access = ensure_required_access(graph, app)
    consent = grant_admin_consent(graph, app)
    tenant_id = tenant_id_from_graph(graph)
    # ... ConfigureCrmServerSideSync on the CRM server, then:
    crm = read_crm_service_principal(graph)
    setup_access(graph, app)                             # what teardown would remove (read-only)
    teardown(graph, app, secret.secret_ref)

Every operation is idempotent (find, then create or update) and returns a model with a
readable repr and an HTML view. No secret value is logged, raised or returned. What can go
wrong is a :class:`CloudError` (see :mod:`psbridge.errors`).
"""

from psbridge.cloud.apps import (
    delete_app,
    ensure_app,
    ensure_client_secret,
    find_app,
    get_app,
    remove_client_secrets,
)
from psbridge.cloud.consent import (
    STEP3_PERMISSIONS,
    ensure_required_access,
    grant_admin_consent,
    resolve_permissions,
    revoke_admin_consent,
)
from psbridge.cloud.crm_sp import read_crm_service_principal, trust_certificate, untrust_certificate
from psbridge.cloud.graph import GraphClient, GraphError, odata_quote
from psbridge.cloud.models import (
    AppRegistration,
    ConsentResult,
    CrmServicePrincipal,
    Permission,
    RequiredAccess,
    SecretInfo,
    TeardownReport,
)
from psbridge.cloud.settings import CLOUDS, CloudSettings
from psbridge.cloud.signin import (
    DeviceCode,
    SignIn,
    SignInError,
    sign_in_certificate,
    sign_in_client_secret,
    sign_in_device_code,
)
from psbridge.cloud.teardown import setup_access, teardown
from psbridge.cloud.tenant import TenantLookupError, tenant_id_from_discovery, tenant_id_from_graph
from psbridge.errors import AmbiguousInTenant, CloudError, ForeignHostRefused, NotFoundInTenant

__all__ = [
    "CLOUDS",
    "STEP3_PERMISSIONS",
    "AmbiguousInTenant",
    "AppRegistration",
    "CloudError",
    "CloudSettings",
    "ConsentResult",
    "CrmServicePrincipal",
    "DeviceCode",
    "ForeignHostRefused",
    "GraphClient",
    "GraphError",
    "NotFoundInTenant",
    "Permission",
    "RequiredAccess",
    "SecretInfo",
    "SignIn",
    "SignInError",
    "TeardownReport",
    "TenantLookupError",
    "delete_app",
    "ensure_app",
    "ensure_client_secret",
    "ensure_required_access",
    "find_app",
    "get_app",
    "grant_admin_consent",
    "odata_quote",
    "read_crm_service_principal",
    "remove_client_secrets",
    "resolve_permissions",
    "revoke_admin_consent",
    "setup_access",
    "sign_in_certificate",
    "sign_in_client_secret",
    "sign_in_device_code",
    "teardown",
    "tenant_id_from_discovery",
    "tenant_id_from_graph",
    "trust_certificate",
    "untrust_certificate",
]
