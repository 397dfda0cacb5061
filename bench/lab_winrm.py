"""Benchmark: a lab CRM server's WinRM endpoint driven by pypsrp on loopback.

    .venv/bin/python bench/lab_winrm.py [--commands 200] [--parallel 4]

Prints: endpoint start, runspace pool open (HTTP + NTLM + message encryption, and HTTPS),
one-command round trips (median, p95) over each, commands a second with several pools in
parallel, a 1 MiB value there and back, how late a long command's end reaches a client whose
Receives time out every second (what a client pays for the long poll), and the Python memory
one open pool costs (client and server together, as both run in this process).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from psbridge.lab.ca import LabCA
from psbridge.lab.winrm import Endpoint, EndpointSpec, start_endpoint
from psbridge.lab.world import World
from psbridge.remote.session import new_wsman

ACCOUNTS = {"LAB\\crmadmin": "Bench-pw1"}


def wsman(ep: Endpoint, ca: str | None = None, operation_timeout: int = 20) -> WSMan:
    return new_wsman("127.0.0.1", port=ep.port, ssl=ep.spec.scheme == "https", username="LAB\\crmadmin",
                     password="Bench-pw1", auth="negotiate", cert_validation=ca or True,
                     operation_timeout=operation_timeout)


def command(pool: RunspacePool) -> None:
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Variable").add_parameter("Name", "ErrorActionPreference")
    ps.invoke()
    assert ps.output, ps.streams.error


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="psbridge-bench-"))
    World.seed(state, servers=1, orgs=1)
    ca = LabCA.load_or_create(state)
    tls = ca.server_certificate("crm01")

    t = time.perf_counter()
    http_ep = start_endpoint(EndpointSpec("CRM01", "http", ACCOUNTS, state))
    https_ep = start_endpoint(EndpointSpec("CRM01", "https", ACCOUNTS, state, tls=tls))
    print(f"start two endpoints (http, https): {(time.perf_counter() - t) * 1000:.1f} ms")
    try:
        for label, ep, bundle in (("http+ntlm+encryption", http_ep, None),
                                  ("https+negotiate", https_ep, str(ca.bundle_path))):
            opens = []
            for _ in range(10):
                t = time.perf_counter()
                with RunspacePool(wsman(ep, bundle)):
                    opens.append(time.perf_counter() - t)
            print(f"{label}: pool open+close {ms(opens)}")
            with RunspacePool(wsman(ep, bundle)) as pool:
                command(pool)
                print(f"{label}: one command {ms(timed(lambda p=pool: command(p), args.commands))}")

        def worker(_: int) -> int:
            with RunspacePool(wsman(http_ep)) as pool:
                for _ in range(args.commands // args.parallel):
                    command(pool)
            return args.commands // args.parallel

        t = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as ex:
            done = sum(ex.map(worker, range(args.parallel)))
        took = time.perf_counter() - t
        print(f"{args.parallel} pools in parallel: {done / took:.0f} commands/s")

        big = "x" * (1024 * 1024)
        with RunspacePool(wsman(http_ep)) as pool:
            t = time.perf_counter()
            ps = PowerShell(pool)
            ps.add_cmdlet("Set-Variable").add_parameter("Name", "big").add_parameter("Value", big)
            ps.add_statement().add_cmdlet("Get-Variable").add_parameter("Name", "big")
            out = ps.invoke()
            took = time.perf_counter() - t
            value = out[0].adapted_properties.get("Value") or out[0].extended_properties.get("Value")
            assert value == big, "the value did not come back whole"
            print(f"1 MiB value there and back (encrypted): {took * 1000:.0f} ms")

        with RunspacePool(wsman(http_ep, operation_timeout=1)) as pool:
            for millis in (200, 2500):
                lateness = []
                for _ in range(5):
                    ps = PowerShell(pool)
                    ps.add_cmdlet("Start-Sleep").add_parameter("Milliseconds", millis)
                    t = time.perf_counter()
                    ps.invoke()
                    lateness.append(time.perf_counter() - t - millis / 1000)
                print(f"Start-Sleep {millis} ms, Receives of 1 s: end seen {ms(lateness)} after it")

        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        pools = []
        for _ in range(10):
            p = RunspacePool(wsman(http_ep))
            p.open()
            command(p)
            pools.append(p)
        after = tracemalloc.take_snapshot()
        cost = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(f"memory per open pool (client + server): {cost / 10 / 1024:.0f} KiB")
        for p in pools:
            p.close()
        tracemalloc.stop()
    finally:
        http_ep.stop()
        https_ep.stop()


if __name__ == "__main__":
    main()
