"""The HTML pages of a record: small, self-contained, readable offline in any browser.

nbconvert's full templates put some 300 KB of JupyterLab's style sheets into every page and
load scripts from a public CDN when the page is opened; a record a change board archives should
do neither. A step's page here is nbconvert's ``basic`` body (the cells, their outputs) inside a
page of our own: one short style sheet inline, syntax colours for the code, no script, no
request to any other host.
"""

from __future__ import annotations

import html
import threading
from typing import Any

_lock = threading.Lock()
_exporter: Any = None
_styles: str | None = None  # record.css and the syntax colours, read once


def _css() -> str:
    from importlib.resources import files

    return (files("psbridge") / "record.css").read_text(encoding="utf-8")


def _basic_exporter() -> Any:
    global _exporter, _styles
    with _lock:
        if _exporter is None:
            from nbconvert import HTMLExporter
            from pygments.formatters import HtmlFormatter

            _exporter = HTMLExporter(template_name="basic")
            _styles = _css() + HtmlFormatter(style="default").get_style_defs(".highlight")
        return _exporter


def page(body: str, *, title: str, header: dict[str, str] | None = None) -> str:
    """A whole HTML page around ``body``: our style sheet inline, an optional header of facts."""
    facts = ""
    if header:
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in header.items())
        facts = f'<header class="psbridge-header"><dl>{rows}</dl></header>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # No script runs, nothing is fetched: the page is the whole document.
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{html.escape(title)}</title><style>{_styles or _css()}</style></head>"
            f"<body>{facts}{body}</body></html>\n")


def notebook_page(nb: Any, *, title: str = "", header: dict[str, str] | None = None) -> str:
    """An executed notebook as a page of its own (what a reviewer opens)."""
    exporter = _basic_exporter()
    with _lock:  # nbconvert's exporter keeps state between conversions
        body, _ = exporter.from_notebook_node(nb)
    return page(str(body), title=title or "psbridge record", header=header)
