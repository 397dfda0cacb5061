"""The HTML pages of a record: small, self-contained, readable offline in any browser.

nbconvert's full templates put some 300 KB of JupyterLab's style sheets into every page and
load scripts from a public CDN when the page is opened; a record a change board archives should
do neither. So a page here is ours: one short style sheet inline, syntax colours for the code,
no script, a Content-Security-Policy that forbids any request, and the same header of facts on
every page (which run, which step, its status and times, who ran it), with links between the
pages of the record.

A step's page shows what a reviewer reads first: the explanation, the tables and the changes.
Each code cell is folded into a ``<details>`` element a click opens (no script needed); the
``parameters`` cell (the notebook's defaults, not what ran) is left out, and the values the step
was given are one folded cell. The ``.ipynb`` beside the page keeps every cell as it ran.

The cells are drawn with nbconvert's own filters (markdown, ANSI colours, HTML cleaning) and
pygments, without its exporter: the exporter sanitises the highlighted code, which pygments
has already escaped, with bleach, and passes the whole page through BeautifulSoup, for
nothing a record needs (bench/pages.py: 0.19 s a step's page with the exporter, 0.03 s here, on
the same notebooks). HTML a notebook displayed, and markdown that holds raw HTML, are still
sanitised, with bleach as nbconvert's ``SanitizeHTML`` uses it (the exporter, by default, does not).
"""

from __future__ import annotations

import base64
import functools
import html
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_styles: str | None = None  # record.css and the syntax colours, read once

# Output types in the order a notebook front end prefers them.
_PRIORITY = ("text/html", "image/svg+xml", "image/png", "image/jpeg", "text/markdown", "text/plain")


@dataclass(frozen=True)
class Link:
    """A link in a page's navigation: its text and a path relative to the page."""

    text: str
    href: str


def _css() -> str:
    global _styles
    with _lock:
        if _styles is None:
            from importlib.resources import files

            from pygments.formatters import HtmlFormatter

            _styles = ((files("psbridge") / "record.css").read_text(encoding="utf-8")
                       + HtmlFormatter(style="default").get_style_defs(".highlight"))
        return _styles


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def status_badge(status: str) -> str:
    word = status.split()[0] if status.split() else "unknown"
    return f' <span class="status status-{esc(word)}">{esc(status)}</span>'


def facts_list(facts: dict[str, str]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items())
    return f"<dl>{rows}</dl>"


def page(body: str, *, title: str, header: dict[str, str] | None = None, heading: str = "",
         nav: Sequence[Link] = (), status: str = "") -> str:
    """A whole HTML page around ``body``: our style sheet inline, a header of facts and links."""
    top = ""
    if header or nav or heading:
        links = "".join(f'<a href="{esc(n.href)}">{esc(n.text)}</a>' for n in nav)
        badge = status_badge(status) if status else ""
        top = ('<header class="psbridge-header">'
               + (f'<nav>{links}</nav>' if links else "")
               + (f"<h1>{esc(heading)}{badge}</h1>" if heading else "")
               + (facts_list(header) if header else "") + "</header>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            # No script runs, nothing is fetched: the page is the whole document.
            "<meta http-equiv=\"Content-Security-Policy\" "
            "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'\">"
            f"<title>{esc(title)}</title><style>{_css()}</style></head>"
            f"<body>{top}<main>{body}</main></body></html>\n")


# --- cells ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


# What a step's displayed HTML may hold: psbridge's tables and results, nothing that acts or loads.
_TAGS = frozenset({"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
                   "details", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
                   "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong",
                   "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"})
_COMMON = ("class", "style", "title", "id", "colspan", "rowspan", "align")


def _allowed(tag: str, name: str, value: str) -> bool:
    """An attribute kept: the common ones, a link's target, and an image only from the page itself."""
    if name in _COMMON:
        return True
    if tag == "a":
        return name == "href"
    if tag == "img":
        return name in ("alt", "width", "height") or (name == "src" and value.startswith("data:"))
    return False


_ATTRIBUTES = _allowed
# Shorthands psbridge's own results use (the PowerShell console colours); an url() in them loads
# nothing, the page's policy allowing images from data: only.
_CSS = frozenset({"background"})
_PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
_cleaner: Any = None


def _clean(fragment: str) -> str:
    """HTML a notebook displayed, with anything that could run or load removed (bleach, as nbconvert's
    ``SanitizeHTML`` uses it, with the tags tables and results need).

    The same results are displayed again in each run of a step (a deployment, a certificate, a
    state that did not change), so a fragment up to 32 KB is sanitised once a process (at most
    256 kept): bleach's parser and serializer are pure Python, about half of what writing a step's
    record costs, and they run beside the next step.
    """
    return _clean_kept(fragment) if len(fragment) <= 32_768 else _sanitize(fragment)


