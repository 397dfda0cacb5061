"""The batch summary's own columns from a runbook's ``summary:`` (s2s-health's verdict, reasons, days
left), typed; the page made a board (coloured and counted by verdict, opened in the days' order) and its
inline sort: numbers as numbers (negative ones too), blank cells last either way. No lab: the outcomes
are what the batch's workers return."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from psbridge.batch import record
from psbridge.batch.page import summary_page
from psbridge.runbook import definition, registry

HEALTH = registry.load("s2s-health")


def _outcome(org: str, status: str, **facts: Any) -> dict[str, Any]:
    return {"key": f"acme/{org}", "customer": "acme", "organization": org, "deployment": "dep01",
            "tenant": "", "lead": org == "a", "status": status, "reason": None, "facts": facts,
            "record": None, "steps": []}


def _facts(verdict: str, days: int | None, reasons: list[str] | None = None) -> dict[str, Any]:
    return {"health_verdict": verdict, "health_reasons": reasons or [], "days_to_certificate_expiry": days,
            "days_to_end_of_support": 120, "days_to_ews_end": 120, "mailboxes_failing": [],
            "thumbprint": "9F" + "0" * 38, "certificate_not_after": "2027-01-01T00:00:00+00:00"}


OUTCOMES = [
    _outcome("a", "complete", **_facts("ok", 365)),
    _outcome("b", "complete", **_facts("broken", -5, ["expired", "key credential missing"])),
    _outcome("c", "failed"),  # failed before it read anything: no verdict, no days
    _outcome("d", "complete", **_facts("action needed", 9, ["ends soon"])),
    _outcome("e", "complete", **_facts("action needed", 10, ["ends soon"])),
]


def test_the_runbooks_summary_columns_follow_the_action_typed(tmp_path: Path) -> None:
    table = record.summary(OUTCOMES, tmp_path, HEALTH)
    at = list(table.columns).index("action")
    assert list(table.columns)[at + 1:at + 7] == [
        "verdict", "reasons", "days_to_certificate_expiry", "days_to_end_of_support", "days_to_ews_end",
        "mailboxes_failing"]
    assert str(table["days_to_certificate_expiry"].dtype) == "Int64"
    assert str(table["verdict"].dtype) == "string"
    assert table["reasons"].iloc[1] == "expired; key credential missing" and table["reasons"].iloc[0] == ""
    assert pd.isna(table["verdict"].iloc[2]) and pd.isna(table["days_to_certificate_expiry"].iloc[2])
    # Without a runbook's summary, the batch's own columns only (the setup runbook declares none).
    assert list(record.summary(OUTCOMES, tmp_path, registry.load(None)).columns) == record.COLUMNS
    # Parquet keeps the kinds, even for a column no org has a value in.
    table.to_parquet(tmp_path / "s.parquet", index=False)
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert str(back["days_to_ews_end"].dtype) == "Int64"
    assert back["days_to_certificate_expiry"].tolist()[:2] == [365, -5]
    none = record.summary([OUTCOMES[2]], tmp_path, HEALTH)
    none.to_parquet(tmp_path / "n.parquet", index=False)
    assert str(pd.read_parquet(tmp_path / "n.parquet")["days_to_ews_end"].dtype) == "Int64"


def test_a_summary_is_checked_with_the_runbook(tmp_path: Path) -> None:
    source = Path(str(HEALTH.source))
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    folder = tmp_path / "book"
    folder.mkdir()
    for notebook in source.parent.glob("*.ipynb"):
        shutil.copy2(notebook, folder)
    data["summary"] = {"columns": {"verdict": "health_verdit"}, "colour": "verdict", "sort": "days"}
    (folder / "runbook.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(definition.DefinitionError) as e:
        definition.load(folder / "runbook.yaml")
    assert "summary column verdict shows an undeclared fact 'health_verdit'" in str(e.value)
    assert "summary sort: 'days' is not one of its columns" in str(e.value)
    data["summary"] = {"columns": {"status": "health_verdict"}}
    (folder / "runbook.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(definition.DefinitionError, match="summary columns status are the batch's own"):
        record.board_columns(definition.load(folder / "runbook.yaml"))


def test_the_board_opens_most_urgent_first_and_sorts_numbers(tmp_path: Path) -> None:
    from browser import chromium, find_chromium

    table = record.summary(OUTCOMES, tmp_path, HEALTH)
    html = summary_page({"batch_id": "b1", "runbook": {"name": "s2s-health", "version": "1.0"}}, table,
                        OUTCOMES, tmp_path, HEALTH.summary)
    # Written in the board's order: negative days first, the org without a value last.
    ids = [part.split("'", 1)[0] for part in html.split("id='acme-")[1:]]
    assert ids == ["b", "d", "e", "a", "c"]
    assert "<td class=\"board v-broken\">broken</td>" in html and "v-action-needed" in html
    assert 'data-kind="number" data-dir="asc">days_to_certificate_expiry' in html
    assert 'data-kind="number">thumbprint' not in html  # a hex thumbprint is text, whatever its first digits
    assert "default-src 'none'" in html  # nothing loads from anywhere; the sort script runs by its hash
    page = tmp_path / "index.html"
    page.write_text(html, encoding="utf-8")
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    order = "Array.from(document.querySelectorAll('tbody tr')).map(function(r){ return r.id; })"
    with chromium(executable) as browser:
        opened = browser.open(page.as_uri(), ("td.v-ok", "td.v-broken", "td.v-action-needed"))
        assert opened.requests == [page.as_uri()], opened.requests
        assert opened.complaints == [], opened.complaints
        assert opened.elements == {"td.v-ok": 1, "td.v-broken": 1, "td.v-action-needed": 2}
        counts = browser.evaluate("document.getElementById('board-counts').innerText")
        assert "action needed: 2" in counts and "broken: 1" in counts and "none: 1" in counts, counts

        def click(column: str) -> list[str]:
            browser.evaluate("Array.from(document.querySelectorAll('th')).find(function(h){ "
                             f"return h.textContent === '{column}'; }}).click()")
            return [i.removeprefix("acme-") for i in browser.evaluate(order)]

        # Opened ascending: the first click turns it; the blank stays last both ways.
        assert click("days_to_certificate_expiry") == ["a", "e", "d", "b", "c"]
        assert click("days_to_certificate_expiry") == ["b", "d", "e", "a", "c"]
        assert click("verdict") == ["d", "e", "b", "a", "c"]
