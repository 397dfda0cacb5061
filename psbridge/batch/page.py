"""The batch's summary page (``index.html``): one self-contained file, readable offline.

No script or style from elsewhere: a change board opens it from an archive. The table sorts
by any column with a click (a few lines of inline script; without script it is still the
whole table, in inventory order), rows are coloured by status, and each org links to its
record folder and to the page of every step that ran in it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psbridge.secrets import redact

if TYPE_CHECKING:
    import pandas as pd

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;max-width:40em}
th{background:#f0f0f0;cursor:pointer;user-select:none} th:after{content:" \\2195";color:#999}
tr.complete td.status,tr.skipped td.status{background:#d4f4d4} tr.failed td.status{background:#f8d0d0}
tr.blocked td.status{background:#f8e4c0} tr.interrupted td.status{background:#fff3b0}
tr.planned td.status{background:#d8e8f8} .steps a{margin-right:.4em} .counts span{margin-right:1.2em}
"""

_SCRIPT = """
document.querySelectorAll('th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

_SHOWN = ["customer", "organization", "deployment", "status", "action", "failed_step", "reason", "blocked_by",
          "duration_s", "thumbprint", "certificate_not_after", "tenant_id"]


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


def summary_page(head: dict[str, Any], table: pd.DataFrame, outcomes: list[dict[str, Any]],
                 where: Path) -> str:
    counts = table["status"].value_counts().to_dict() if len(table) else {}
    title = f"psbridge batch {head.get('batch_id', '')}"
    book = head.get("runbook") or {}
    runbook = f"{book.get('name', '')} {book.get('version', '')}" if isinstance(book, dict) else book
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f"<p>runbook {_e(runbook)} · mode {_e(head.get('mode'))} · inventory "
           f"{_e(head.get('inventory'))} · {_e(head.get('started'))} to {_e(head.get('ended'))} · "
           f"status <b>{_e(head.get('status'))}</b></p>",
           "<p class='counts'>" + "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in counts.items())
           + f"<span>organizations: <b>{len(table)}</b></span></p>",
           "<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in _SHOWN) + "<th>record and steps</th>"
           "</tr></thead><tbody>"]
    for row, outcome in zip(table.to_dict("records"), outcomes, strict=True):
        cells = []
        for c in _SHOWN:
            klass = ' class="status"' if c == "status" else ""
            cells.append(f"<td{klass}>{_e(row[c])}</td>")
        cells.append(f"<td class='steps'>{_step_links(outcome, row['record'], where)}</td>")
        out.append(f"<tr class='{_e(row['status'])}' id='{_e(row['customer'])}-{_e(row['organization'])}'>"
                   + "".join(cells) + "</tr>")
    out.append(f"</tbody></table><script>{_SCRIPT}</script></body></html>")
    return "\n".join(out)
