"""Certificates: generate a self-signed S2S certificate; validate a provided PFX."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from psbridge.certs import CertificateError, generate_self_signed, inspect_pfx, new_pfx_password, validate_pfx
from psbridge.errors import ParameterError
from psbridge.secrets import Secret


def _pfx(tmp_path: Path, *, key=None, days=30, start_days=-1, key_usage=None, with_key=True,
         password="pw-for-test") -> Path:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "customer s2s")])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now + dt.timedelta(days=start_days))
         .not_valid_after(now + dt.timedelta(days=days)))
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    cert = b.sign(key, hashes.SHA256())
    enc = serialization.BestAvailableEncryption(password.encode())
    data = pkcs12.serialize_key_and_certificates(b"x", key if with_key else None, cert, None, enc)
    p = tmp_path / "given.pfx"
    p.write_bytes(data)
    return p


def test_generated_certificate_is_fit_for_s2s_and_unique(tmp_path: Path) -> None:
    pw = new_pfx_password()
    a = generate_self_signed("contoso", pw)
    b = generate_self_signed("contoso", pw)
    assert a.info.subject != b.info.subject and a.info.subject.startswith("CN=psbridge S2S contoso ")
    path = a.write(tmp_path / "s2s.pfx")
    info = validate_pfx(path, pw)
    assert info.thumbprint == a.info.thumbprint and len(info.thumbprint) == 40
    assert info.key_bits == 2048 and info.has_private_key and info.key_matches and info.self_signed
    assert info.key_spec.startswith("1") and info.problems() == []
    assert pw.reveal().encode() not in path.read_bytes()


def test_wrong_password_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    path = _pfx(tmp_path)
    with pytest.raises(CertificateError, match="wrong password") as e:
        inspect_pfx(path, Secret("not-the-password"))
    assert "not-the-password" not in str(e.value)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    sig_only = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                             crl_sign=False, encipher_only=False, decipher_only=False)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key under test
    path = _pfx(tmp_path, key=small, days=-1, start_days=-10, key_usage=sig_only)
    with pytest.raises(CertificateError) as e:
        validate_pfx(path, Secret("pw-for-test"))
    text = "\n".join(e.value.problems)
    assert len(e.value.problems) == 3
    assert "1024 bits" in text and "expired" in text and "KeySpec 2" in text


def test_missing_private_key_and_non_rsa(tmp_path: Path) -> None:
    info = inspect_pfx(_pfx(tmp_path, with_key=False), Secret("pw-for-test"))
    assert not info.has_private_key and any("no private key" in p for p in info.problems())
    ec_info = inspect_pfx(_pfx(tmp_path, key=ec.generate_private_key(ec.SECP256R1())), Secret("pw-for-test"))
    assert any("RSA" in p for p in ec_info.problems())


def test_generation_refuses_weak_keys() -> None:
    with pytest.raises(ParameterError, match="2048"):
        generate_self_signed("x", Secret("pw-for-test"), key_bits=1024)


def test_a_pfx_once_opened_is_described_from_its_memo_until_its_bytes_change(tmp_path: Path) -> None:
    from psbridge.certs import inspect_pfx_remembered

    password = new_pfx_password()
    first = generate_self_signed("memo", password=password)
    pfx = tmp_path / "s2s.pfx"
    first.write(pfx)
    memos = tmp_path / "certificates"
    opened = inspect_pfx_remembered(pfx, password, memos)
    assert opened == inspect_pfx(pfx, password)
    (memo,) = memos.iterdir()
    text = memo.read_text(encoding="utf-8")
    assert password.reveal() not in text and "PRIVATE" not in text and opened.thumbprint in text
    # Remembered: described without the password, equal to what opening it said.
    assert inspect_pfx_remembered(pfx, None, memos) == opened
    # open_it: the password is checked whatever is remembered.
    with pytest.raises(CertificateError):
        inspect_pfx_remembered(pfx, Secret("not-the-password"), memos, open_it=True)
    # Other bytes at the same path: opened again, never the old certificate.
    generate_self_signed("memo", password=password).write(pfx)
    with pytest.raises(CertificateError):
        inspect_pfx_remembered(pfx, Secret("not-the-password"), memos)
    again = inspect_pfx_remembered(pfx, password, memos)
    assert again.thumbprint != opened.thumbprint and len(list(memos.iterdir())) == 2
    # A damaged memo is not trusted: the PFX is opened.
    for m in memos.iterdir():
        m.write_text("{", encoding="utf-8")
    assert inspect_pfx_remembered(pfx, password, memos) == again


def test_the_mac_alone_says_whether_a_password_is_the_pfxs(tmp_path: Path) -> None:
    from psbridge import pfxmac

    password = new_pfx_password()
    made = generate_self_signed("mac", password=password).pfx  # SHA-1 MAC, Triple-DES bags
    aes = _pfx(tmp_path, password="pw-for-test").read_bytes()  # cryptography's best: SHA-256, AES
    assert pfxmac.password_verifies(made, password) is True
    assert pfxmac.password_verifies(made, Secret(password.reveal() + "x")) is False
    assert pfxmac.password_verifies(aes, Secret("pw-for-test")) is True
    assert pfxmac.password_verifies(aes, Secret("pw-for-tesT")) is False
    # What OpenSSL says, for passwords near the right one: the MAC agrees with opening the file.
    for guess in ("pw-for-test", "pw-for-tes", "pw-for-test ", "PW-FOR-TEST", "p"):
        try:
            pkcs12.load_pkcs12(aes, guess.encode())
            opens = True
        except ValueError:
            opens = False
        assert pfxmac.password_verifies(aes, Secret(guess)) is opens, guess
    # The bytes the MAC covers, changed: no password verifies.
    content_at = made.index(bytes.fromhex("2a864886f70d010701")) + 20
    damaged = made[:content_at] + bytes([made[content_at] ^ 1]) + made[content_at + 1:]
    assert pfxmac.password_verifies(damaged, password) is False
    # What it does not read answers None (the caller opens the file): not DER, cut short, a BER
    # indefinite length, an empty or non-ASCII password.
    assert pfxmac.password_verifies(b"not a pfx", password) is None
    assert pfxmac.password_verifies(made[:len(made) // 2], password) is None
    assert pfxmac.password_verifies(b"\x30\x80" + made[4:], password) is None
    assert pfxmac.password_verifies(made, Secret("")) is None
    assert pfxmac.password_verifies(made, Secret("pässword")) is None


def test_a_digest_this_python_refuses_leaves_the_pfx_to_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIPS build of Python refuses SHA-1 (hashlib raises ValueError): the MAC cannot say, the
    caller opens the file."""
    import hashlib

    from psbridge import pfxmac

    password = new_pfx_password()
    made = generate_self_signed("mac", password=password).pfx
    real_new = hashlib.new

    def refusing(name: str, *args: object, **kwargs: object) -> object:
        if name == "sha1":
            raise ValueError("[digital envelope routines] unsupported")
        return real_new(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pfxmac.hashlib, "new", refusing)
    assert pfxmac.password_verifies(made, password) is None


