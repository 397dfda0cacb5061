"""What every Entra ID tenant already holds: the first-party service principals.

The ids are Microsoft's real ones (Microsoft Graph permissions reference), so that code
resolving a permission *by name* against the Graph service principal does a real lookup
and gets the id a real tenant would give. Only a handful of Graph's several hundred
permissions are seeded: the ones psbridge needs and enough neighbours to make a lookup
by name meaningful (``Application.Read.All`` next to ``Application.ReadWrite.All``...).
"""

from __future__ import annotations

from typing import Any

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
CRM_APP_ID = "00000007-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
# "Microsoft Graph Command Line Tools": the public client a consultant signs in with.
GRAPH_CLI_APP_ID = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

# (value, application role id, delegated scope id, admin consent required for delegated)
_GRAPH_PERMISSIONS: list[tuple[str, str | None, str | None, bool]] = [
    ("Application.Read.All", "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
     "c79f8feb-a9db-4090-85f9-90d820caa0eb", True),
    ("Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
     "bdfbf15f-ee85-4955-8675-146e8e5296b5", True),
    ("Application.ReadWrite.OwnedBy", "18a4783c-866b-4cc7-a460-3d5e5662c884", None, True),
    ("AppRoleAssignment.ReadWrite.All", "06b708a9-e830-4db3-a914-8e69da51d44f",
     "84bccea3-f856-4a8a-967b-dbe0a3d53a64", True),
    ("DelegatedPermissionGrant.ReadWrite.All", "8e8e4742-1d95-4f68-9d56-6ee75648c72a",
     "41ce6ca6-6826-4807-84f1-1c82854f7ee5", True),
    ("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
     "06da0dbc-49e2-44d2-8312-53f166ab848a", True),
    ("Directory.ReadWrite.All", "19dbc75e-c2e2-444c-a770-ec69d8559fc7", None, True),
    ("Directory.AccessAsUser.All", None, "0e263e50-5827-48a4-b97c-d940288653c7", True),
    ("Organization.Read.All", "498476ce-e0fe-48b0-b801-37ba7e2685c6",
     "4908d5b9-3fb2-4b1e-9336-1888b7937185", True),
    ("Organization.ReadWrite.All", "292d869f-3427-49a8-9dab-8c70152b74e9", None, True),
    ("User.Read", None, "e1fe6dd8-ba31-4d61-89e7-88639da4683d", False),
    ("User.Read.All", "df021288-bdef-4463-88db-98f22de89214", "a154be20-db9c-4678-8ab7-66f6cc099a59", True),
    ("Group.Read.All", "5b567255-7703-4780-807c-7be8301ae99b", None, True),
    ("Mail.Send", "b633e1c5-b582-4048-a93e-9f11b44c7e96", "e383f46e-2787-4529-855e-0e479a3ffac0", False),
    ("openid", None, "37f7f235-527c-4136-accd-4a02d197296e", False),
    ("profile", None, "14dad69e-099b-42c9-810b-d002981feec1", False),
    ("email", None, "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0", False),
    ("offline_access", None, "7427e0e9-2fba-42fe-b0c0-848c9e6a8182", False),
]


def _words(value: str) -> str:
    return value.replace(".", " ").replace("ReadWrite", "read and write").replace("All", "all").lower()


def graph_app_roles() -> list[dict[str, Any]]:
    return [
        {
            "id": role_id,
            "value": value,
            "displayName": _words(value).capitalize(),
            "description": f"Allows the app to {_words(value)} without a signed-in user.",
            "allowedMemberTypes": ["Application"],
            "isEnabled": True,
            "origin": "Application",
        }
        for value, role_id, _scope, _admin in _GRAPH_PERMISSIONS
        if role_id
    ]


def graph_scopes() -> list[dict[str, Any]]:
    return [
        {
            "id": scope_id,
            "value": value,
            "type": "Admin" if admin else "User",
            "adminConsentDisplayName": _words(value).capitalize(),
            "adminConsentDescription": f"Allows the app to {_words(value)} on behalf of the signed-in user.",
            "userConsentDisplayName": _words(value).capitalize(),
            "userConsentDescription": f"Allows the app to {_words(value)} on your behalf.",
            "isEnabled": True,
        }
        for value, _role, scope_id, admin in _GRAPH_PERMISSIONS
        if scope_id
    ]


def first_party_service_principals() -> list[dict[str, Any]]:
    """The seeded service principals, without tenant-specific ids (the directory adds them)."""
    return [
        {
            "appId": GRAPH_APP_ID,
            "displayName": "Microsoft Graph",
            "servicePrincipalNames": [
                GRAPH_APP_ID, "https://graph.microsoft.com", "https://graph.microsoft.us",
                "https://dod-graph.microsoft.us", "https://canary.graph.microsoft.com",
                "https://ags.windows.net",
            ],
            "appRoles": graph_app_roles(),
            "oauth2PermissionScopes": graph_scopes(),
        },
        {
            "appId": CRM_APP_ID,
            "displayName": "Dynamics CRM",
            "servicePrincipalNames": [CRM_APP_ID, "Microsoft.CRM", "https://admin.services.crm.dynamics.com"],
            "appRoles": [],
            "oauth2PermissionScopes": [
                {
                    "id": "78ce3f0f-a1ce-49c2-8cde-64b5c0896db4",
                    "value": "user_impersonation",
                    "type": "User",
                    "adminConsentDisplayName": "Access Common Data Service as organization users",
                    "adminConsentDescription": "Allows the application to access Common Data Service "
                                               "acting as users in the organization.",
                    "userConsentDisplayName": "Access Common Data Service as organization users",
                    "userConsentDescription": "Allows the application to access Common Data Service as you.",
                    "isEnabled": True,
                }
            ],
        },
        {
            "appId": EXCHANGE_APP_ID,
            "displayName": "Office 365 Exchange Online",
            "servicePrincipalNames": [
                EXCHANGE_APP_ID, "https://outlook.office365.com", "https://outlook.office.com",
                "https://ps.outlook.com",
            ],
            "appRoles": [],
            "oauth2PermissionScopes": [],
        },
        {
            "appId": "00000003-0000-0ff1-ce00-000000000000",
            "displayName": "Office 365 SharePoint Online",
            "servicePrincipalNames": ["00000003-0000-0ff1-ce00-000000000000", "Microsoft.SharePoint"],
            "appRoles": [],
            "oauth2PermissionScopes": [],
        },
        {
            "appId": "c5393580-f805-4401-95e8-94b7a6ef2fc2",
            "displayName": "Office 365 Management APIs",
            "servicePrincipalNames": ["c5393580-f805-4401-95e8-94b7a6ef2fc2", "https://manage.office.com"],
            "appRoles": [],
            "oauth2PermissionScopes": [],
        },
        {
            "appId": "00000002-0000-0000-c000-000000000000",
            "displayName": "Windows Azure Active Directory",
            "servicePrincipalNames": ["00000002-0000-0000-c000-000000000000", "https://graph.windows.net"],
            "appRoles": [],
            "oauth2PermissionScopes": [],
        },
        {
            "appId": GRAPH_CLI_APP_ID,
            "displayName": "Microsoft Graph Command Line Tools",
            "servicePrincipalNames": [GRAPH_CLI_APP_ID],
            "appRoles": [],
            "oauth2PermissionScopes": [],
            # A first-party public client: device code sign-in needs no secret.
            "_publicClient": True,
        },
    ]
