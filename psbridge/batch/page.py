"""The batch's summary page (``index.html``): one self-contained file, readable offline.

No script or style from elsewhere: a change board opens it from an archive (its
Content-Security-Policy lets only its own inline style and script run, by their hashes). The table sorts
by any column with a click (a few lines of inline script; without script it is still the
whole table, in the order written), rows are coloured by status, and each org links to its
record folder and to the page of every step that ran in it.

A runbook that names summary columns (``summary:`` in its runbook.yaml) makes the page its board:
those columns after the status, the ``colour`` column's cell coloured by its value and its values
counted at the top, and the rows written in the ``sort`` column's order (ascending, rows without a
value last), so s2s-health's page opens with the certificate that ends first. Numeric columns sort
as numbers (negative ones included), and blank cells stay last in either direction.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psbridge.secrets import redact

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.runbook.definition import SummarySpec

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;max-width:40em}
th{background:#f0f0f0;cursor:pointer;user-select:none} th:after{content:" \\2195";color:#999}
tr.complete td.status,tr.skipped td.status{background:#d4f4d4} tr.failed td.status{background:#f8d0d0}
tr.blocked td.status{background:#f8e4c0} tr.interrupted td.status{background:#fff3b0}
tr.planned td.status{background:#d8e8f8} .steps a{margin-right:.4em} .counts span{margin-right:1.2em}
th[data-dir=asc]:after{content:" \\2191";color:#222} th[data-dir=desc]:after{content:" \\2193";color:#222}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.v-ok{background:#d4f4d4} .v-action-needed{background:#f8e4c0} .v-broken{background:#f8d0d0}
.v-not-set-up{background:#e4e4e4} .counts span.board{padding:.1em .4em}
"""

_SCRIPT = """
document.querySelectorAll('th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.dir !== 'asc', numeric = th.dataset.kind === 'number';
    th.closest('tr').querySelectorAll('th').forEach(function(h){ delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    function key(row){
      var t = row.cells[col].textContent.trim();
      return t === '' ? null : (numeric ? Number(t) : t);
    }
    rows.sort(function(a, b){
      var x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);  // blanks last, either way
      var c = numeric ? x - y : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

_SHOWN = ["customer", "organization", "deployment", "status", "action", "failed_step", "reason", "blocked_by",
          "duration_s", "thumbprint", "certificate_not_after", "tenant_id"]


def _csp() -> str:
    """Nothing to load from anywhere: only this page's own style and sort script run (by their hashes)."""
    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    return f"default-src 'none'; style-src {digest(_STYLE)}; script-src {digest(_SCRIPT)}"


def _e(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return ""
    return html.escape(redact(str(value)))


def _step_links(outcome: dict[str, Any], record: str | None, where: Path) -> str:
    if not record or not outcome.get("record"):
        return ""
    folder = Path(outcome["record"])
    # The record's own page where the run wrote one, else its folder.
    target = f"{record}/index.html" if (folder / "index.html").is_file() else f"{record}/"
    links = [f'<a href="{html.escape(target)}">record</a>']
    for step in outcome.get("steps") or []:
        pages = sorted(p for p in folder.glob("*.html") if p.stem.split("-", 1)[-1] == step["id"])
        for page in pages:
            links.append(f'<a href="{html.escape(record)}/{html.escape(page.name)}" '
                         f'title="{_e(step["status"])}">{_e(page.stem)}</a>')
    return " ".join(links)


def slug(value: Any) -> str:
    """A value as a CSS class name: ``action needed`` -> ``action-needed``."""
    return "".join(c if c.isalnum() else "-" for c in str(value).strip().lower())


def _numeric(table: pd.DataFrame, column: str) -> bool:
    import pandas as pd

    kind = table[column].dtype
    return bool(pd.api.types.is_numeric_dtype(kind)) and not pd.api.types.is_bool_dtype(kind)


def _order(table: pd.DataFrame, board: SummarySpec | None) -> list[int]:
    """The rows' positions in the page's opening order: the board's sort column ascending, blanks last."""
    positions = list(range(len(table)))
    if board is None or board.sort is None or board.sort not in table.columns:
        return positions
    ordered = table.reset_index(drop=True).sort_values(board.sort, kind="stable", na_position="last")
    return [int(i) for i in ordered.index]


def summary_page(head: dict[str, Any], table: pd.DataFrame, outcomes: list[dict[str, Any]],
                 where: Path, board: SummarySpec | None = None) -> str:
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    extra = [c for c in (board.columns if board else {}) if c in table.columns]
    colour = board.colour if board and board.colour in extra else None
    shown = _SHOWN[:_SHOWN.index("status") + 1] + extra + _SHOWN[_SHOWN.index("status") + 1:]
    title = f"psbridge batch {head.get('batch_id', '')}"
    book = head.get("runbook") or {}
    runbook = f"{book.get('name', '')} {book.get('version', '')}" if isinstance(book, dict) else book
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
           f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f"<p>runbook {_e(runbook)} · mode {_e(head.get('mode'))} · inventory "
           f"{_e(head.get('inventory'))} · {_e(head.get('started'))} to {_e(head.get('ended'))} · "
           f"status <b>{_e(head.get('status'))}</b></p>",
           "<p class='counts'>" + "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in counts.items())
           + f"<span>organizations: <b>{len(table)}</b></span></p>"]
    if colour:
        tally = table[colour].dropna().value_counts().to_dict()
        out.append(f"<p class='counts' id='board-counts'>{_e(colour)}: "
                   + "".join(f"<span class='board v-{slug(k)}'>{_e(k)}: <b>{_e(v)}</b></span>"
                             for k, v in tally.items())
                   + (f"<span>none: <b>{int(table[colour].isna().sum())}</b></span>"
                      if table[colour].isna().any() else "") + "</p>")
    heads = []
    for c in shown:
        attrs = ' data-kind="number"' if _numeric(table, c) else ""
        if board and c == board.sort:
            attrs += ' data-dir="asc"'
        heads.append(f"<th{attrs}>{_e(c)}</th>")
    out.append("<table><thead><tr>" + "".join(heads) + "<th>record and steps</th></tr></thead><tbody>")
    rows = table.to_dict("records")
    for i in _order(table, board):
        row, outcome = rows[i], outcomes[i]
        cells = []
        for c in shown:
            klass = ["status"] if c == "status" else []
            if _numeric(table, c):
                klass.append("num")
            if c == colour and _e(row[c]):
                klass += ["board", f"v-{slug(row[c])}"]
            attr = f' class="{" ".join(klass)}"' if klass else ""
            cells.append(f"<td{attr}>{_e(row[c])}</td>")
        cells.append(f"<td class='steps'>{_step_links(outcome, row['record'], where)}</td>")
        out.append(f"<tr class='{_e(row['status'])}' id='{_e(row['customer'])}-{_e(row['organization'])}'>"
                   + "".join(cells) + "</tr>")
    out.append(f"</tbody></table><script>{_SCRIPT}</script></body></html>")
    return "\n".join(out)
