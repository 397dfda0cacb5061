"""The record as a change board reads it: a run page and step pages holding who/what/when, small,
opening offline in a real browser with the network blocked; a signed run; and the resume command a
failed run prints, pasted as printed.

One lab in another process (``psbridge lab up``) and ``psbridge run`` in processes of their own, as
a consultant runs them.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labproc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from psbridge import evidence
from psbridge import secrets as sec
from psbridge.runbook import registry

BOOK = registry.load("exchange-online-s2s")
ORG = "contoso"
SIGN_PASSWORD = "pages-sign-canary-\"$ü"
SIGN_ENV = {"PSBRIDGE_TEST_SIGN_PASSWORD": SIGN_PASSWORD}
MAX_PAGE = 100 * 1024


def _signing_key(path: Path) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    # RFC 4514 names the last attribute first: CN=Pat Consultant,O=Partner Ltd.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner Ltd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Pat Consultant")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"pat", key, cert, None, serialization.BestAvailableEncryption(SIGN_PASSWORD.encode())))
    return cert


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, lab_keys: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("pages")
    state = root / "lab"
    labproc.lab_up(state, lab_keys)
    key = root / "operator.pfx"
    cert = _signing_key(key)
    params = labproc.params_file(root / "contoso.yaml", {
        "customer": "pages", "organization": ORG, "lab": str(state),
        "pfx_password": f"lab:pages/{ORG}/pfx-password", "client_secret": f"lab:pages/{ORG}/client-secret",
        "app_name": f"psbridge pages {ORG}",
    })
    try:
        done = labproc.psbridge(state, "run", str(params), "--records", str(root / "records"), "--sign",
                                str(key), "--sign-password", "env:PSBRIDGE_TEST_SIGN_PASSWORD", **SIGN_ENV)
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        (record,) = (root / "records" / "pages" / ORG).iterdir()
        yield {"state": state, "root": root, "record": record, "params": params, "key": key, "cert": cert,
               "output": done.stdout.decode()}
    finally:
        labproc.lab_down(state)


def _text(page: Path) -> str:
    """A page's text as a reader sees it (tags dropped, entities decoded, spaces collapsed)."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<style>.*?</style>", " ", raw, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


def _pages(record: Path) -> list[Path]:
    return sorted(record.glob("*.html"))


def test_run_page_holds_the_header_facts(env: dict[str, Any]) -> None:
    record: Path = env["record"]
    manifest = evidence.read_manifest(record)
    page = (record / "index.html").read_text(encoding="utf-8")
    text = _text(record / "index.html")
    assert re.search(r"<title>Run [^<]*pages/contoso[^<]*complete</title>", page), page[:600]
    for fact in ("customer pages", "organization contoso", f"run {manifest['run_id']}", "status complete",
                 f"runbook SHA-256 {manifest['runbook']['sha256']}", f"started {manifest['started']}",
                 f"ended {manifest['ended']}", f"OS user {manifest['operator']} on {manifest['machine']}",
                 "WinRM account LAB\\crmadmin (CRM01)", "Entra ID account admin@",
                 "signature signed by CN=Pat Consultant,O=Partner Ltd"):
        assert fact in text, fact
    roles = {who["as"] for who in manifest["identities"]}
    assert {"winrm", "entra", "crm"} <= roles, manifest["identities"]
    # Parameters, the secret ones as references.
    assert "pfx_password lab:pages/contoso/pfx-password secret: where it is kept" in text
    # Every step: its status, what it changed, and a link to its page.
    for step in manifest["steps"]:
        stem = step["notebook"].removesuffix(".ipynb")
        assert f'<a href="{stem}.html">{stem}</a>' in page, stem
    install = next(s for s in manifest["steps"] if s["id"] == "install-certificate")
    for change in install["facts"]["changes"]:
        assert html.escape(change) in page
    assert "What happened" not in text  # only for a failed or interrupted run


def test_step_pages_hold_the_header_and_show_results_before_code(env: dict[str, Any]) -> None:
    record: Path = env["record"]
    manifest = evidence.read_manifest(record)
    thumbprint = next(s for s in manifest["steps"] if s["id"] == "certificate")["facts"]["thumbprint"]
    for step in manifest["steps"]:
        page_path = record / step["notebook"].replace(".ipynb", ".html")
        page = page_path.read_text(encoding="utf-8")
        text = _text(page_path)
        stem = page_path.stem
        title = re.search(r"<title>(.*?)</title>", page)
        assert title and stem in title.group(1) and "pages/contoso" in title.group(1) \
            and "succeeded" in title.group(1), title
        for fact in (f"run {manifest['run_id']}", f"step {step['id']} — {step['title']}", "status succeeded",
                     f"started {step['started']}", f"ended {step['ended']}", "↑ run page"):
            assert fact in text, (stem, fact)
        assert 'href="index.html"' in page
        # The notebook's defaults are left out; every code cell is folded, none open.
        assert "# Parameters (papermill" not in text, stem
        assert "<details open" not in page and page.count('<details class="code">') >= 3
        # Before any code: the explanation (the first markdown cell) comes first in the body.
        body = page.split("<main>", 1)[1]
        assert body.startswith('<section class="md">'), (stem, body[:80])
    cert_page = (record / "10-certificate.html").read_text(encoding="utf-8")
    assert thumbprint in cert_page and len(thumbprint) == 40  # whole, not cut short
    # The servers' log in time order across servers.
    install = (record / "20-install-certificate.html").read_text(encoding="utf-8")
    times = re.findall(r"<tr><td>(\d{4}-\d\d-\d\dT[\d:.]+\+00:00)</td><td>CRM0", install)
    assert len(times) >= 4 and times == sorted(times), times


