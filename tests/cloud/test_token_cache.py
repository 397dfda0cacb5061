"""The admin's token cache: encrypted where the OS has a store, an explicit logged fallback where
it has none (this CI host), and one cache shared by two processes without a lost write."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msal
import msal_extensions
import pytest

from psbridge.cloud import signin
from psbridge.cloud.signin import PROTECTION_ENV, PersistedCache, TokenCacheError, open_persistence

RT = msal.TokenCache.CredentialType.REFRESH_TOKEN


def _refresh_token(who: str, i: int) -> dict[str, str]:
    return {"credential_type": RT, "secret": f"rt-{who}-{i}", "home_account_id": f"{who}.{i}",
            "environment": "login.lab.test", "client_id": "psbridge-test", "target": "User.Read"}


def _stored(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _fresh_log_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signin, "_fallback_logged", set())
    monkeypatch.delenv(PROTECTION_ENV, raising=False)


def _no_store(message: str = "libsecret did not perform properly.\n* Headless mode is not supported."):
    def build(location: str) -> object:
        raise RuntimeError(message)
    return build


class _SignalFileStore(msal_extensions.FilePersistence):
    """Stands for Keychain or libsecret: the secret lives elsewhere, the path is a signal file."""

    is_encrypted = True

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.vault = Path(location + ".vault")

    def save(self, content: str) -> None:
        self.vault.write_text(content[::-1], encoding="utf-8")  # "encrypted"
        self.touch()

    def load(self) -> str:
        if not self.vault.exists():
            raise msal_extensions.persistence.PersistenceNotFound()
        return self.vault.read_text(encoding="utf-8")[::-1]


def test_this_host_without_a_store_uses_the_plaintext_fallback_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    persistence, protection = open_persistence(tmp_path / "t" / "a.json")
    if protection.encrypted:
        pytest.skip(f"this host has an encrypted store ({protection.store}); the fallback is tested below")
    assert sys.platform.startswith("linux")
    assert type(persistence) is signin.AtomicFilePersistence  # msal-extensions' file, saved atomically
    # CI has neither PyGObject nor a Secret Service on D-Bus: the reason names what is missing.
    assert "no encrypted store on this host" in protection.reason
    assert [r.levelno for r in caplog.records if r.name == signin.__name__] == [logging.WARNING]


def test_fallback_is_logged_once_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", _no_store())
    caplog.set_level(logging.INFO, logger=signin.__name__)
    first = PersistedCache(tmp_path / "contoso" / "admin@contoso.json")
    second = PersistedCache(tmp_path / "contoso" / "other@contoso.json")
    assert not first.protection.encrypted and not second.protection.encrypted
    assert "libsecret did not perform properly" in str(first.protection)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "plaintext" in warnings[0] and "libsecret did not perform properly" in warnings[0]
    assert f"{PROTECTION_ENV}=encrypted" in warnings[0]

    from psbridge.cloud.settings import CloudSettings
    from psbridge.cloud.signin import SignIn

    shown = SignIn(CloudSettings.named("global"), "contoso", "x", "device_code", [], None, None, first)
    assert "plaintext file (no encrypted store on this host: RuntimeError: libsecret did not perform " \
        "properly)" in shown._repr_html_()  # what a step's record shows of its sign-in
    first.cache.modify(RT, _refresh_token("a", 0), _refresh_token("a", 0))
    assert "rt-a-0" in json.dumps(_stored(first.path))
    if os.name == "posix":
        assert first.path.stat().st_mode & 0o077 == 0
        assert first.path.parent.stat().st_mode & 0o077 == 0


def test_encrypted_mode_refuses_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", _no_store())
    monkeypatch.setenv(PROTECTION_ENV, "encrypted")
    with pytest.raises(TokenCacheError, match=r"cannot encrypt the token cache .*libsecret did not perform"):
        PersistedCache(tmp_path / "t" / "a.json")
    assert not (tmp_path / "t" / "a.json").exists()


def test_windows_and_macos_never_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", _no_store("DPAPI failed"))
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(sys, "platform", platform)
        with pytest.raises(TokenCacheError, match="DPAPI failed"):
            open_persistence(tmp_path / "a.json")


def test_plaintext_chosen_without_trying_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", _no_store("must not be tried"))
    monkeypatch.setenv(PROTECTION_ENV, "plaintext")
    _, protection = open_persistence(tmp_path / "a.json")
    assert protection.reason == f"{PROTECTION_ENV}=plaintext"
    assert f"{PROTECTION_ENV}=plaintext" in caplog.text
    monkeypatch.setenv(PROTECTION_ENV, "sometimes")
    with pytest.raises(TokenCacheError, match="not one of auto, encrypted, plaintext"):
        open_persistence(tmp_path / "a.json")


def test_an_encrypted_store_is_used_and_an_old_plaintext_cache_moves_into_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", _SignalFileStore)
    path = tmp_path / "contoso" / "admin@contoso.json"
    old = msal.SerializableTokenCache()
    old.modify(RT, _refresh_token("old", 0), _refresh_token("old", 0))
    path.parent.mkdir()
    path.write_text(old.serialize(), encoding="utf-8")  # as psbridge wrote it before

    cache = PersistedCache(path)
    assert cache.protection.encrypted and cache.protection.store == "_SignalFileStore"
    assert "rt-old-0" not in path.read_text(encoding="utf-8")  # no plaintext token left
    assert [e["secret"] for e in cache.cache.search(RT)] == ["rt-old-0"]
    cache.cache.modify(RT, _refresh_token("new", 0), _refresh_token("new", 0))
    assert "rt-new-0" not in path.read_text(encoding="utf-8")
    again = PersistedCache(path)
    assert sorted(e["secret"] for e in again.cache.search(RT)) == ["rt-new-0", "rt-old-0"]
    assert not caplog.records or all(r.levelno < logging.WARNING for r in caplog.records)


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import msal
    from psbridge.cloud.signin import PersistedCache

    path, who, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    cache = PersistedCache(path)
    rt = msal.TokenCache.CredentialType.REFRESH_TOKEN
    while not go.exists():
        time.sleep(0.005)
    for i in range(count):
        entry = {"credential_type": rt, "secret": f"rt-{who}-{i}", "home_account_id": f"{who}.{i}",
                 "environment": "login.lab.test", "client_id": "psbridge-test", "target": "User.Read"}
        cache.cache.modify(rt, entry, entry)
    print(len(list(cache.cache.search(rt))))
""")


