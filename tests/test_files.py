"""Files several processes touch: atomic writes and cross-process locks, with real OS processes.

Each test starts its workers with the ``spawn`` method (as on Windows and macOS): fresh
interpreters that share nothing with this one but the files. Waits are bounded safety limits,
never measurements.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from psbridge import files, secrets
from psbridge.lab import background
from psbridge.lab.orchestrator import LabError
from psbridge.lab.world import World

PROCESSES = 4
ROUNDS = 25
WAIT = 120.0  # seconds a test waits for a worker at most: a hang fails, a slow machine does not

spawn = multiprocessing.get_context("spawn")


def _run_all(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    procs = [spawn.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT)
    for p in procs:
        if p.is_alive():  # pragma: no cover - only on a hang
            p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)


def _no_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(files.TEMPORARY_SUFFIX))


def _posix_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- workers (module level: a spawned process imports them by name) ------------------------------


def _increment_world(state: str, worker: int, start: Any) -> None:
    start.wait(WAIT)
    world = World.load(Path(state))
    for i in range(ROUNDS):
        with world.change() as data:
            settings = data["deployment"]["server_settings"]
            settings["counter"] = settings.get("counter", 0) + 1
            settings.setdefault("log", []).append(f"{worker}:{i}")


def _store_lab_secrets(state: str, worker: int, start: Any) -> None:
    os.environ["PSBRIDGE_LAB_STATE"] = state
    start.wait(WAIT)
    for i in range(ROUNDS):
        secrets.store(f"lab:workers/{worker}/{i}", f"value {worker}/{i} 'q' \\ $x")
    secrets.delete(f"lab:workers/{worker}/0")


def _write_whole(target: str, worker: int, start: Any) -> None:
    start.wait(WAIT)
    for _ in range(ROUNDS):
        files.write_atomic(Path(target), _content(worker))


def _content(worker: int) -> bytes:
    # Large enough that a torn write would show: several pages of one writer's own bytes.
    body = bytes([65 + worker]) * 200_000
    return json.dumps({"worker": worker, "size": len(body)}).encode() + b"\n" + body


def _hold_lock(lock: str, held: Any) -> None:
    with files.locked(Path(lock)):
        held.set()
        threading.Event().wait(WAIT)  # until killed


def _change_world_and_hang(state: str, held: Any) -> None:
    world = World.load(Path(state))
    with world.change() as data:
        data["deployment"]["server_settings"]["half-done"] = True
        held.set()
        threading.Event().wait(WAIT)  # killed before the change is written


def _claim_lab(state: str, held: Any) -> None:
    claimed = background._claim(Path(state))  # kept: a claim nobody holds is released
    held.set()
    threading.Event().wait(WAIT)
    claimed.close()


def _start_event() -> Any:
    return spawn.Event()


# --- many processes, nothing lost ----------------------------------------------------------------


def test_world_changes_from_many_processes_lose_nothing(tmp_path: Path) -> None:
    World.seed(tmp_path, servers=1, orgs=1)
    start = _start_event()
    procs = [spawn.Process(target=_increment_world, args=(str(tmp_path), w, start)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(WAIT)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    settings = World.load(tmp_path).server_settings()
    assert settings["counter"] == PROCESSES * ROUNDS
    assert sorted(settings["log"]) == sorted(f"{w}:{i}" for w in range(PROCESSES) for i in range(ROUNDS))
    assert _no_temporaries(tmp_path) == []


def test_lab_secret_store_writes_from_many_processes_lose_nothing(tmp_path: Path) -> None:
    start = _start_event()
    start.set()
    _run_all(_store_lab_secrets, [(str(tmp_path), w, start) for w in range(PROCESSES)])
    stored = json.loads((tmp_path / "secrets.json").read_text(encoding="utf-8"))
    assert stored == {f"workers/{w}/{i}": f"value {w}/{i} 'q' \\ $x"
                      for w in range(PROCESSES) for i in range(1, ROUNDS)}
    assert _no_temporaries(tmp_path) == []
    if os.name == "posix":
        assert _posix_mode(tmp_path / "secrets.json") == 0o600


def test_concurrent_atomic_writes_leave_one_writers_whole_content(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    files.write_atomic(target, _content(0))
    start = _start_event()
    procs = [spawn.Process(target=_write_whole, args=(str(target), w, start)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    wholes = {_content(w) for w in range(PROCESSES)}
    seen = 0
    # Read while they write: every read is one writer's whole content, never a mix or a part.
    while any(p.is_alive() for p in procs):
        data = files.retrying_on_windows(target.read_bytes)
        assert data in wholes
        seen += 1
    for p in procs:
        p.join(WAIT)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    assert seen > 0
    assert target.read_bytes() in wholes
    assert _no_temporaries(tmp_path) == []


# --- a holder that dies ---------------------------------------------------------------------------


def _killed_while_holding(target: Callable[[str, Any], None], where: Path,
                          while_it_lives: Callable[[], None] = lambda: None) -> None:
    """Run ``target`` in a process until it holds its lock, check ``while_it_lives``, kill it."""
    held = spawn.Event()
    proc = spawn.Process(target=target, args=(str(where), held))
    proc.start()
    try:
        assert held.wait(WAIT), "the worker never took the lock"
        while_it_lives()
    finally:
        proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows: no cleanup runs
        proc.join(WAIT)
    assert proc.exitcode not in (0, None)


def test_a_lock_held_by_a_killed_process_is_taken_by_the_next(tmp_path: Path) -> None:
    lock = tmp_path / "state.json.lock"

    def refused() -> None:
        with pytest.raises(files.LockTimeout), files.locked(lock, timeout=0):
            pass

    _killed_while_holding(_hold_lock, lock, refused)
    with files.locked(lock, timeout=WAIT):
        pass


def test_a_world_change_killed_midway_leaves_the_world_as_it_was(tmp_path: Path) -> None:
    World.seed(tmp_path, servers=1, orgs=1)
    before = (tmp_path / "world.json").read_bytes()
    _killed_while_holding(_change_world_and_hang, tmp_path)
    assert (tmp_path / "world.json").read_bytes() == before
    with World.load(tmp_path).change() as data:  # the lock died with its holder
        data["deployment"]["server_settings"]["after"] = True
    settings = World.load(tmp_path).server_settings()
    assert settings["after"] is True and "half-done" not in settings


def test_a_killed_lab_servers_claim_is_taken_over_and_a_live_ones_is_not(tmp_path: Path) -> None:
    def refused_naming_its_pid() -> None:
        with pytest.raises(LabError, match=r"already running for .* \(pid \d+\)"):
            background._claim(tmp_path)

    _killed_while_holding(_claim_lab, tmp_path, refused_naming_its_pid)
    claimed = background._claim(tmp_path)
    try:
        assert (tmp_path / background.PID_FILE).read_text(encoding="ascii") == str(os.getpid())
    finally:
        claimed.close()
    assert not (tmp_path / background.PID_FILE).exists()


# --- in one process -------------------------------------------------------------------------------


def test_a_thread_may_take_a_lock_it_holds_and_others_wait(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    outcome: list[str] = []

    def other() -> None:
        try:
            with files.locked(lock, timeout=0):
                outcome.append("taken")
        except files.LockTimeout as e:
            outcome.append(str(e))

    with files.locked(lock), files.locked(lock):
        t = threading.Thread(target=other)
        t.start()
        t.join(WAIT)
    assert outcome == [f"{lock} is held by another process (waited 0 s)"]
    with pytest.raises(files.LockTimeout):
        held = files.claim(lock)
        try:
            files.claim(lock)  # a claim is not reentrant, even in its own process
        finally:
            held.release()


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    files.write_atomic(target, "old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        files.write_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert _no_temporaries(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="file modes are advisory on Windows")
def test_secret_files_are_owner_only_and_others_keep_the_usual_mode(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from psbridge.certs import generate_self_signed, new_pfx_password
    from psbridge.cloud.signin import PersistedCache
    from psbridge.lab.config import LabConfig

    umask = os.umask(0o022)
    try:
        monkeypatch.setattr(files, "_umask", None)
        monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(tmp_path / "lab"))
        secrets.store(f"file:{tmp_path / 'pfx-password'}", "pw")
        secrets.store("lab:x", "pw")
        LabConfig(state_dir=str(tmp_path / "lab"), ca_bundle="ca.pem", service_account="LAB\\svc",
                  tools_folder="C:\\Tools").save()
        cache = PersistedCache(tmp_path / "msal" / "me.json")
        cache.cache.has_state_changed = True
        cache.save()
        generate_self_signed("contoso", new_pfx_password()).write(tmp_path / "s2s.pfx")
        for private in (tmp_path / "pfx-password", tmp_path / "lab" / "secrets.json",
                        tmp_path / "lab" / "lab.json", tmp_path / "msal" / "me.json", tmp_path / "s2s.pfx"):
            assert _posix_mode(private) == 0o600, private
        World.seed(tmp_path / "lab", servers=1, orgs=1)
        assert _posix_mode(tmp_path / "lab" / "world.json") == 0o644
        files.write_atomic(tmp_path / "plain.txt", "x")
        assert _posix_mode(tmp_path / "plain.txt") == 0o644
    finally:
        os.umask(umask)


def test_a_forked_child_starts_without_the_parents_thread_locks(tmp_path: Path) -> None:
    if not hasattr(os, "fork") or sys.platform == "darwin":
        pytest.skip("fork is POSIX (and unsafe with threads on macOS)")
    lock = tmp_path / "x.lock"
    with files.locked(lock):
        fork = multiprocessing.get_context("fork")
        child = fork.Process(target=_refused_in_child, args=(str(lock),))
        child.start()
        child.join(WAIT)
        assert child.exitcode == 0
        # The child's exit closed its copies of the parent's descriptors; the lock is still held.
        other = spawn.Process(target=_refused_in_child, args=(str(lock),))
        other.start()
        other.join(WAIT)
        assert other.exitcode == 0


def _refused_in_child(lock: str) -> None:
    # The parent holds the lock: the child must be refused by the OS lock, not hang on an
    # inherited threading lock that no thread of the child will ever release.
    try:
        with files.locked(Path(lock), timeout=0):
            raise SystemExit(1)
    except files.LockTimeout:
        raise SystemExit(0) from None


def test_deleting_from_an_absent_lab_store_makes_nothing(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(tmp_path / "no-lab"))
    secrets.delete("lab:apps/contoso")
    assert not (tmp_path / "no-lab").exists()


def test_temporary_files_a_killed_process_left_are_removed_by_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner or lab killed with SIGKILL leaves its kernels' socket folder or its NTLM hash file;
    the next one to make such a file removes them, and nothing of a live process."""
    import signal
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    try:
        left = tmp_path / f"psbridge-kernels-{killed.pid}-x1"
        left.mkdir()
        (left / "kernel-1").write_text("")
        hashes = tmp_path / f"psbridge-ntlm-{killed.pid}-x2.txt"
        hashes.write_text("user:0:...")
        running = tmp_path / f"psbridge-kernels-{live.pid}-x3"
        running.mkdir()
        unrelated = tmp_path / "psbridge-kernels-notapid"
        unrelated.mkdir()
        mine = tempfile.mkdtemp(prefix=files.owned_temp_name("psbridge-kernels-"))
        tempfile.mkstemp(prefix=files.owned_temp_name("psbridge-ntlm-"), suffix=".txt")
        assert not left.exists() and not hashes.exists()
        assert running.exists() and unrelated.exists() and Path(mine).exists()
        assert Path(mine).name.startswith(f"psbridge-kernels-{os.getpid()}-")
    finally:
        live.kill()
        live.wait()
