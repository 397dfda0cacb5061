"""The twin's directory as tables, read from ``<state>/entra.json`` without starting anything.

For ``psbridge lab status``: what step 3 and ConfigureCrmServerSideSync changed in the tenant
(app registrations and their secrets, consents, the key credentials on service principals).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def status_tables(state_dir: Path) -> dict[str, pd.DataFrame]:
    path = Path(state_dir) / "entra.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    sps = {s["id"]: s for s in data["servicePrincipals"]}
    apps = pd.DataFrame(
        [{"displayName": a["displayName"], "appId": a["appId"], "signInAudience": a["signInAudience"],
          "redirectUris": ", ".join((a.get("web") or {}).get("redirectUris", [])),
          "clientSecrets": len(a.get("passwordCredentials", [])),
          "secretsExpire": ", ".join(p["endDateTime"] for p in a.get("passwordCredentials", []))}
         for a in data["applications"]],
        columns=["displayName", "appId", "signInAudience", "redirectUris", "clientSecrets", "secretsExpire"],
    )
    roles = {r["id"]: r["value"] for s in sps.values() for r in s.get("appRoles", [])}
    consents = pd.DataFrame(
        [{"client": sps.get(a["principalId"], {}).get("displayName"), "resource": a["resourceDisplayName"],
          "type": "Application", "permission": roles.get(a["appRoleId"], a["appRoleId"])}
         for a in data["appRoleAssignments"]]
        + [{"client": sps.get(g["clientId"], {}).get("displayName"),
            "resource": sps.get(g["resourceId"], {}).get("displayName"),
            "type": "Delegated", "permission": g["scope"]}
           for g in data["oauth2PermissionGrants"]],
        columns=["client", "resource", "type", "permission"],
    )
    keys = pd.DataFrame(
        [{"servicePrincipal": s["displayName"], "appId": s["appId"],
          "thumbprint": k.get("customKeyIdentifier"), "subject": k.get("displayName"),
          "usage": k.get("usage"), "start": k.get("startDateTime"), "end": k.get("endDateTime")}
         for s in data["servicePrincipals"] for k in s.get("keyCredentials", [])],
        columns=["servicePrincipal", "appId", "thumbprint", "subject", "usage", "start", "end"],
    )
    return {"entra app registrations": apps, "entra consents": consents, "entra key credentials": keys}
