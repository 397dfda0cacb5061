"""Benchmark: the PowerShell bridge against the embedded lab, on loopback.

    .venv/bin/python bench/bridge.py [--commands 200] [--opens 10] [--upload-mib 4] [--scheme http]
    .venv/bin/python bench/bridge.py --state DIR      # use a lab already running (psbridge lab up)

Prints: the cost of opening a session (runspace pool, NTLM, message encryption or TLS); N
commands through ``Session.invoke`` versus raw pypsrp ``PowerShell`` on the same pool (the
bridge's overhead ratio); a file upload's throughput (chunked Set/Add-Content, SHA-256 checked
on the server) and a script run with ``$LASTEXITCODE`` read back.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pypsrp.powershell import PowerShell

from psbridge.remote import ConnectionProfile, Session
from psbridge.remote.transfer import chunk_size_for

COMMAND = ("Test-Path", {"Path": r"C:\Windows"})


@contextlib.contextmanager
def lab_state(state: str | None, servers: int = 1) -> Iterator[Path]:
    if state:
        yield Path(state)
        return
    from psbridge.lab.orchestrator import Lab

    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get("PSBRIDGE_LAB_STATE")
        os.environ["PSBRIDGE_LAB_STATE"] = tmp
        lab = Lab(Path(tmp), servers=servers, orgs=1, cloud=False)
        lab.start()
        try:
            yield Path(tmp)
        finally:
            lab.stop()
            if previous is None:
                os.environ.pop("PSBRIDGE_LAB_STATE", None)
            else:
                os.environ["PSBRIDGE_LAB_STATE"] = previous


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--opens", type=int, default=10)
    ap.add_argument("--upload-mib", type=float, default=4.0)
    ap.add_argument("--scheme", choices=["http", "https"], default="http")
    ap.add_argument("--state", help="state dir of a running lab (default: start one)")
    args = ap.parse_args()

    with lab_state(args.state) as state:
        profile = ConnectionProfile.from_lab(state, server="CRM01", scheme=args.scheme)

        def open_close() -> None:
            with Session(profile):
                pass

        opens = timed(open_close, args.opens)

        name, params = COMMAND
        with Session(profile) as s:
            s.invoke(name, **params)  # warm: first command pays for the first Receive
            pool = s._pool.pool if s._pool else None
            assert pool is not None

            def raw() -> None:
                ps = PowerShell(pool)
                ps.add_cmdlet(name)
                for k, v in params.items():
                    ps.add_parameter(k, v)
                ps.invoke()
                ps.close()

            # Interleaved, so that drift (caches, the machine's other load) hits both alike.
            via_session, via_raw = [], []
            for _ in range(args.commands):
                via_session += timed(lambda: s.invoke(name, **params), 1)
                via_raw += timed(raw, 1)

            size = int(args.upload_mib * 1024 * 1024)
            payload = os.urandom(size)
            chunk = chunk_size_for(s.max_payload_size)
            with s.uploaded(payload, r"C:\Windows\Temp\psbridge\bench.bin") as receipt:
                pass
            pools = s.pools_opened

    med_s, med_r = statistics.median(via_session), statistics.median(via_raw)
    wire = " + message encryption" if args.scheme == "http" else " + TLS"
    print(f"lab over {args.scheme}, NTLM{wire}")
    print(
        f"open + close a session (runspace pool) x{args.opens}: "
        f"median {statistics.median(opens) * 1000:.1f} ms"
    )
    print(
        f"{name} x{args.commands}: Session.invoke median {med_s * 1000:.2f} ms, raw pypsrp median "
        f"{med_r * 1000:.2f} ms, overhead ratio {med_s / med_r:.2f} (pools opened: {pools})"
    )
    print(
        f"upload {size / 2**20:.1f} MiB in {receipt.chunks} chunk(s) of {chunk / 1024:.0f} KiB, SHA-256 "
        f"checked on the server: {receipt.seconds:.2f} s, {receipt.throughput / 2**20:.2f} MiB/s"
    )


if __name__ == "__main__":
    main()
