"""Copying a file to the server over the PowerShell session, and taking it away again.

There is no file-copy channel in PSRP, so a file travels as ``byte[]`` parameters of the
ordinary PowerShell 5.1 content cmdlets: ``Set-Content -Encoding Byte`` for the first chunk,
``Add-Content -Encoding Byte`` for each further one. A chunk is sized so that its command fits
one WS-Management envelope of the open pool (no PSRP fragment reassembly on the server for
every chunk). The server's own ``Get-FileHash`` must then report the SHA-256 computed here while
reading, or the file is removed and the upload fails.

Paths go as ``-LiteralPath``: with ``-Path`` PowerShell would read ``[`` and ``]`` in a
folder name as a wildcard pattern. A PFX is a private key: :func:`uploaded` is a context
manager that always removes the file, checks that it is gone, and writes both the upload and
the removal into the session journal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import TYPE_CHECKING, BinaryIO

from psbridge.errors import ParameterError
from psbridge.intents import intent
from psbridge.remote.command import Cmd
from psbridge.remote.errors import BridgeError, ConnectionLost, TransferError
from psbridge.remote.paths import server_path

if TYPE_CHECKING:
    from psbridge.remote.session import Session

# What a Set-Content command costs besides its bytes once serialized: the PSRP message and
# fragment headers, the CreatePipeline CLIXML (host info, command, parameter names, the path).
_COMMAND_OVERHEAD = 8 * 1024
_MIN_CHUNK = 4 * 1024


@dataclass(frozen=True)
class UploadReceipt:
    """What arrived where: recorded in the journal and returned to the caller."""

    server: str
    path: PureWindowsPath
    size: int
    sha256: str
    chunks: int
    seconds: float

    @property
    def throughput(self) -> float:
        """Bytes per second, end to end (including the server-side hash)."""
        return self.size / self.seconds if self.seconds > 0 else float("inf")


def chunk_size_for(max_payload_size: int) -> int:
    """Bytes of file content per command, for a pool whose fragments carry ``max_payload_size``.

    The byte[] goes into CLIXML as base64 (4 characters per 3 bytes) inside the fragment.
    """
    usable = max_payload_size - _COMMAND_OVERHEAD
    size = (usable * 3 // 4) // 3 * 3
    return max(size, _MIN_CHUNK)


def upload(
    session: Session,
    local: str | Path | bytes,
    remote: str | PurePath,
    *,
    chunk_size: int | None = None,
) -> UploadReceipt:
    """Copy ``local`` (a path, or the content itself) to the absolute Windows path ``remote``.

    The parent folder is created if needed; an existing file is overwritten. Raises
    :class:`TransferError` when the server's SHA-256 differs (the partial file is removed).
    """
    target = server_path(remote, "remote path")
    if chunk_size is None:
        chunk_size = chunk_size_for(session.max_payload_size)
    if chunk_size <= 0:
        raise ParameterError("chunk_size must be positive")
    with intent("upload", session.server, str(target)):
        return _upload(session, local, target, chunk_size)


def _upload(session: Session, local: str | Path | bytes, target: PureWindowsPath, chunk_size: int
            ) -> UploadReceipt:
    t0 = time.monotonic()
    digest = hashlib.sha256()
    size = chunks = 0
    try:
        folder = Cmd("New-Item", ItemType="Directory", Path=str(target.parent), Force=True)
        session.invoke(folder, retry=False)
        with _open(local) as stream:
            while True:
                block = stream.read(chunk_size)
                if not block and chunks:
                    break
                digest.update(block)
                size += len(block)
                verb = "Set-Content" if chunks == 0 else "Add-Content"
                session.invoke(Cmd(verb, LiteralPath=str(target), Value=block, Encoding="Byte"), retry=False)
                chunks += 1
                if not block:  # an empty file: Set-Content created it, nothing more to send
                    break
    except BridgeError as e:
        _remove_quietly(session, target)
        raise TransferError(f"uploading to {target} on {session.server} failed: {e}") from e
    expected = digest.hexdigest().upper()
    actual = _server_sha256(session, target)
    seconds = time.monotonic() - t0
    if actual != expected:
        _remove_quietly(session, target)
        raise TransferError(
            f"{target} on {session.server} has SHA-256 {actual or 'unknown'} but {expected} was sent; "
            "the file was removed"
        )
    receipt = UploadReceipt(session.server, target, size, expected, chunks, seconds)
    session.record("upload", f"{target}: {size} bytes in {chunks} chunk(s), SHA-256 {expected} verified")
    return receipt


@contextmanager
def uploaded(
    session: Session,
    local: str | Path | bytes,
    remote: str | PurePath,
    *,
    chunk_size: int | None = None,
) -> Iterator[UploadReceipt]:
    """Upload, yield the receipt, and always remove the file afterwards (and check it is gone)."""
    target = server_path(remote, "remote path")
    receipt = upload(session, local, target, chunk_size=chunk_size)
    try:
        yield receipt
    finally:
        remove(session, target)


def remove(session: Session, remote: str | PurePath) -> None:
    """Delete a file on the server and prove it is gone; recorded in the journal."""
    target = server_path(remote, "remote path")
    with intent("remove-file", session.server, str(target)):
        _remove(session, target)


def _remove(session: Session, target: PureWindowsPath) -> None:
    for attempt in (1, 2):
        try:
            session.invoke(Cmd("Remove-Item", LiteralPath=str(target), Force=True), retry=False, check=False)
            still_there = session.invoke(Cmd("Test-Path", LiteralPath=str(target))).output
            break
        except ConnectionLost as e:
            # The file holds a private key: a dropped connection is no reason to leave it there.
            # Remove-Item of a file is safe to repeat; the session opens a new pool for it.
            session.record("remove-retry", f"{target}: {e}; trying again on a new session")
            if attempt == 2:
                raise TransferError(f"could not remove {target} from {session.server}: {e}; it is removed "
                                    "by the next run's sweep, or remove it by hand") from e
        except BridgeError as e:
            session.record("remove-failed", f"{target}: {e}")
            raise TransferError(
                f"could not remove {target} from {session.server}: {e}; remove it by hand") from e
    if still_there and still_there[-1] is True:
        session.record("remove-failed", f"{target} is still on the server")
        raise TransferError(f"{target} is still on {session.server} after Remove-Item; remove it by hand")
    session.record("remove", f"{target} removed and verified absent")


def _server_sha256(session: Session, target: PureWindowsPath) -> str:
    result = session.invoke(Cmd("Get-FileHash", LiteralPath=str(target), Algorithm="SHA256"), check=False)
    for item in result.output:
        value = item.get_ci("Hash") if hasattr(item, "get_ci") else None
        if isinstance(value, str):
            return value.upper()
    return ""


def _remove_quietly(session: Session, target: PureWindowsPath) -> None:
    try:
        remove(session, target)
    except TransferError as e:
        session.record("remove-failed", str(e))


@contextmanager
def _open(local: str | Path | bytes) -> Iterator[BinaryIO]:
    if isinstance(local, bytes):
        import io

        yield io.BytesIO(local)
        return
    with Path(local).open("rb") as f:
        yield f
