"""Small tables for notebooks and records: rows of plain values, shown as HTML without pandas.

A step kernel that imports pandas pays for it in start-up time and memory on every step, for a
handful of rows. So what a step shows is a :class:`Table` (or an object rendering itself with
:func:`html_table`); :meth:`Table.frame` still gives a DataFrame to whoever wants one, importing
pandas then.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "✔" if value else "✘"
    return html.escape(str(value))


def html_table(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None,
               max_rows: int | None = None) -> str:
    """An escaped HTML table of ``rows`` (columns: the given ones, else the first row's keys)."""
    rows = list(rows)
    cols = list(columns) if columns is not None else list(rows[0]) if rows else []
    shown = rows if max_rows is None else rows[:max_rows]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in shown)
    more = f"<p>… {len(rows) - len(shown)} more row(s)</p>" if len(shown) < len(rows) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def dataframe(rows: Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)


@dataclass
class Table:
    """Rows with named columns, that show themselves as a table in a notebook."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]

    def frame(self) -> pd.DataFrame:
        return dataframe(self.rows, self.columns or None)

    def _repr_html_(self) -> str:
        return html_table(self.rows, self.columns or None)

    def __repr__(self) -> str:
        cols = self.columns or (list(self.rows[0]) if self.rows else [])
        lines = [" | ".join(str(r.get(c, "")) for c in cols) for r in self.rows]
        return "\n".join([" | ".join(cols), *lines])
