"""The lab's CRM deployment as it stands on disk: what the emulated commands read and change.

One JSON document, ``<state>/world.json``, holds the deployment (configuration database:
``ServerSettings`` and the CRM certificates), the organizations and their settings, the
accounts and the servers (roles, build, script generation, ``LocalMachine\\My`` store with
private-key readers). Files uploaded to a server live under ``<state>/servers/<name>/files/``
(see :mod:`psbridge.lab.commands.filesystem`). Every change re-reads the document under a
lock and replaces it atomically, so the transport's threads, the ``psbridge lab`` CLI in
another process and a test reading the status never see half a change.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psbridge.errors import LabSettingError, NotInLab
from psbridge.errors import WorldError as WorldError  # re-exported for its callers
from psbridge.files import LockTimeout, lock_path, locked, retrying_on_windows, write_atomic

if TYPE_CHECKING:  # pandas costs ~0.8 s to import; only `lab status` needs it
    import pandas as pd

WORLD_FILE = "world.json"
FORMAT = 1

TOOLS_FOLDER = "C:\\Program Files\\Microsoft Dynamics CRM\\Tools"
CERTIFICATE_RECONFIGURATION = "CertificateReconfiguration.ps1"
CONFIGURE_SERVER_SIDE_SYNC = "ConfigureCrmServerSideSync.ps1"

# CRM 9.1 builds: the current one ships the Graph-era ConfigureCrmServerSideSync.ps1 (with
# -ClientID/-ClientSecret); the legacy one the MSOnline-era script without them.
CURRENT_BUILD = "9.1.32.7"
LEGACY_BUILD = "9.1.0.15"
GENERATIONS = {"current": CURRENT_BUILD, "legacy": LEGACY_BUILD}

ORG_NAMES = [
    "contoso",
    "fabrikam",
    "adventureworks",
    "northwind",
    "tailspin",
    "wingtip",
    "litware",
    "proseware",
]
ORG_FRIENDLY = {
    "contoso": "Contoso",
    "fabrikam": "Fabrikam",
    "adventureworks": "Adventure Works",
    "northwind": "Northwind Traders",
    "tailspin": "Tailspin Toys",
    "wingtip": "Wingtip Toys",
    "litware": "Litware",
    "proseware": "Proseware",
}

FIRST_SERVER_ROLES = ["Deployment Tools", "Asynchronous Processing Service", "Web Application Server"]
OTHER_SERVER_ROLES = ["Asynchronous Processing Service", "Web Application Server"]

DOMAIN = "LAB"
# The lab's Windows accounts: who may administer the server and the CRM deployment.
ACCOUNTS: dict[str, dict[str, bool]] = {
    "LAB\\crmadmin": {"local_admin": True, "deployment_admin": True},
    "LAB\\operator": {"local_admin": False, "deployment_admin": False},
}
SERVICE_ACCOUNTS = ["LAB\\CRMAsyncService", "LAB\\CRMAppPool", "NT AUTHORITY\\NETWORK SERVICE"]

_LOCK_TIMEOUT = 30.0


def org_names(count: int) -> list[str]:
    names = ORG_NAMES[:count]
    names += [f"org{i:02d}" for i in range(len(names) + 1, count + 1)]
    return names


def server_name(index: int) -> str:
    return f"CRM{index:02d}"


def tools_script_text(script: str, generation: str) -> str:
    """What the Tools folder holds on disk: a marker, so Get-FileHash tells builds apart."""
    build = GENERATIONS[generation]
    return (
        f"# {script} - Microsoft Dynamics CRM {build} ({generation} script generation)\r\n"
        "# psbridge lab: the behaviour of this script is emulated by psbridge.lab.commands.scripts\r\n"
    )


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


# --- locking -----------------------------------------------------------------------------------

_process_locks_guard = threading.Lock()
_shared: dict[str, World] = {}


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """The world's cross-process lock (an OS lock: a holder that dies releases it)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locked(lock_path(state_dir / WORLD_FILE), timeout=_LOCK_TIMEOUT))
        except LockTimeout as e:
            raise WorldError(f"the lab world is locked by another process ({e.path})") from None
        yield