def test_two_processes_share_one_cache_without_losing_a_write(tmp_path: Path) -> None:
    """The old cache wrote its whole in-memory copy: two runs of one account each lost the
    other's tokens. msal-extensions reloads and merges under the lock at every change."""
    path, go, count = tmp_path / "contoso" / "admin@contoso.json", tmp_path / "go", 15
    env = {**os.environ, PROTECTION_ENV: "plaintext"}  # the same store on every host
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), who, str(count), str(go)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("first", "second")]
    time.sleep(1.5)  # both imported and waiting, so their writes interleave
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    secrets = {e["secret"] for e in _stored(path)[RT].values()}
    assert secrets == {f"rt-{who}-{i}" for who in ("first", "second") for i in range(count)}
    assert not list(path.parent.glob("*.lockfile"))  # the lock is gone with its holders


_SAVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from psbridge.cloud.signin import open_persistence
    persistence, _ = open_persistence(Path(sys.argv[1]))
    state = json.dumps({"RefreshToken": {f"rt-{i}": {"secret": "x" * 200} for i in range(200)}})
    for _ in range(int(sys.argv[2])):
        persistence.save(state)
""")


def test_a_cache_read_while_another_process_saves_is_never_empty(tmp_path: Path) -> None:
    """msal-extensions reads a cache without its lock, and msal takes an empty file for an empty
    cache: a save that truncated before writing made a parallel run of the same account find no
    refresh token ("sign in again"). A save replaces the file whole."""
    path = tmp_path / "contoso" / "crmadmin@lab.local.json"
    persistence, protection = open_persistence(path)
    assert not protection.encrypted  # this host; the store's own saves are not files
    persistence.save("{}")
    env = {**os.environ, PROTECTION_ENV: "plaintext"}
    saver = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), "400"], env=env,
                             stderr=subprocess.PIPE, text=True)
    reads, empty = 0, 0
    while saver.poll() is None:
        text = persistence.load()
        reads += 1
        if not text.strip():
            empty += 1
        else:
            json.loads(text)  # whole, never a part of a write
    assert saver.returncode == 0, saver.stderr.read() if saver.stderr else ""
    assert reads > 50 and empty == 0, (reads, empty)
    assert (path.stat().st_mode & 0o777) == 0o600
