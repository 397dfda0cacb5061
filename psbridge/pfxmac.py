"""Whether a password is a PFX's: its integrity MAC checked, without decrypting anything.

Opening a PFX derives keys from its password for its MAC and for the key and IV of each of its
encrypted bags: in the PFX psbridge makes, 2,048 hash rounds for the MAC and 50,000 for each of
the others, some 60 ms of CPU. A step that only needs to know that the kept password still opens
the kept file, where these very bytes (the same SHA-256) were opened with their password before,
needs only the MAC's derivation, about 2 ms: a password under which the MAC verifies is the one
that sealed the file (short of an HMAC collision), and the bags were opened with that one.

Only the PKCS#12 password MAC of RFC 7292 is read here (SHA-1 or SHA-2, an ASCII password,
definite-length DER, as OpenSSL writes it); anything else answers None, and the caller opens
the file the ordinary way. Nothing is kept: the password is used for this one derivation.
"""

from __future__ import annotations

import hashlib
import hmac

from psbridge.secrets import Secret

# The digest algorithms of a PKCS#12 MacData, by the DER content of their OIDs.
_DIGESTS = {
    bytes.fromhex("2b0e03021a"): "sha1",                  # 1.3.14.3.2.26
    bytes.fromhex("608648016503040201"): "sha256",        # 2.16.840.1.101.3.4.2.1
    bytes.fromhex("608648016503040202"): "sha384",
    bytes.fromhex("608648016503040203"): "sha512",
}
_ID_DATA = bytes.fromhex("2a864886f70d010701")            # 1.2.840.113549.1.7.1 (pkcs7-data)
_MAC_KEY = 3                                             # RFC 7292 B.3: the ID byte for MAC keys
_MOST_ROUNDS = 10_000_000                                # beyond this, leave it to OpenSSL


def _tlv(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    """The value of the DER element at ``at`` (which must have ``tag``), and where the next begins;
    ValueError where there is none such (as for anything else this module does not read)."""
    if at + 2 > len(data) or data[at] != tag:
        raise ValueError
    length, at = data[at + 1], at + 2
    if length & 0x80:  # long form; 0x80 alone is BER's indefinite length, not DER
        count = length & 0x7F
        if not 1 <= count <= 4 or at + count > len(data):
            raise ValueError
        length, at = int.from_bytes(data[at:at + count], "big"), at + count
    if at + length > len(data):
        raise ValueError
    return data[at:at + length], at + length


def _mac_parts(pfx: bytes) -> tuple[bytes, str, bytes, bytes, int]:
    """(the authenticated content, digest name, MAC, salt, rounds) of a DER PFX."""
    body, _ = _tlv(pfx, 0, 0x30)                          # PFX ::= SEQUENCE
    _version, at = _tlv(body, 0, 0x02)
    auth_safe, at = _tlv(body, at, 0x30)                  # authSafe ContentInfo
    mac_data, _ = _tlv(body, at, 0x30)                    # macData (absent: no MAC to check)
    kind, inner = _tlv(auth_safe, 0, 0x06)
    if kind != _ID_DATA:
        raise ValueError                                 # public-key integrity mode
    explicit, _ = _tlv(auth_safe, inner, 0xA0)
    content, _ = _tlv(explicit, 0, 0x04)                  # what the MAC covers
    digest_info, at = _tlv(mac_data, 0, 0x30)
    algorithm, after = _tlv(digest_info, 0, 0x30)
    oid, _ = _tlv(algorithm, 0, 0x06)
    if oid not in _DIGESTS:
        raise ValueError                                 # PBMAC1, or a digest not listed
    mac, _ = _tlv(digest_info, after, 0x04)
    salt, at = _tlv(mac_data, at, 0x04)
    rounds = 1
    if at < len(mac_data):
        value, _ = _tlv(mac_data, at, 0x02)
        rounds = int.from_bytes(value, "big", signed=True)
    if not 1 <= rounds <= _MOST_ROUNDS:
        raise ValueError
    return content, _DIGESTS[oid], mac, salt, rounds


def _mac_key(name: str, password: bytes, salt: bytes, rounds: int) -> bytes:
    """RFC 7292 appendix B.2's derivation of the MAC key (as long as one digest: one block)."""
    block = hashlib.new(name).block_size

    def filled(value: bytes) -> bytes:  # repeated to fill a whole number of blocks
        size = -(-len(value) // block) * block
        return (value * (size // len(value) + 1))[:size] if value else b""

    digest = hashlib.new(name, bytes([_MAC_KEY]) * block + filled(salt) + filled(password)).digest()
    hash_ = getattr(hashlib, name)
    for _ in range(rounds - 1):
        digest = hash_(digest).digest()
    return digest


def password_verifies(pfx: bytes, password: Secret) -> bool | None:
    """True if the PFX's MAC verifies under ``password``, False if it does not; None when this
    module cannot say (no MAC, a structure or password form it does not read)."""
    value = password.reveal()
    if not value or not value.isascii():
        return None  # OpenSSL's handling of empty and non-ASCII passwords is not repeated here
    try:
        content, name, mac, salt, rounds = _mac_parts(pfx)
    except ValueError:  # a structure this module does not read: the caller opens the PFX
        return None
    try:
        # The password as a BMPString with its terminating zero, as PKCS#12 derives keys from it.
        key = _mac_key(name, (value + "\0").encode("utf-16-be"), salt, rounds)
        return hmac.compare_digest(hmac.new(key, content, name).digest(), mac)
    except ValueError:  # a digest this Python refuses (a FIPS build and SHA-1): OpenSSL decides
        return None
