"""The pages drawn from a manifest and a notebook, without a lab: what a failed run's page says, the
link back to a batch, and what a step's page leaves out, folds and sanitises."""

from __future__ import annotations

import nbformat
import pytest

from psbridge import pages, runpage

MANIFEST = {
    "run_id": "20261201T000000Z-abcd", "customer": "contoso-ltd", "organization": "contoso", "mode": "apply",
    "status": "failed", "failure": "step install-certificate failed: CertificateError: wrong password",
    "runbook": {"name": "exchange-online-s2s", "version": "1.2", "title": "S2S", "sha256": "ab" * 32},
    "operator": "jdoe", "machine": "LAPTOP-7", "started": "2026-12-01T00:00:00+00:00",
    "ended": "2026-12-01T00:01:00+00:00", "duration_s": 60.0, "psbridge": "0.1.0", "python": "3.11.7",
    "command": ["C:\\psbridge\\psbridge.exe", "run", "C:\\runs\\contoso.yaml", "--records", "C:\\records"],
    "batch": {"id": "b1", "page": "../../../batches/b1/index.html"},
    "identities": [{"as": "entra", "account": "admin@contoso.onmicrosoft.com", "where": "tid",
                    "steps": ["x"]},
                   {"as": "winrm", "account": "CONTOSO\\crmadmin", "where": "CRM01", "steps": ["x"]}],
    "parameters": {"pfx_password": "keyring:psbridge/contoso-pfx", "servers": ["CRM01"]},
    "secret_parameters": ["pfx_password"],
    "steps": [{"id": "certificate", "notebook": "10-certificate.ipynb", "title": "S2S certificate",
               "status": "succeeded", "duration_s": 1.2, "facts": {"changes": ["generated <a> certificate"]}},
              {"id": "install-certificate", "notebook": "20-install-certificate.ipynb", "title": "Install",
               "status": "failed", "error": "CertificateError: wrong password"},
              {"id": "entra-app", "notebook": "30-entra-app.ipynb", "title": "App", "status": "not run"}],
    "changes": [{"step": "install-certificate", "action": "upload", "where": "CRM01", "what": "x.pfx",
                 "outcome": "done", "started": "2026-12-01T00:00:30.123+00:00"},
                {"step": "install-certificate", "action": "install", "where": "CRM01", "what": "x",
                 "outcome": "failed", "started": "2026-12-01T00:00:31.000+00:00"}],
}


def test_a_failed_run_page_says_what_happened_and_how_to_resume() -> None:
    files = {"10-certificate.html": "00" * 32, "20-install-certificate.html": "11" * 32}
    page = runpage.run_page(MANIFEST, files)
    assert "<title>Run 20261201T000000Z-abcd — contoso-ltd/contoso — failed</title>" in page
    assert "What happened" in page and "wrong password" in page and "failed: install on CRM01" in page
    assert "C:\\psbridge\\psbridge.exe run C:\\runs\\contoso.yaml --records C:\\records --resume" in page
    assert '<a href="../../../batches/b1/index.html">batch b1</a>' in page
    assert "admin@contoso.onmicrosoft.com (tid)" in page and "CONTOSO\\crmadmin (CRM01)" in page
    assert "jdoe on LAPTOP-7" in page and "none signed in" in page  # no CRM Web API sign-in
    assert "unsigned" in page and "keyring:psbridge/contoso-pfx" in page
    assert "generated &lt;a&gt; certificate" in page  # values escaped
    # A step that did not run has no page to link to.
    assert '<a href="20-install-certificate.html">' in page and '<a href="30-entra-app.html">' not in page


def test_a_step_page_folds_code_and_leaves_out_the_defaults() -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("# Parameters (papermill ...)\norganization = 'demo'")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("organization = 'contoso'")
    injected.metadata["tags"] = ["injected-parameters"]
    shown = nbformat.v4.new_code_cell("state")
    shown.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<table><tr><td>CRM01</td></tr></table><script>fetch('//elsewhere')</script>"
                     "<img src='https://elsewhere.invalid/x.png'><meta http-equiv='refresh' content='0'>",
        "text/plain": "state"})]
    failed = nbformat.v4.new_code_cell("boom()")
    failed.outputs = [nbformat.v4.new_output("error", ename="StepError", evalue="no",
                                             traceback=["\x1b[31mStepError\x1b[0m: no"])]
    nb.cells = [nbformat.v4.new_markdown_cell("# Step 1\n\n<b>Why</b> <script>alert(1)</script>"),
                params, injected, shown, failed]
    page = pages.notebook_page(nb, title="t", header={"run": "r1"}, heading="h",
                               nav=[pages.Link("↑ run page", "index.html")], status="failed")
    body = page.split("<main>", 1)[1]
    assert "papermill ..." not in page and "contoso" in page
    assert body.startswith('<section class="md"><h1')
    assert "<summary>the parameters this step was given</summary>" in page and "<details open" not in page
    assert "<td>CRM01</td>" in page
    for gone in ("<script", "https://elsewhere.invalid", "http-equiv='refresh'", 'http-equiv="refresh"'):
        assert gone not in body, gone
    assert '<b>Why</b>' in page and 'class="cell failed"' in page and "ansi-red-fg" in page
    assert 'href="index.html"' in page and "default-src 'none'" in page


def test_displayed_html_is_sanitised_once_for_the_same_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A result displayed again (the next run of a step) is sanitised once a process; a large
    fragment is sanitised each time and not kept; either way the page holds bleach's result."""
    calls: list[int] = []
    sanitize = pages._sanitize

    def counting(fragment: str) -> str:
        calls.append(len(fragment))
        return sanitize(fragment)

    monkeypatch.setattr(pages, "_sanitize", counting)
    pages._clean_kept.cache_clear()
    small = '<table><tr><td onclick="x()">a</td></tr></table><script>alert(1)</script>'
    large = "<p>" + "b" * 40_000 + "</p><script>alert(2)</script>"
    try:
        got = [pages._clean(small), pages._clean(small), pages._clean(large), pages._clean(large)]
    finally:
        pages._clean_kept.cache_clear()
    assert calls == [len(small), len(large), len(large)]
    assert got[0] == got[1] == sanitize(small) and "script" not in got[0] and "onclick" not in got[0]
    assert got[2] == got[3] == sanitize(large) and "<script>" not in got[2]
