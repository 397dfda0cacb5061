"""Benchmark: what a record's HTML costs — psbridge's pages against nbconvert's exporter.

    .venv/bin/python bench/pages.py [RECORD_DIR] [--repeat 3]

Renders every executed notebook of a record (default: the newest under records/demo/contoso, which
``psbridge demo`` leaves) both ways in one run: ``psbridge.pages.notebook_page`` (nbconvert's
filters, displayed HTML sanitised by bleach, no exporter) and nbconvert's ``HTMLExporter`` with the
``basic`` template (what the record used before: bleach over the highlighted code, BeautifulSoup
over the page); prints seconds a page for each, the ratio, and the pages' sizes, with the run page.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import nbformat

from psbridge import evidence, pages, runpage


def newest_record() -> Path:
    base = Path("records/demo/contoso")
    found = sorted(p for p in base.iterdir() if (p / evidence.MANIFEST).is_file()) if base.is_dir() else []
    if not found:
        raise SystemExit("no record under records/demo/contoso: run psbridge demo first, or name a record")
    return found[-1]


def seconds_a_page(render: Any, notebooks: list[Any], repeat: int) -> float:
    render(notebooks[0])  # imports and caches outside the measurement
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for nb in notebooks:
            render(nb)
        runs.append((time.perf_counter() - t0) / len(notebooks))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("record", nargs="?", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    record = args.record or newest_record()
    notebooks = [nbformat.read(p, as_version=4) for p in sorted(record.glob("*.ipynb"))]
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    ours = seconds_a_page(lambda nb: pages.notebook_page(nb, title="t"), notebooks, args.repeat)
    theirs = seconds_a_page(lambda nb: exporter.from_notebook_node(nb)[0], notebooks, args.repeat)
    manifest = evidence.read_manifest(record)
    t0 = time.perf_counter()
    run_page = runpage.run_page(manifest, manifest.get("files") or {})
    run_page_s = time.perf_counter() - t0
    sizes = [len(pages.notebook_page(nb, title="t").encode("utf-8")) for nb in notebooks]
    print(f"record: {record} ({len(notebooks)} step notebooks)")
    print(f"step page, psbridge.pages: {ours * 1000:.0f} ms; nbconvert HTMLExporter(basic): "
          f"{theirs * 1000:.0f} ms; ratio {theirs / ours:.1f}")
    print(f"step page size: {min(sizes) / 1024:.1f}-{max(sizes) / 1024:.1f} KB; run page "
          f"{len(run_page.encode('utf-8')) / 1024:.1f} KB in {run_page_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
