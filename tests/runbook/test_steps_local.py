"""Facts, the deployment description and step 10 (certificate): what runs without a server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from psbridge import certs
from psbridge.runbook import facts
from psbridge.runbook.deployment import Deployment, DeploymentError
from psbridge.runbook.steps import certificate as steps
from psbridge.runbook.steps.common import certificate_for
from psbridge.secretforms import forms
from psbridge.secrets import Secret, remember, resolve


def test_a_fact_is_never_a_secret_value() -> None:
    with pytest.raises(facts.FactError, match="reference"):
        facts.record("password", Secret("canary-fact-1"))
    remember(["canary-fact-2"])
    with pytest.raises(facts.FactError, match="secret value"):
        facts.record("note", "the password is canary-fact-2")
    with pytest.raises(facts.FactError, match="secret value"):
        facts.record("nested", {"a": ["x", "canary-fact-2"]})
    assert facts.record("client_secret_ref", "lab:x/y") == "lab:x/y"


def test_facts_are_read_back_from_an_executed_notebook() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={facts.FACT_MIME: {"name": "thumbprint", "value": "AB"},
                                                    "text/plain": "fact thumbprint = 'AB'"}),
        nbformat.v4.new_output("display_data", data={facts.FACT_MIME: {"name": "thumbprint", "value": "CD"},
                                                    "text/plain": "fact thumbprint = 'CD'"}),
    ]
    nb.cells.append(cell)
    assert facts.read_facts(nb) == {"thumbprint": "CD"}


def _real_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    monkeypatch.setenv("PSBRIDGE_TEST_WINRM", "x")
    dep = Deployment.from_params(
        "contoso",
        servers=["crm01=https://crm01.contoso.local:5986/wsman", "CRM02 https://crm02.contoso.local/wsman"],
        winrm_user="CONTOSO\\setup", winrm_password="env:PSBRIDGE_TEST_WINRM",
        service_account="CONTOSO\\crmasync",
        cloud="global", tenant="contoso.onmicrosoft.com",
    )
    monkeypatch.setattr(Deployment, "work_dir", lambda self, c: tmp_path / c / self.organization)
    return dep


def test_real_deployment_from_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = _real_deployment(tmp_path, monkeypatch)
    assert dep.servers == ["CRM01", "CRM02"] and dep.deployment_server == "CRM01"
    assert dep.profiles["CRM02"].endpoint == "https://crm02.contoso.local:5986/wsman"
    assert str(dep.script("ConfigureCrmServerSideSync.ps1")).endswith("Tools\\ConfigureCrmServerSideSync.ps1")
    with pytest.raises(DeploymentError, match="name the CRM servers"):
        Deployment.from_params("contoso", cloud="global", tenant="x.onmicrosoft.com", service_account="NS\\x")
    with pytest.raises(DeploymentError, match="a WinRM URL is http") as e:
        Deployment.from_params("contoso", servers=["CRM01=ftp://x"], cloud="global", tenant="t",
                               service_account="Network Service")
    assert "tenant: 't' is neither a tenant GUID" in str(e.value)  # every problem at once
    with pytest.raises(DeploymentError, match="no lab"):
        Deployment.from_params("contoso", lab=str(tmp_path / "nolab"))


@pytest.mark.parametrize(("given", "said"), [
    ({"servers": "CRM01"}, "servers: expected a list such as [CRM01], got 'CRM01'"),
    ({"winrm_scheme": "ftp"}, "winrm_scheme: 'ftp' is not one of http, https"),
    ({"organization": "a" * 300}, "at most 30 characters"),
    ({"tools_folder": "C:\\Tools\x00"}, "U+0000"),
    ({"tenant": "contoso.onmicrosoft.com\u202e"}, "U+202E"),
    ({"service_account": "bad"}, "names no domain"),
    ({"cloud": "mars"}, "cloud: 'mars' is not one of"),
])
def test_deployment_refuses_bad_input_before_connecting(given: dict[str, object], said: str) -> None:
    # A notebook run on its own (papermill -p, JupyterLab) checks what it was given, as a run does.
    kw: dict[str, object] = {"organization": "contoso", "servers": ["CRM01=https://crm01.contoso.local/wsman"],
                             "service_account": "CONTOSO\\async", "cloud": "global",
                             "tenant": "contoso.onmicrosoft.com", **given}
    with pytest.raises(DeploymentError) as e:
        Deployment.from_params(**kw)  # type: ignore[arg-type]
    assert said in str(e.value)


def test_deployment_shows_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-winrm-\\'\"$ü-secret"
    dep = _real_deployment(tmp_path, monkeypatch)
    monkeypatch.setenv("PSBRIDGE_TEST_WINRM", canary)
    dep.profiles["CRM01"].resolve_password()  # as a session opening would
    for text in (repr(dep), str(dep), dep._repr_html_(), repr(dep.describe()), repr(vars(dep))):
        for form in forms(canary):
            assert form not in text
        assert "env:PSBRIDGE_TEST_WINRM" in text


def test_certificate_step_plans_generates_once_and_reuses(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    dep = _real_deployment(tmp_path, monkeypatch)
    ref = f"file:{tmp_path / 'secrets' / 'pfx-password'}"
    planned = steps.ensure_certificate(dep, "cust", "", ref, 365, plan=True)
    assert planned.info is None and planned.changes[0].startswith("generate a self-signed")
    assert not planned.path.exists() and not (tmp_path / "secrets").exists()
    made = steps.ensure_certificate(dep, "cust", "", ref, 365)
    assert made.path.exists() and made.info is not None
    assert made.changes == ["generated a self-signed RSA 2048 certificate valid 365 days",
                            f"stored a new PFX password at {ref}"]
    again = steps.ensure_certificate(dep, "cust", "", ref, 365)
    assert again.changes == [] and again.info is not None and again.info.thumbprint == made.info.thumbprint
    # A certificate expiring within 30 days is not replaced on the quiet: a new one is a rotation.
    short = certs.generate_self_signed("contoso", resolve(ref), days=10)
    short.write(made.path)
    with pytest.raises(steps.StepError, match=r"expires within|expired on") as stopped:
        steps.ensure_certificate(dep, "cust", "", ref, 365)
    assert "replace_certificate" in str(stopped.value)
    # Asked for, with a reason, it is replaced: the stored password is reused, the old PFX kept.
    renewed = steps.ensure_certificate(dep, "cust", "", ref, 365, replace_certificate="expires in 10 days")
    assert renewed.changes[0].startswith("generated a self-signed RSA 2048 certificate valid 365 days "
                                         "(replacing it as asked (expires in 10 days): the kept certificate")
    assert "the old PFX is kept at" in renewed.changes[0] and len(renewed.changes) == 1
    assert len(list(made.path.parent.glob("s2s-replaced-*.pfx"))) == 1
    ref_cert = certificate_for(dep, "cust", "", "", ref)
    assert ref_cert.exists and renewed.info is not None and ref_cert.thumbprint == renewed.info.thumbprint
    with pytest.raises(steps.StepError, match="run step 10 again"):
        certificate_for(dep, "cust", "", "", ref, thumbprint="00" * 20)


def test_a_kept_pfx_that_no_longer_opens_stops_the_step(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dep = _real_deployment(tmp_path, monkeypatch)
    ref = f"file:{tmp_path / 'secrets' / 'pfx-password'}"
    made = steps.ensure_certificate(dep, "cust", "", ref, 365)
    secret_file = tmp_path / "secrets" / "pfx-password"
    secret_file.write_text("not-the-password", encoding="utf-8")
    before = made.path.read_bytes()
    for plan in (True, False):
        with pytest.raises(steps.StepError, match="does not open with the password at file:") as e:
            steps.ensure_certificate(dep, "cust", "", ref, 365, plan=plan)
        assert "replace_certificate" in str(e.value) and "not-the-password" not in str(e.value)
    assert made.path.read_bytes() == before and list(made.path.parent.glob("*.pfx")) == [made.path]
    secret_file.unlink()
    with pytest.raises(steps.StepError, match="cannot be read"):
        steps.ensure_certificate(dep, "cust", "", ref, 365)


def test_a_step_opens_the_pfx_unless_this_run_opened_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps that upload the PFX open it (a wrong password stops them before anything changes),
    but not again when a step of the same run opened these bytes with the same reference."""
    from psbridge import intents

    dep = _real_deployment(tmp_path, monkeypatch)
    ref = f"file:{tmp_path / 'secrets' / 'pfx-password'}"
    secret_file = tmp_path / "secrets" / "pfx-password"
    run_one = tmp_path / "run-1" / "journal.jsonl"
    run_one.parent.mkdir()
    monkeypatch.setenv(intents.ENV_JOURNAL, str(run_one))
    made = steps.ensure_certificate(dep, "cust", "", ref, 365)  # generated: sealed with the password
    assert made.info is not None
    digest = certs.pfx_digest(made.path)
    assert intents.pfx_opened_in_this_run(digest, ref)
    noted = [e for e in intents.Journal.read(run_one).entries if e.get("event") == intents.PFX_OPENED]
    assert noted == [{"t": noted[0]["t"], "event": "pfx-opened", "sha256": digest, "password_at": ref}]
    right = secret_file.read_text(encoding="utf-8")
    secret_file.write_text("not-the-password", encoding="utf-8")
    # This run checked it: described from the memo, not opened again.
    assert certificate_for(dep, "cust", "", "", ref).thumbprint == made.info.thumbprint
    # Another run (its own journal) opens it, and the wrong password stops it.
    run_two = tmp_path / "run-2" / "journal.jsonl"
    run_two.parent.mkdir()
    monkeypatch.setenv(intents.ENV_JOURNAL, str(run_two))
    with pytest.raises(certs.CertificateError, match="wrong password"):
        certificate_for(dep, "cust", "", "", ref)
    # A reference other than the one checked is opened too.
    other = f"file:{tmp_path / 'secrets' / 'other'}"
    (tmp_path / "secrets" / "other").write_text(right, encoding="utf-8")
    monkeypatch.setenv(intents.ENV_JOURNAL, str(run_one))
    assert certificate_for(dep, "cust", "", "", other).thumbprint == made.info.thumbprint
    assert intents.pfx_opened_in_this_run(digest, other)
    # Not required (a step that only reads the public certificate): never opened.
    monkeypatch.setenv(intents.ENV_JOURNAL, str(run_two))
    assert certificate_for(dep, "cust", "", "", ref, required=False).thumbprint == made.info.thumbprint


def test_a_provided_pfx_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = _real_deployment(tmp_path, monkeypatch)
    monkeypatch.setenv("PSBRIDGE_TEST_PFX", "right-password")
    good = certs.generate_self_signed("given", Secret("right-password")).write(tmp_path / "given.pfx")
    chosen = steps.ensure_certificate(dep, "cust", str(good), "env:PSBRIDGE_TEST_PFX", 365)
    assert chosen.changes == [] and chosen.info is not None and chosen.path == good
    monkeypatch.setenv("PSBRIDGE_TEST_PFX", "wrong-password")
    with pytest.raises(certs.CertificateError, match="wrong password"):
        steps.ensure_certificate(dep, "cust", str(good), "env:PSBRIDGE_TEST_PFX", 365)