class World:
    """The deployment, organizations and servers of one lab state directory."""

    def __init__(self, state_dir: Path, data: dict[str, Any],
                 seen: tuple[int, int, int] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.data = data
        self._seen = seen  # the file's (mtime, size, inode) when data was read: skip unchanged re-reads

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.state_dir / WORLD_FILE

    @classmethod
    def seed(cls, state_dir: Path, servers: int, orgs: int, legacy_servers: int = 0) -> World:
        """Create the world if ``state_dir`` has none, else load the one there (unchanged)."""
        state_dir = Path(state_dir)
        if servers < 1:
            raise LabSettingError("a deployment needs at least one server")
        if orgs < 0 or not 0 <= legacy_servers <= servers:
            raise LabSettingError("orgs must be >= 0 and legacy_servers between 0 and servers")
        state_dir.mkdir(parents=True, exist_ok=True)
        with _locked(state_dir):
            if (state_dir / WORLD_FILE).exists():
                return cls.load(state_dir)
            world = cls(state_dir, _seeded(servers, orgs, legacy_servers))
            world._write()
            for s in world.data["servers"]:
                world._write_tools(s)
            return world

    @classmethod
    def load(cls, state_dir: Path) -> World:
        path = Path(state_dir) / WORLD_FILE
        try:
            seen = _signature(path)  # taken first: a change after it makes the next reload read again
            data = json.loads(retrying_on_windows(lambda: path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise WorldError(f"no lab world at {path}: seed it first") from None
        except json.JSONDecodeError as e:
            raise WorldError(f"{path} is not a lab world: {e}") from None
        if data.get("format") != FORMAT:
            raise WorldError(f"{path} has world format {data.get('format')}, this psbridge reads {FORMAT}")
        return cls(Path(state_dir), data, seen)

    @classmethod
    def shared(cls, state_dir: Path) -> World:
        """One World a state directory in this process, re-read only when the file changed.

        Safe to share between threads: a change builds a new document and swaps it in, so a
        reader keeps a consistent (if older) one.
        """
        key = str(Path(state_dir).resolve())
        with _process_locks_guard:
            world = _shared.get(key)
        if world is None:
            world = cls.load(state_dir)
            with _process_locks_guard:
                world = _shared.setdefault(key, world)
        world.reload()
        return world

    def reload(self) -> None:
        """Read the world again if the file changed since this object last read or wrote it."""
        try:
            if self._seen is not None and _signature(self.path) == self._seen:
                return
        except FileNotFoundError:
            pass
        fresh = World.load(self.state_dir)
        self.data, self._seen = fresh.data, fresh._seen

    def _write(self) -> None:
        # Compact: an indented dump goes through json's pure-Python encoder, ten times slower.
        write_atomic(self.path, json.dumps(self.data, separators=(",", ":")))
        self._seen = _signature(self.path)

    @contextlib.contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        """Re-read, mutate and write back, atomically with respect to every other writer.

        If the block raises, nothing is written and the in-memory state is the one on disk.
        """
        with _locked(self.state_dir):
            # Always read under the lock: another process's replace can leave (mtime, size,
            # inode) equal to what we saw (coarse mtime, reused inode), and a skipped re-read
            # would silently drop that writer's change.
            fresh = World.load(self.state_dir)
            self.data, self._seen = fresh.data, fresh._seen
            working = json.loads(json.dumps(self.data))  # a deep copy, faster than copy.deepcopy
            yield working
            self.data = working
            self._write()

    def _write_tools(self, server: dict[str, Any]) -> None:
        from psbridge.lab.commands.filesystem import ServerFiles

        files = ServerFiles(self.state_dir, server["name"])
        for script in (CERTIFICATE_RECONFIGURATION, CONFIGURE_SERVER_SIDE_SYNC):
            files.write_bytes(
                f"{TOOLS_FOLDER}\\{script}", tools_script_text(script, server["generation"]).encode("utf-8")
            )

    # --- servers ---------------------------------------------------------------------------

    def server_names(self) -> list[str]:
        return [s["name"] for s in self.data["servers"]]

    def server(self, name: str) -> dict[str, Any]:
        for s in self.data["servers"]:
            if s["name"].lower() == name.lower():
                server: dict[str, Any] = s
                return server
        raise NotInLab(f"the lab has no server {name!r} (servers: {', '.join(self.server_names())})")

    def server_roles(self, name: str) -> list[str]:
        return list(self.server(name)["roles"])

    def server_generation(self, name: str) -> str:
        return str(self.server(name)["generation"])

    def store(self, server: str) -> list[dict[str, Any]]:
        """The server's ``Cert:\\LocalMachine\\My`` entries."""
        return list(self.server(server)["store"])

    # --- accounts --------------------------------------------------------------------------

    def account(self, user: str) -> dict[str, bool]:
        return dict(self.data["accounts"].get(_account_key(self.data, user), {}))

    def is_local_admin(self, server: str, user: str) -> bool:
        key = _account_key(self.data, user)
        return key.lower() in (a.lower() for a in self.server(server)["local_administrators"])

    def is_deployment_admin(self, user: str) -> bool:
        key = _account_key(self.data, user)
        return key.lower() in (a.lower() for a in self.data["deployment"]["administrators"])

    def knows_account(self, account: str) -> bool:
        """Whether a ``DOMAIN\\user`` or well-known name resolves (as NTAccount.Translate would)."""
        known = [
            *self.data["accounts"],
            *SERVICE_ACCOUNTS,
            "Network Service",
            "NETWORK SERVICE",
            "NT AUTHORITY\\SYSTEM",
            "LocalSystem",
        ]
        return account.strip().lower() in (k.lower() for k in known)

    # --- organizations ---------------------------------------------------------------------

    def organizations(self) -> list[dict[str, Any]]:
        return [
            {"name": o["name"], "friendly_name": o["friendly_name"], "id": o["id"]}
            for o in self.data["organizations"]
        ]

    def organization(self, name_or_id: str) -> dict[str, Any] | None:
        key = str(name_or_id).strip().lower()
        for o in self.data["organizations"]:
            if key in (o["name"].lower(), o["id"].lower()):
                return dict(o)
        return None

    def org_setting(self, org: str, setting: str) -> Any:
        found = self.organization(org)
        if found is None:
            known = ", ".join(o["name"] for o in self.data["organizations"]) or "none"
            raise NotInLab(f"the lab has no organization {org!r} (organizations: {known})")
        return found["settings"].get(setting)

    def server_settings(self) -> dict[str, Any]:
        return dict(self.data["deployment"]["server_settings"])

    def crm_certificates(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.data["deployment"]["certificates"]]

    # --- status ----------------------------------------------------------------------------

    def status_tables(self) -> dict[str, pd.DataFrame]:
        """What ``psbridge lab status`` shows: one table a concern (as it is on disk now)."""
        import pandas as pd

        if self.path.exists():
            self.reload()
        orgs = pd.DataFrame(
            [
                {
                    "organization": o["name"],
                    "friendly name": o["friendly_name"],
                    "id": o["id"],
                    "state": o["state"],
                    "version": o["version"],
                    "S2STenantId": o["settings"].get("S2STenantId"),
                }
                for o in self.data["organizations"]
            ],
            columns=["organization", "friendly name", "id", "state", "version", "S2STenantId"],
        )
        settings = pd.DataFrame(
            [
                {"entity": "ServerSettings", "setting": k, "value": v}
                for k, v in sorted(self.data["deployment"]["server_settings"].items())
            ]
            + [
                {"entity": f"Organization ({o['name']})", "setting": k, "value": v}
                for o in self.data["organizations"]
                for k, v in sorted(o["settings"].items())
            ],
            columns=["entity", "setting", "value"],
        )
        stores = pd.DataFrame(
            [
                {
                    "server": s["name"],
                    "generation": s["generation"],
                    "thumbprint": c["thumbprint"],
                    "subject": c["subject"],
                    "not after": c["not_after"],
                    "private key": c["has_private_key"],
                    "key readers": ", ".join(c.get("key_readers", [])),
                }
                for s in self.data["servers"]
                for c in s["store"]
            ],
            columns=[
                "server",
                "generation",
                "thumbprint",
                "subject",
                "not after",
                "private key",
                "key readers",
            ],
        )
        crm_certs = pd.DataFrame(
            [
                {
                    "type": c["certificate_type"],
                    "name": c["name"],
                    "thumbprint": c["thumbprint"],
                    "store find type": c["store_find_type"],
                    "expires": c["expiration_date"],
                    "id": c["id"],
                }
                for c in self.data["deployment"]["certificates"]
            ],
            columns=["type", "name", "thumbprint", "store find type", "expires", "id"],
        )
        servers = pd.DataFrame(
            [
                {
                    "server": s["name"],
                    "roles": ", ".join(s["roles"]),
                    "build": s["build"],
                    "generation": s["generation"],
                    "certificates": len(s["store"]),
                }
                for s in self.data["servers"]
            ],
            columns=["server", "roles", "build", "generation", "certificates"],
        )
        return {
            "servers": servers,
            "organizations": orgs,
            "configuration-database": settings,
            "certificate-stores": stores,
            "crm-certificates": crm_certs,
        }


def _account_key(data: dict[str, Any], user: str) -> str:
    """``crmadmin``, ``LAB\\crmadmin`` and ``crmadmin@lab`` all name the same account."""
    u = user.strip()
    if "@" in u:
        name, _, domain = u.partition("@")
        u = f"{domain.split('.')[0]}\\{name}"
    elif "\\" not in u:
        u = f"{data.get('domain', DOMAIN)}\\{u}"
    for known in data["accounts"]:
        if known.lower() == u.lower():
            return str(known)
    return u


def _seeded(servers: int, orgs: int, legacy_servers: int) -> dict[str, Any]:
    organizations = []
    for name in org_names(orgs):
        organizations.append(
            {
                "id": str(uuid.uuid4()),
                "name": name,
                "friendly_name": ORG_FRIENDLY.get(name, name.capitalize()),
                "state": "Enabled",
                "version": CURRENT_BUILD,
                "database_name": f"{name}_MSCRM",
                "sql_server": "CRMSQL01",
                "srs_url": "http://crmsql01/ReportServer",
                "base_currency_code": "USD",
                "base_language_code": 1033,
                "settings": {"S2STenantId": None},
            }
        )
    admins = [a for a, v in ACCOUNTS.items() if v["local_admin"]]
    server_list = []
    for i in range(1, servers + 1):
        # The last servers are the old ones: the Deployment Tools server is always current
        # unless every server is legacy.
        generation = "legacy" if i > servers - legacy_servers else "current"
        server_list.append(
            {
                "name": server_name(i),
                "roles": list(FIRST_SERVER_ROLES if i == 1 else OTHER_SERVER_ROLES),
                "build": GENERATIONS[generation],
                "generation": generation,
                "local_administrators": admins,
                "store": [],
            }
        )
    return {
        "format": FORMAT,
        "domain": DOMAIN,
        "accounts": copy.deepcopy(ACCOUNTS),
        "deployment": {
            "administrators": [a for a, v in ACCOUNTS.items() if v["deployment_admin"]],
            "server_settings": {
                "S2SDefaultAuthorizationServerPrincipalId": None,
                "S2SDefaultAuthorizationServerMetadataUrl": None,
                "AsyncRemoveCompletedJobs": True,
                "AsyncRemoveCompletedWorkflows": True,
            },
            "certificates": [],
        },
        "organizations": organizations,
        "servers": server_list,
    }
