"""The twin's directory: one Entra ID tenant, kept at ``<state>/entra.json``.

Objects are stored in Graph's own JSON shape so the Graph handlers serve them nearly as
they are. What Graph never returns is kept beside the objects, never inside them: a client
secret is stored only as a salted hash (the value exists once, in the ``addPassword``
answer), and refresh tokens only as hashes.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psbridge.files import lock_path, locked, write_atomic
from psbridge.lab.entra import seed

DEFAULT_DOMAIN = "psbridgelab.onmicrosoft.com"
ADMIN_NAME = "admin"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def graph_time(t: dt.datetime) -> str:
    """Graph's DateTimeOffset form: ``2026-05-21T10:00:00Z``."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_graph_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def secret_hash(salt: str, value: str) -> str:
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


class Directory:
    """The tenant's state. Thread-safe: every change goes through :meth:`change`."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.lock = threading.RLock()

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def load_or_seed(cls, state_dir: Path, domain: str = DEFAULT_DOMAIN) -> Directory:
        path = Path(state_dir) / "entra.json"
        # Two processes starting a twin on one new state dir must not seed two tenants.
        with locked(lock_path(path)):
            if path.exists():
                return cls(path, json.loads(path.read_text(encoding="utf-8")))
            d = cls(path, _seeded(domain))
            d.save()
            return d

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    @contextlib.contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """Mutate the data and persist it, atomically with respect to other requests."""
        with self.lock:
            before = copy.deepcopy(self.data)
            try:
                yield self.data
            except BaseException:
                self.data = before
                raise
            self.save()

    # --- the tenant ----------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        return str(self.data["tenant"]["id"])

    @property
    def domain(self) -> str:
        return str(self.data["tenant"]["domain"])

    @property
    def admin(self) -> dict[str, Any]:
        return dict(self.data["users"][0])

    def knows_tenant(self, tenant: str) -> bool:
        t = tenant.lower()
        return t in (self.tenant_id, self.domain.lower(), "organizations", "common")

    def user_by_upn(self, upn: str) -> dict[str, Any] | None:
        return next((u for u in self.data["users"] if u["userPrincipalName"].lower() == upn.lower()), None)

    def user_by_id(self, oid: str) -> dict[str, Any] | None:
        return next((u for u in self.data["users"] if u["id"] == oid), None)

    # --- lookups -------------------------------------------------------------------------

    def objects(self, collection: str) -> list[dict[str, Any]]:
        return list(self.data[collection])

    def by_id(self, collection: str, object_id: str) -> dict[str, Any] | None:
        return next((o for o in self.data[collection] if o["id"] == object_id), None)

    def app_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return next((a for a in self.data["applications"] if a["appId"] == app_id), None)

    def sp_by_app_id(self, app_id: str) -> dict[str, Any] | None:
        return next((s for s in self.data["servicePrincipals"] if s["appId"] == app_id), None)

    def graph_sp(self) -> dict[str, Any]:
        sp = self.sp_by_app_id(seed.GRAPH_APP_ID)
        assert sp is not None
        return sp

    # --- credentials ---------------------------------------------------------------------

    def add_password_hash(self, key_id: str, value: str) -> None:
        salt = secrets.token_hex(8)
        self.data["passwordHashes"][key_id] = {"salt": salt, "hash": secret_hash(salt, value)}

    def check_client_secret(self, app: dict[str, Any], value: str) -> bool:
        now = now_utc()
        for cred in app.get("passwordCredentials", []):
            h = self.data["passwordHashes"].get(cred["keyId"])
            if not h or parse_graph_time(cred["endDateTime"]) < now:
                continue
            if hmac.compare_digest(h["hash"], secret_hash(h["salt"], value)):
                return True
        return False

    def app_roles_granted(self, client_sp: dict[str, Any], resource_sp: dict[str, Any]) -> list[str]:
        """Values of the resource's app roles assigned to the client (what ``roles`` carries)."""
        ids = {
            a["appRoleId"]
            for a in self.data["appRoleAssignments"]
            if a["principalId"] == client_sp["id"] and a["resourceId"] == resource_sp["id"]
        }
        return sorted(r["value"] for r in resource_sp.get("appRoles", []) if r["id"] in ids)

    def delegated_grant(self, client_sp: dict[str, Any], resource_sp: dict[str, Any]) -> set[str]:
        scopes: set[str] = set()
        for g in self.data["oauth2PermissionGrants"]:
            if g["clientId"] == client_sp["id"] and g["resourceId"] == resource_sp["id"]:
                scopes.update(g.get("scope", "").split())
        return scopes

    # --- refresh tokens (hashes only) ----------------------------------------------------

    def keep_refresh_token(self, token: str, record: dict[str, Any]) -> None:
        with self.change() as data:
            data["refreshTokens"][hashlib.sha256(token.encode()).hexdigest()] = record

    def take_refresh_token(self, token: str) -> dict[str, Any] | None:
        """Redeem a refresh token: it is single-use, as Entra rotates them."""
        with self.change() as data:
            rec: dict[str, Any] | None = data["refreshTokens"].pop(
                hashlib.sha256(token.encode()).hexdigest(), None
            )
            return rec


def new_id() -> str:
    return str(uuid.uuid4())


def _seeded(domain: str) -> dict[str, Any]:
    tenant_id = new_id()
    created = graph_time(now_utc())
    sps = []
    for sp in seed.first_party_service_principals():
        sps.append(
            {
                "id": new_id(),
                "accountEnabled": True,
                "appOwnerOrganizationId": seed.MICROSOFT_TENANT,
                "servicePrincipalType": "Application",
                "keyCredentials": [],
                "passwordCredentials": [],
                "tags": [],
                **sp,
            }
        )
    return {
        "tenant": {
            "id": tenant_id,
            "domain": domain,
            "displayName": "psbridge lab",
            "createdDateTime": created,
        },
        "users": [
            {
                "id": new_id(),
                "userPrincipalName": f"{ADMIN_NAME}@{domain}",
                "displayName": "Lab Administrator",
                "mail": f"{ADMIN_NAME}@{domain}",
                "directoryRoles": ["Global Administrator"],
            }
        ],
        "applications": [],
        "servicePrincipals": sps,
        "appRoleAssignments": [],
        "oauth2PermissionGrants": [],
        "passwordHashes": {},
        "refreshTokens": {},
    }
