"""Sign-in to Entra ID with msal: device code (the consultant), client secret or certificate
(unattended), with a token cache persisted per tenant and account.

::

    settings = CloudSettings.from_lab(lab_json)               # or CloudSettings.named("global")
    me = sign_in_device_code(settings, "contoso.onmicrosoft.com")   # shows the code and URL
    app = sign_in_client_secret(settings, tenant_id, client_id, "keyring:psbridge/contoso-app")
    app = sign_in_certificate(settings, tenant_id, client_id, Path("s2s.pfx"), "env:PFX_PASSWORD")

A :class:`SignIn` is the token provider a :class:`~psbridge.cloud.graph.GraphClient` uses:
``access_token()`` answers from the cache while the token is good and refreshes it silently
when not; ``invalidate()`` forces the next one to come from the authority.

A person's sign-in is cached per tenant and account, in
``<user cache dir>/psbridge/msal/<tenant>/<account>.json`` (override with ``cache_dir=`` or
``PSBRIDGE_TOKEN_CACHE``): a second sign-in for the same tenant and account reuses it
(refreshing silently) without a new device code. The cache is msal-extensions'
``PersistedTokenCache``: every change msal makes is merged into what is stored under a
cross-process lock, so two runs signed in as one account lose neither's tokens. It is encrypted
where the OS offers a store (:func:`open_persistence`): DPAPI on Windows, the Keychain on
macOS, libsecret on a Linux desktop (PyGObject and a running Secret Service). A Linux host
without one (a server, CI, an SSH session) keeps the file in plaintext, owner-only, and says
so once in the log (a warning naming the reason, which a notebook shows in its output);
``PSBRIDGE_TOKEN_CACHE_PROTECTION=encrypted`` refuses that fallback, ``=plaintext`` chooses it.
An app's tokens (secret, certificate) are kept in memory only, so every sign-in proves the
credential still works.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import msal
import msal_extensions
from msal_extensions.persistence import BasePersistence, PersistenceError

from psbridge.cloud.http import session_for
from psbridge.cloud.settings import CloudSettings
from psbridge.errors import CertificateError, CloudError
from psbridge.errors import SignInError as SignInError  # re-exported for its callers
from psbridge.files import write_atomic
from psbridge.secrets import Secret, SecretRef, resolve

log = logging.getLogger(__name__)

PROTECTION_ENV = "PSBRIDGE_TOKEN_CACHE_PROTECTION"
PROTECTION_MODES = ("auto", "encrypted", "plaintext")

# What step 3 does as the signed-in administrator.
SETUP_SCOPES = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "Organization.Read.All",
    "User.Read",
)


@dataclass(frozen=True)
class DeviceCode:
    """What the user must do: open ``verification_uri`` and enter ``user_code``."""

    user_code: str
    verification_uri: str
    message: str
    expires_in: int

    def _repr_html_(self) -> str:
        uri = escape(self.verification_uri)
        return (
            "<div style='border:1px solid #888;padding:8px'>"
            f"Open <a href='{uri}' target='_blank'>{uri}</a> and enter the code "
            f"<code style='font-size:140%'>{escape(self.user_code)}</code> "
            f"(valid {self.expires_in // 60} minutes).</div>"
        )


def show_device_code(code: DeviceCode) -> None:
    """Default ``on_code``: a box in a notebook, a line on a terminal."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is not None:
            display(code)
            return
    except ImportError:
        pass
    print(code.message, flush=True)


def cache_root(cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PSBRIDGE_TOKEN_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("psbridge")) / "msal"


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", part.lower())


class TokenCacheError(CloudError):
    """The token cache cannot be kept as asked (no encrypted store, or one that fails)."""


@dataclass(frozen=True)
class CacheProtection:
    """How a token cache file is protected: ``store`` names it, ``reason`` says why plaintext."""

    encrypted: bool
    store: str
    reason: str = ""

    def __str__(self) -> str:
        return self.store if self.encrypted else f"{self.store} ({self.reason})"


# Reasons already logged by this process: the fallback is said once, not at every sign-in.
_fallback_logged: set[str] = set()


def _protection_mode() -> str:
    mode = os.environ.get(PROTECTION_ENV, "").strip().lower() or "auto"
    if mode not in PROTECTION_MODES:
        raise TokenCacheError(f"{PROTECTION_ENV}={mode!r} is not one of {', '.join(PROTECTION_MODES)}")
    return mode


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(":. ")


