"""Signed records: the operator's key signs the manifest, verify names the signer and catches a
changed byte, a re-signed or unsigned manifest and a signer other than the one asked for, each with
its own message and exit code. Unsigned records stay valid and say so."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from psbridge import evidence, intents, signing
from psbridge.cli import app
from psbridge.errors import PsbridgeError, SigningError

PASSWORD = "sign-canary-Ünï \"$`\\ 7"


def _key_and_cert(name: str, days: int = 30, start: int = -1
                  ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now + dt.timedelta(days=start))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return key, cert


def _pem(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, password: str | None = None) -> bytes:
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
            + cert.public_bytes(serialization.Encoding.PEM))


def _record(root: Path, status: str = "complete") -> Path:
    rec = root / "cust" / "org" / "20261201T000000Z-abcd"
    rec.mkdir(parents=True)
    journal = rec / intents.JOURNAL
    head = {"run_id": rec.name, "mode": "apply", "customer": "cust", "organization": "org",
            "runbook": {"name": "rb", "version": "1", "sha256": "ab" * 32}, "operator": "op", "machine": "m"}
    intents.append({"event": "run-start", "head": head, "steps": [{"id": "make", "status": "not run",
                                                                  "notebook": "00-make.ipynb"}]}, journal)
    intents.append({"event": "step-start", "step": "make"}, journal)
    (rec / "00-make.ipynb").write_text("{}", encoding="utf-8")
    intents.append({"event": "step-end", "outcome": {"id": "make", "status": "succeeded",
                                                     "notebook": "00-make.ipynb"}}, journal)
    intents.append({"event": "run-end", "status": status, "failure": None}, journal)
    evidence.write_manifest_from_journal(rec)
    return rec


def _verify(*args: str) -> tuple[int, str]:
    said = CliRunner().invoke(app, ["verify", *args], env={"COLUMNS": "250"})
    assert said.exception is None or isinstance(said.exception, SystemExit), said.output
    return said.exit_code, " ".join(said.output.split())


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    key, cert = _key_and_cert("Jane Operator")
    other_key, other_cert = _key_and_cert("Someone Else")
    out = {"pem": tmp_path / "jane.pem", "pfx": tmp_path / "jane.pfx", "cert": tmp_path / "jane.crt",
           "other": tmp_path / "other.pem", "other_cert": tmp_path / "other.crt"}
    out["pem"].write_bytes(_pem(key, cert, PASSWORD))
    out["pfx"].write_bytes(pkcs12.serialize_key_and_certificates(
        b"jane", key, cert, None, serialization.BestAvailableEncryption(PASSWORD.encode())))
    out["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out["other"].write_bytes(_pem(other_key, other_cert))
    out["other_cert"].write_bytes(other_cert.public_bytes(serialization.Encoding.DER))
    return out


def test_unsigned_record_verifies_and_says_it_is_unsigned(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    code, text = _verify(str(rec))
    assert code == 0 and "intact, COMPLETE" in text and "unsigned" in text, text
    assert "unsigned" in (rec / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("form", ["pfx", "pem"])
def test_signed_record_names_its_signer_and_verifies(tmp_path: Path, keys: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    monkeypatch.setenv("PSBRIDGE_TEST_SIGN_PASSWORD", PASSWORD)
    rec = _record(tmp_path)
    said = CliRunner().invoke(app, ["sign", str(rec), "--key", str(keys[form]),
                                    "--sign-password", "env:PSBRIDGE_TEST_SIGN_PASSWORD"])
    assert said.exit_code == 0 and "signed by CN=Jane Operator" in said.output, said.output
    code, text = _verify(str(rec))
    assert code == 0 and "signed by CN=Jane Operator" in text, text
    assert "signed by CN=Jane Operator" in (rec / "index.html").read_text(encoding="utf-8")
    manifest = evidence.read_manifest(rec)
    assert manifest["signer"]["subject"] == "CN=Jane Operator"
    # The certificate file, or its thumbprint, is the signer asked for.
    assert _verify(str(rec), "--signer", str(keys["cert"]))[0] == 0
    assert _verify(str(rec), "--signer", manifest["signer"]["thumbprint"].lower())[0] == 0
    # The key's password appears nowhere in the record.
    for p in rec.iterdir():
        assert PASSWORD.encode() not in p.read_bytes(), p.name


def test_a_key_in_the_secret_store_signs(tmp_path: Path, keys: dict[str, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSBRIDGE_TEST_SIGN_KEY", keys["other"].read_text(encoding="ascii"))
    rec = _record(tmp_path, status="failed")
    signer = signing.load_signer("env:PSBRIDGE_TEST_SIGN_KEY")
    evidence.write_manifest_from_journal(rec, signer=signer)
    code, text = _verify(str(rec))
    assert code == 3 and "intact, FAILED" in text and "signed by CN=Someone Else" in text, text


def test_changed_byte_resigned_manifest_and_wrong_signer_each_fail_in_their_own_words(
        tmp_path: Path, keys: dict[str, Path]) -> None:
    rec = _record(tmp_path)
    evidence.write_manifest_from_journal(rec, signer=signing.load_signer(keys["other"]))

    # A signer other than the one asked for: its own code.
    code, text = _verify(str(rec), "--signer", str(keys["cert"]))
    assert code == 9 and "WRONG SIGNER" in text and "signed by CN=Someone Else" in text, text

    # One changed byte in a step's notebook: tampered, as ever.
    saved = (rec / "00-make.ipynb").read_bytes()
    (rec / "00-make.ipynb").write_bytes(b"{ }")
    code, text = _verify(str(rec))
    assert code == 1 and "TAMPERED" in text and "changed: 00-make.ipynb" in text, text
    (rec / "00-make.ipynb").write_bytes(saved)

    # A manifest rewritten with consistent hashes (what a forger can do) no longer matches its signature.
    manifest = json.loads((rec / "manifest.json").read_text(encoding="utf-8"))
    manifest["operator"] = "mallory"
    manifest["self_sha256"] = evidence.sha256(evidence._canonical(manifest))
    (rec / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    code, text = _verify(str(rec))
    assert code == 8 and "BAD SIGNATURE" in text and "does not match manifest.json" in text, text

    # The signature removed, while the manifest names a signer.
    evidence.write_manifest_from_journal(rec, signer=signing.load_signer(keys["other"]))
    (rec / "manifest.sig").unlink()
    code, text = _verify(str(rec))
    assert code == 8 and "manifest.sig is missing" in text, text

    # An unsigned record, when a signer is asked for.
    evidence.write_manifest_from_journal(rec)
    code, text = _verify(str(rec), "--signer", str(keys["cert"]))
    assert code == 9 and "unsigned" in text, text


def test_signing_keys_are_checked_before_anything_is_signed(tmp_path: Path, keys: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSBRIDGE_TEST_SIGN_PASSWORD", "wrong")
    with pytest.raises(SigningError, match="is encrypted: give its password"):
        signing.load_signer(keys["pem"])
    with pytest.raises(SigningError, match="wrong password"):
        signing.load_signer(keys["pfx"], "env:PSBRIDGE_TEST_SIGN_PASSWORD")
    with pytest.raises(SigningError, match="never the value"):
        signing.load_signer(keys["pfx"], PASSWORD)
    with pytest.raises(SigningError, match="no signing key at"):
        signing.load_signer(tmp_path / "nothing.pem")
    key, cert = _key_and_cert("Expired", days=-1, start=-30)
    (tmp_path / "old.pem").write_bytes(_pem(key, cert))
    with pytest.raises(SigningError, match="not now"):
        signing.load_signer(tmp_path / "old.pem")
    _, stranger = _key_and_cert("Stranger")
    (tmp_path / "mixed.pem").write_bytes(_pem(key, stranger))
    with pytest.raises(SigningError, match="not the private key's"):
        signing.load_signer(tmp_path / "mixed.pem")
    assert issubclass(SigningError, PsbridgeError)
    rec = _record(tmp_path / "r")
    before = {p.name: p.read_bytes() for p in rec.iterdir()}
    said = CliRunner().invoke(app, ["sign", str(rec), "--key", str(keys["pfx"]), "--sign-password",
                                    "env:PSBRIDGE_TEST_SIGN_PASSWORD"])
    assert said.exit_code == 2 and "wrong password" in " ".join(said.output.split()), said.output
    assert {p.name: p.read_bytes() for p in rec.iterdir()} == before