def test_every_page_is_under_100_kb_and_self_contained(env: dict[str, Any]) -> None:
    pages = _pages(env["record"])
    assert len(pages) == len(BOOK.steps) + 1
    for page in pages:
        data = page.read_text(encoding="utf-8")
        assert len(data.encode("utf-8")) < MAX_PAGE, (page.name, len(data))
        assert "default-src 'none'" in data
        # Nothing names another host to load from: no script, no stylesheet link, no remote image
        # (a link a reader may click, such as the device code sign-in page, loads nothing by itself).
        assert "<script" not in data and "<link" not in data, page.name
        assert not re.search(r"""src=["']?(https?:)?//""", data), page.name


def test_every_page_renders_in_chromium_with_the_network_blocked(env: dict[str, Any]) -> None:
    from browser import chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shots = Path(os.environ.get("PSBRIDGE_TEST_SCREENSHOTS") or env["root"] / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    record: Path = env["record"]
    control = env["root"] / "control.html"
    control.write_text('<title>control</title><img src="http://psbridge-control.invalid/x.png">',
                       encoding="utf-8")
    run_id = evidence.read_manifest(record)["run_id"]
    with chromium(executable) as browser:
        # The check itself works: a page that reaches for another host is seen doing so.
        seen = browser.open(control.as_uri())
        assert any(u.startswith("http://psbridge-control.invalid") for u in seen.requests), seen.requests
        for page in _pages(record):
            opened = browser.open(page.as_uri(), ("header.psbridge-header", "main", "table"))
            assert opened.requests == [page.as_uri()], (page.name, opened.requests)
            assert opened.complaints == [], (page.name, opened.complaints)
            assert opened.elements["header.psbridge-header"] == 1 and opened.elements["main"] == 1, page.name
            assert opened.elements["table"] >= 1 and "pages/contoso" in opened.title, page.name
            assert run_id in opened.text, page.name
            assert opened.screenshot.startswith(b"\x89PNG") and len(opened.screenshot) > 20_000
            (shots / f"{page.stem}.png").write_bytes(opened.screenshot)


def test_a_signed_run_verifies_and_names_its_signer(env: dict[str, Any]) -> None:
    record: Path = env["record"]
    assert (record / "manifest.sig").exists()
    said = labproc.psbridge(env["state"], "verify", str(record))
    out = " ".join(said.stdout.decode().split())
    assert said.returncode == 0 and "intact, COMPLETE" in out and "signed by CN=Pat Consultant" in out, out
    cert = env["root"] / "operator.crt"
    cert.write_bytes(env["cert"].public_bytes(serialization.Encoding.PEM))
    assert labproc.psbridge(env["state"], "verify", str(record), "--signer", str(cert)).returncode == 0
    for p in record.iterdir():
        assert SIGN_PASSWORD.encode() not in p.read_bytes(), p.name


def test_the_resume_command_a_failed_run_prints_works_pasted(env: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSBRIDGE_LAB_STATE", str(env["state"]))
    ref = f"lab:pages/{ORG}/pfx-password"
    right = sec.resolve(ref)
    sec.store(ref, "not-the-pfx-password")
    elsewhere = env["root"] / "elsewhere"
    elsewhere.mkdir()
    try:
        failed = labproc.psbridge(env["state"], "run", str(env["params"]), "--records",
                                  str(env["root"] / "records"), "--from", "install-certificate", "--sign",
                                  str(env["key"]), "--sign-password", "env:PSBRIDGE_TEST_SIGN_PASSWORD",
                                  **SIGN_ENV)
    finally:
        sec.store(ref, right)
    out = failed.stdout.decode()
    assert failed.returncode == 1, out
    match = re.search(r"After fixing the cause, resume with: (.+)", out)
    assert match, out
    command = shlex.split(match.group(1))
    assert command[1:3] == ["run", str(env["params"].resolve())] and "--records" in command \
        and "--sign" in command and command[-1] == "--resume", command
    failed_record = sorted((env["root"] / "records" / "pages" / ORG).iterdir())[-1]
    page = _text(failed_record / "index.html")
    assert "What happened" in page and "status failed" in page and shlex.join(command) in page, page
    # Pasted as printed, in another folder: it resumes at the failed step and completes.
    resumed = subprocess.run(command, capture_output=True, timeout=labproc.TIMEOUT, cwd=elsewhere,
                             env=labproc.clean_env(env["state"], **SIGN_ENV), check=False)
    said = resumed.stdout.decode()
    assert resumed.returncode == 0, said + resumed.stderr.decode()
    last = sorted((env["root"] / "records" / "pages" / ORG).iterdir())[-1]
    manifest = evidence.read_manifest(last)
    assert manifest["status"] == "complete" and manifest["range"]["from"] == "install-certificate"
    assert manifest["signer"]["subject"].startswith("CN=Pat Consultant")
    assert not list(elsewhere.iterdir())  # nothing written where it was pasted
    assert json.loads((last / "manifest.sig").read_text(encoding="utf-8"))["signer"]["subject"] == \
        manifest["signer"]["subject"]
    shutil.rmtree(elsewhere)