class AtomicFilePersistence(msal_extensions.FilePersistence):  # type: ignore[misc]
    """msal-extensions' plaintext cache file, replaced whole at each save.

    ``FilePersistence.save`` truncates the file, then writes it; msal-extensions reads a cache
    without its lock (optimistically: it retries only a read that fails), and msal takes an empty
    file for an empty cache. So a run reading while a parallel run of the same account saved found
    no account and no refresh token, and was told to sign in again. A replaced file is the old one
    or the new one, never empty.
    """

    def save(self, content: str) -> None:
        write_atomic(self.get_location(), content, private=True)


def _store_name(persistence: BasePersistence) -> str:
    return {"FilePersistenceWithDataProtection": "DPAPI", "KeychainPersistence": "Keychain",
            "LibsecretPersistence": "libsecret"}.get(type(persistence).__name__, type(persistence).__name__)


def open_persistence(path: Path) -> tuple[BasePersistence, CacheProtection]:
    """Where a token cache at ``path`` is kept: the OS's encrypted store, or the explicit fallback.

    Windows and macOS always have one (DPAPI, Keychain), and a failure there is an error. On
    Linux, libsecret needs PyGObject and a Secret Service on D-Bus, which servers and CI lack:
    then (mode ``auto``) the cache is a plaintext file, owner-only, and a warning says so once
    per process with the reason. ``PSBRIDGE_TOKEN_CACHE_PROTECTION`` = ``encrypted`` makes the
    fallback an error instead, ``plaintext`` chooses it without trying the store.
    """
    mode = _protection_mode()
    if mode == "plaintext":
        reason = f"{PROTECTION_ENV}=plaintext"
    else:
        try:
            persistence = msal_extensions.build_encrypted_persistence(str(path))
        # What msal-extensions raises when the OS has no usable store: ImportError (no PyGObject),
        # ValueError (no Secret typelib), RuntimeError (no Secret Service, unsupported OS).
        except (ImportError, ValueError, RuntimeError, OSError) as e:
            reason = f"no encrypted store on this host: {_first_line(e)}"
            if mode == "encrypted" or sys.platform in ("win32", "darwin"):
                raise TokenCacheError(f"cannot encrypt the token cache {path}: {reason}") from e
        else:
            return persistence, CacheProtection(True, _store_name(persistence))
    if reason not in _fallback_logged:
        _fallback_logged.add(reason)
        log.warning("token cache: %s; keeping the sign-in cache in plaintext files readable by their "
                    "owner only (%s), under msal-extensions' file lock. %s=encrypted refuses this.",
                    reason, path.parent.parent, PROTECTION_ENV)
    return AtomicFilePersistence(str(path)), CacheProtection(False, "plaintext file", reason)


def token_cache(authority: str, account: str, cache_dir: Path | None = None) -> PersistedCache:
    """The persisted token cache of ``account`` at ``authority`` (a folder an authority, a file an account).

    The one way to a token cache for every sign-in psbridge makes with msal: Entra ID here, and
    AD FS for the CRM Web API (:mod:`psbridge.crm.webapi`).
    """
    return PersistedCache(cache_root(cache_dir) / _safe(authority) / f"{_safe(account)}.json")


