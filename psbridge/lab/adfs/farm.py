"""What the AD FS farm knows, kept at ``<state>/adfs/adfs.json``: clients, relying parties, refresh tokens.

``add_client`` is ``Add-AdfsClient -ClientId -Name -RedirectUri`` (a public client unless given
a secret: a confidential one, its secret kept as a salted hash); ``add_relying_party`` is the
relying party trust the Dynamics 365 IFD configuration makes, named by its identifiers (the
organizations' URLs). Refresh tokens are kept as hashes only. Plain functions over one JSON
document, changed under a lock and replaced atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psbridge.files import lock_path, locked, write_atomic

FARM_FILE = "adfs.json"


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / FARM_FILE


def load(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_path(state_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    data.setdefault("clients", [])
    data.setdefault("relying_parties", [])
    data.setdefault("refresh_tokens", {})
    return data


@contextlib.contextmanager
def changing(state_dir: Path) -> Iterator[dict[str, Any]]:
    path = _path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(lock_path(path)):
        data = load(state_dir)
        yield data
        write_atomic(path, json.dumps(data, indent=1, sort_keys=True), private=True)


def _hash(salt: str, value: str) -> str:
    return hashlib.sha256((salt + value).encode("utf-8")).hexdigest()


def add_client(state_dir: Path, client_id: str, name: str, redirect_uri: str | list[str],
               secret: str | None = None, password_grant: bool = True) -> dict[str, Any]:
    """Register a client (or update it, as Set-AdfsClient would): public, or confidential with ``secret``."""
    uris = [redirect_uri] if isinstance(redirect_uri, str) else list(redirect_uri)
    entry: dict[str, Any] = {"ClientId": client_id.lower(), "Name": name, "RedirectUri": uris,
                             "ClientType": "Confidential" if secret else "Public", "Enabled": True,
                             "password_grant": password_grant}
    if secret:
        salt = secrets.token_hex(8)
        entry["secret"] = {"salt": salt, "hash": _hash(salt, secret)}
    with changing(state_dir) as data:
        data["clients"] = [c for c in data["clients"] if c["ClientId"] != entry["ClientId"]] + [entry]
    return {k: v for k, v in entry.items() if k != "secret"}


def add_relying_party(state_dir: Path, name: str, identifiers: list[str]) -> None:
    with changing(state_dir) as data:
        data["relying_parties"] = [r for r in data["relying_parties"] if r["Name"] != name] + [
            {"Name": name, "Identifier": list(identifiers)}]


def client(data: dict[str, Any], client_id: str) -> dict[str, Any] | None:
    wanted = client_id.strip().lower()
    return next((c for c in data["clients"] if c["ClientId"] == wanted and c.get("Enabled")), None)


def check_secret(entry: dict[str, Any], value: str) -> bool:
    h: dict[str, str] | None = entry.get("secret")
    return h is not None and hmac.compare_digest(h["hash"], _hash(h["salt"], value))


def relying_party(data: dict[str, Any], resource: str) -> dict[str, Any] | None:
    want = resource.strip().lower()
    for rp in data["relying_parties"]:
        if any(i.strip().lower() == want for i in rp["Identifier"]):
            found: dict[str, Any] = rp
            return found
    return None


def keep_refresh_token(state_dir: Path, token: str, record: dict[str, Any]) -> None:
    with changing(state_dir) as data:
        data["refresh_tokens"][hashlib.sha256(token.encode()).hexdigest()] = record


def refresh_record(state_dir: Path, token: str) -> dict[str, Any] | None:
    key = hashlib.sha256(token.encode()).hexdigest()
    rec: dict[str, Any] | None = load(state_dir)["refresh_tokens"].get(key)
    return rec
