"""Benchmark: the Entra/Graph twin and step 3's cloud operations, on loopback.

    .venv/bin/python bench/cloud.py [--requests 200]

Prints: twin start (first, with key generation; then warm), the whole step-3 flow (device code
sign-in, app, secret, access, consent, tenant id, teardown) and its second, no-change run,
Graph GET latency and throughput, and the peak Python memory of one step-3 run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from psbridge.cloud import (
    CloudSettings,
    GraphClient,
    ensure_app,
    ensure_client_secret,
    ensure_required_access,
    grant_admin_consent,
    sign_in_device_code,
    teardown,
    tenant_id_from_graph,
)
from psbridge.lab.ca import LabCA
from psbridge.lab.entra import start_twin


def step3(graph: GraphClient, ref: str) -> None:
    app = ensure_app(graph, "bench app", "https://localhost/psbridge")
    ensure_client_secret(graph, app, ref)
    ensure_required_access(graph, app)
    grant_admin_consent(graph, app)
    tenant_id_from_graph(graph)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        ca = LabCA.load_or_create(root)
        twin = start_twin(root / "entra", ca)
        cold = time.perf_counter() - t0
        twin.stop()
        t0 = time.perf_counter()
        twin = start_twin(root / "entra", ca)
        warm = time.perf_counter() - t0
        settings = CloudSettings.from_lab(twin.describe())
        ref = f"file:{root / 'secret'}"

        tracemalloc.start()
        t0 = time.perf_counter()
        admin = sign_in_device_code(settings, twin.tenant_domain, on_code=lambda c: None,
                                    cache_dir=root / "c")
        graph = GraphClient(settings, admin)
        step3(graph, ref)
        first = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t0 = time.perf_counter()
        step3(graph, ref)
        second = time.perf_counter() - t0

        lat = []
        for _ in range(args.requests):
            s = time.perf_counter()
            graph.get("/organization")
            lat.append(time.perf_counter() - s)
        app = ensure_app(graph, "bench app", "https://localhost/psbridge")
        t0 = time.perf_counter()
        teardown(graph, app, ref)
        down = time.perf_counter() - t0
        twin.stop()

    print(f"twin start, new state dir (CA + keys): {cold * 1000:.0f} ms; restart: {warm * 1000:.0f} ms")
    print(f"step 3, empty tenant (sign-in .. consent, tenant id): {first * 1000:.0f} ms; "
          f"second run (no change): {second * 1000:.0f} ms; teardown: {down * 1000:.0f} ms")
    print(f"GET /organization x{args.requests}: median {statistics.median(lat) * 1000:.1f} ms, "
          f"p95 {sorted(lat)[int(len(lat) * 0.95)] * 1000:.1f} ms, {len(lat) / sum(lat):.0f} req/s")
    print(f"peak Python memory during step 3: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