def test_remembered_bytes_have_their_password_checked_by_the_mac_not_by_opening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from psbridge import certs, pfxmac

    password = new_pfx_password()
    pfx = generate_self_signed("memo", password=password).write(tmp_path / "s2s.pfx")
    memos = tmp_path / "certificates"
    opened = certs.inspect_pfx_remembered(pfx, password, memos, open_it=True)  # not remembered: opened
    loads: list[bytes] = []
    real_load = pkcs12.load_pkcs12

    def counted(data: bytes, pw: bytes | None) -> object:
        loads.append(data)
        return real_load(data, pw)

    monkeypatch.setattr(certs.pkcs12, "load_pkcs12", counted)
    assert certs.inspect_pfx_remembered(pfx, password, memos, open_it=True) == opened
    assert loads == []  # the MAC said the password is the file's
    # A wrong password: opened, so the error is the one opening gives.
    with pytest.raises(CertificateError, match="cannot open"):
        certs.inspect_pfx_remembered(pfx, Secret("not-the-password"), memos, open_it=True)
    assert len(loads) == 1
    # No password, or a MAC this module cannot read: opened as before.
    with pytest.raises(CertificateError):
        certs.inspect_pfx_remembered(pfx, None, memos, open_it=True)
    monkeypatch.setattr(pfxmac, "password_verifies", lambda data, pw: None)
    assert certs.inspect_pfx_remembered(pfx, password, memos, open_it=True) == opened
    assert len(loads) == 3
    # Bytes other than those the digest names (the file changed after it was hashed): opened.
    monkeypatch.undo()
    digest = certs.pfx_digest(pfx)
    generate_self_signed("memo", password=password).write(pfx)
    other = certs.inspect_pfx_remembered(pfx, password, memos, open_it=True, digest=digest)
    assert other.thumbprint != opened.thumbprint
    # ... and remembered as itself: the old bytes' memo still names the old certificate.
    assert certs.inspect_pfx_remembered(pfx, None, memos, digest=digest) == opened
    assert certs.inspect_pfx_remembered(pfx, None, memos) == other