@functools.lru_cache(maxsize=256)
def _clean_kept(fragment: str) -> str:
    return _sanitize(fragment)


def _sanitize(fragment: str) -> str:
    global _cleaner
    with _lock:
        if _cleaner is None:
            from bleach.css_sanitizer import ALLOWED_CSS_PROPERTIES, CSSSanitizer
            from bleach.sanitizer import Cleaner

            css = CSSSanitizer(allowed_css_properties=ALLOWED_CSS_PROPERTIES | _CSS)
            _cleaner = Cleaner(tags=_TAGS, attributes=_ATTRIBUTES, protocols=_PROTOCOLS,
                               css_sanitizer=css, strip=True, strip_comments=True)
        return str(_cleaner.clean(fragment))  # a Cleaner is not thread-safe


# A notebook's markdown and code are the same in every run of its step, and in every org of a
# batch (the parameters aside): drawn once per process, not once per page.
@functools.lru_cache(maxsize=2048)
def _markdown(source: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = str(markdown2html_mistune(source))
    # Markdown without raw HTML yields only what mistune itself writes (escaped text, its tags).
    return _clean(rendered) if "<" in source else rendered


@functools.lru_cache(maxsize=2048)
def _code(source: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return str(highlight(source, PythonLexer(), HtmlFormatter()))


def _ansi(text: str) -> str:
    from nbconvert.filters.ansi import ansi2html

    return str(ansi2html(text))


def _output(out: dict[str, Any]) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        name = out.get("name", "stdout")
        return f'<pre class="out stream-{esc(name)}">{_ansi(_text(out.get("text")))}</pre>'
    if kind == "error":
        trace = "\n".join(out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"])
        return f'<pre class="out error">{_ansi(trace)}</pre>'
    data = out.get("data") or {}
    for mime in _PRIORITY:
        if mime not in data:
            continue
        value = _text(data[mime])
        if mime == "text/html":
            return f'<div class="out html">{_clean(value)}</div>'
        if mime == "image/svg+xml":
            b64 = base64.b64encode(value.encode("utf-8")).decode("ascii")
            return f'<div class="out"><img alt="figure" src="data:image/svg+xml;base64,{b64}"></div>'
        if mime in ("image/png", "image/jpeg"):
            return f'<div class="out"><img alt="figure" src="data:{mime};base64,{esc(value.strip())}"></div>'
        if mime == "text/markdown":
            return f'<div class="out md">{_markdown(value)}</div>'
        return f'<pre class="out">{_ansi(value)}</pre>'
    return ""


def _tags(cell: dict[str, Any]) -> set[str]:
    return set((cell.get("metadata") or {}).get("tags") or [])


def cells(nb: Any) -> str:
    """A notebook's cells as a reviewer reads them: explanation and results, code folded."""
    parts: list[str] = []
    for cell in nb.get("cells", []):
        kind = cell.get("cell_type")
        source = _text(cell.get("source"))
        if kind == "markdown":
            parts.append(f'<section class="md">{_markdown(source)}</section>')
            continue
        if kind != "code":
            continue
        tags = _tags(cell)
        if "parameters" in tags:
            continue  # the notebook's defaults: what ran is the injected cell below
        outputs = "".join(_output(o) for o in cell.get("outputs") or [])
        label = "the parameters this step was given" if "injected-parameters" in tags else "code"
        folded = (f'<details class="code"><summary>{label}</summary>{_code(source)}</details>'
                  if source.strip() else "")
        css = "cell failed" if any(o.get("output_type") == "error" for o in cell.get("outputs") or []) \
            else "cell"
        parts.append(f'<div class="{css}">{folded}{outputs}</div>')
    return "".join(parts)


def notebook_page(nb: Any, *, title: str = "", header: dict[str, str] | None = None, heading: str = "",
                  nav: Sequence[Link] = (), status: str = "") -> str:
    """An executed notebook as a page of its own (what a reviewer opens)."""
    return page(cells(nb), title=title or "psbridge record", header=header, heading=heading, nav=nav,
                status=status)


def table(rows: Iterable[Sequence[str]], columns: Sequence[str], *, raw: frozenset[int] = frozenset()) -> str:
    """A table of text (escaped; the columns in ``raw`` are HTML this module built)."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{v if i in raw else esc(v)}</td>" for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