class PersistedCache:
    """One account's msal token cache, kept by msal-extensions (see :func:`open_persistence`).

    ``cache`` is what msal is given: each change msal makes reloads what another process may
    have written, applies the change and writes the result, all under the cache's lock file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Owner-only folder as well as files: the names tell which accounts signed in here.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.persistence, self.protection = open_persistence(self.path)
        if self.protection.encrypted:
            _move_plaintext_into(self.path, self.persistence)
        self.cache = msal_extensions.PersistedTokenCache(self.persistence)

    def save(self) -> None:
        """Write the whole cache now, under its lock (msal's own changes are written as made)."""
        with msal_extensions.CrossPlatLock(f"{self.persistence.get_location()}.lockfile"):
            self.persistence.save(self.cache.serialize())
            self.cache.has_state_changed = False

    def merge(self, other: msal.TokenCache) -> None:
        """Add every credential in ``other`` (each a locked merge, as msal's own writes are)."""
        for kind in (msal.TokenCache.CredentialType.ACCOUNT, msal.TokenCache.CredentialType.ID_TOKEN,
                     msal.TokenCache.CredentialType.REFRESH_TOKEN,
                     msal.TokenCache.CredentialType.ACCESS_TOKEN,
                     msal.TokenCache.CredentialType.APP_METADATA):
            for entry in list(other.search(kind)):
                self.cache.modify(kind, entry, entry)


def _move_plaintext_into(path: Path, persistence: BasePersistence) -> None:
    """A cache file written in plaintext (by an older psbridge, or the fallback before a store
    was set up) moves into the encrypted store, and its plaintext is gone from the disk."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # absent, or already ciphertext (DPAPI)
        return
    if not text.lstrip().startswith("{"):
        return
    persistence.save(text)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        # Keychain and libsecret keep only a signal file at the path: empty it. (DPAPI has
        # already replaced the file with ciphertext.)
        if path.read_text(encoding="utf-8").lstrip().startswith("{"):
            write_atomic(path, "", private=True)
    log.info("token cache: moved the plaintext cache %s into %s", path, _store_name(persistence))


@dataclass
class SignIn:
    """A signed-in identity and the way to get its access tokens for Graph."""

    settings: CloudSettings
    tenant: str
    client_id: str
    kind: str  # device_code | client_secret | certificate
    scopes: list[str]
    account: dict[str, Any] | None = None
    _app: Any = field(default=None, repr=False)
    _cache: PersistedCache | None = field(default=None, repr=False)
    _force: bool = field(default=False, repr=False)
    _last: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def username(self) -> str | None:
        return self.account.get("username") if self.account else None

    @property
    def tenant_id(self) -> str | None:
        claims = self._last.get("id_token_claims") or {}
        return claims.get("tid") or (self.account or {}).get("realm") or _guid_or_none(self.tenant)

    @property
    def expires_on(self) -> dt.datetime | None:
        exp = self._last.get("expires_in")
        got = self._last.get("_at")
        return got + dt.timedelta(seconds=int(exp)) if exp and got else None

    def access_token(self) -> Secret:
        with self._lock:
            result = self._acquire()
            if "access_token" not in result:
                raise SignInError(f"cannot get a token for {self.settings.graph_url} as "
                                  f"{self.username or self.client_id}", result)
            self._force = False
            self._last = {k: v for k, v in result.items() if k in ("expires_in", "id_token_claims",
                                                                   "token_source")}
            self._last["_at"] = dt.datetime.now(dt.UTC)
            return Secret(result["access_token"])

    def _acquire(self) -> dict[str, Any]:
        if self.kind == "device_code":
            silent: dict[str, Any] | None = self._app.acquire_token_silent_with_error(
                self.scopes, account=self.account, force_refresh=self._force
            )
            return silent or {"error": "interaction_required",
                              "error_description": "the cached sign-in is gone; sign in again"}
        if self._force:
            self._app.remove_tokens_for_client()
        result: dict[str, Any] = self._app.acquire_token_for_client(scopes=self.scopes)
        return result

    def invalidate(self) -> None:
        with self._lock:
            self._force = True

    def __repr__(self) -> str:
        who = self.username or f"app {self.client_id}"
        tenant = self.tenant_id or self.tenant
        return f"SignIn({who} in tenant {tenant}, {self.kind}, {self.settings.name} cloud)"

    def _repr_html_(self) -> str:
        rows = {"identity": self.username or f"app {self.client_id}", "tenant": self.tenant_id or self.tenant,
                "method": self.kind, "cloud": self.settings.name, "scopes": " ".join(self.scopes),
                "token expires": self.expires_on.isoformat(timespec="seconds") if self.expires_on else "",
                "token cache": str(self._cache.protection) if self._cache else "in memory only"}
        cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                        for k, v in rows.items())
        return f"<table><caption>Signed in</caption>{cells}</table>"


def _guid_or_none(text: str) -> str | None:
    return text if re.fullmatch(r"[0-9a-fA-F-]{36}", text) else None


def _app_kwargs(settings: CloudSettings, tenant: str, cache: msal.TokenCache) -> dict[str, Any]:
    return {
        "authority": settings.authority(tenant),
        "instance_discovery": settings.instance_discovery,
        "http_client": session_for(settings),
        "token_cache": cache,
        "timeout": settings.timeout,
    }


def sign_in_device_code(settings: CloudSettings, tenant: str, *,
                        on_code: Callable[[DeviceCode], None] | None = None,
                        scopes: Sequence[str] = SETUP_SCOPES, account: str | None = None,
                        client_id: str | None = None, cache_dir: Path | None = None) -> SignIn:
    """Sign in as a person: reuse the cached sign-in for ``tenant`` (and ``account``) if there
    is one, otherwise show a device code with ``on_code`` and wait for the user."""
    client_id = client_id or settings.device_code_client_id
    full_scopes = [settings.graph_scope(s) if "/" not in s else s for s in scopes]
    folder = cache_root(cache_dir) / _safe(tenant)
    candidates = [folder / f"{_safe(account)}.json"] if account else sorted(folder.glob("*@*.json"))
    for path in candidates:
        if not path.exists():
            continue
        cache = PersistedCache(path)
        app = msal.PublicClientApplication(client_id, **_app_kwargs(settings, tenant, cache.cache))
        try:
            accounts = app.get_accounts(username=account) if account else app.get_accounts()
        except PersistenceError as e:
            # Unreadable (another user's DPAPI key, a keychain item gone): sign in afresh.
            log.warning("token cache: cannot read %s (%s); signing in again", path, e)
            continue
        for acct in accounts:
            signin = SignIn(settings, tenant, client_id, "device_code", full_scopes, acct, app, cache)
            with contextlib.suppress(SignInError):
                signin.access_token()
                return signin
    # The account's name, and so its file, is known only once the sign-in succeeded: until then
    # the tokens stay in memory, and a sign-in abandoned half-way leaves nothing on disk.
    pending = msal.SerializableTokenCache()
    app = msal.PublicClientApplication(client_id, **_app_kwargs(settings, tenant, pending))
    flow = app.initiate_device_flow(scopes=full_scopes)
    if "user_code" not in flow:
        raise SignInError("cannot start a device code sign-in", flow)
    (on_code or show_device_code)(DeviceCode(flow["user_code"], flow["verification_uri"], flow["message"],
                                             int(flow.get("expires_in", 900))))
    result = app.acquire_token_by_device_flow(flow)
    if "access_token" not in result:
        raise SignInError("device code sign-in failed", result)
    username = (result.get("id_token_claims") or {}).get("preferred_username") or "account"
    cache = PersistedCache(folder / f"{_safe(username)}.json")
    cache.merge(pending)
    app = msal.PublicClientApplication(client_id, **_app_kwargs(settings, tenant, cache.cache))
    acct = next(iter(app.get_accounts(username=username)), None)
    signin = SignIn(settings, tenant, client_id, "device_code", full_scopes, acct, app, cache)
    signin._last = {"expires_in": result.get("expires_in"), "id_token_claims": result.get("id_token_claims"),
                    "_at": dt.datetime.now(dt.UTC)}
    return signin


def _confidential(settings: CloudSettings, tenant: str, client_id: str, credential: Any, kind: str) -> SignIn:
    # An app's tokens stay in memory: re-getting one is cheap, and a cache on disk would let a
    # revoked or mistyped secret look valid until the cached token expired.
    try:
        app = msal.ConfidentialClientApplication(client_id, client_credential=credential,
                                                 authority=settings.authority(tenant),
                                                 instance_discovery=settings.instance_discovery,
                                                 http_client=session_for(settings), timeout=settings.timeout)
    except ValueError as e:
        if kind == "certificate" and "PKCS12" in str(e):
            raise CertificateError(f"cannot open {credential['private_key_pfx_path']}: wrong password or not "
                                   "a PFX", []) from None
        raise
    signin = SignIn(settings, tenant, client_id, kind, [settings.graph_default_scope], None, app, None)
    signin.access_token()  # fail here, clearly, rather than at the first Graph call
    return signin


def sign_in_client_secret(settings: CloudSettings, tenant: str, client_id: str,
                          secret: str | SecretRef | Secret) -> SignIn:
    """Sign in as an app with a client secret given by reference (``env:``, ``keyring:``, ...)."""
    value = secret if isinstance(secret, Secret) else resolve(secret)
    return _confidential(settings, tenant, client_id, value.reveal(), "client_secret")


def sign_in_certificate(settings: CloudSettings, tenant: str, client_id: str, pfx_path: Path,
                        password: str | SecretRef | Secret | None = None) -> SignIn:
    """Sign in as an app with a certificate (a PFX; its password by reference)."""
    credential: dict[str, Any] = {"private_key_pfx_path": str(pfx_path)}
    if password is not None:
        pw = password if isinstance(password, Secret) else resolve(password)
        credential["passphrase"] = pw.reveal()
    return _confidential(settings, tenant, client_id, credential, "certificate")
