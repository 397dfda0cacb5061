"""What time and people do to a working integration, on demand: the lab's drift knobs.

A health check is only worth what it catches, so the lab can age what a setup left:

- :func:`certificate_expires_in`: the S2S certificate replaced everywhere it is (every server's
  store, the configuration database, the Dynamics CRM service principal's key credential) by one
  with the same subject that ends in N days — what a real deployment looks like N days before its
  certificate's end;
- :func:`remove_key_credentials`: the Dynamics CRM service principal's key credentials gone (an
  administrator cleaning up, another tool's rotation); :func:`restore_key_credentials` puts them back;
- :func:`fail_mailbox`: a mailbox whose last test failed, with the server's alert;
- :func:`revoke_key_read`: the service account's read on the S2S certificate's private key taken
  away on one server or all (a key re-imported by hand, an ACL "tidied"); Test & Enable then fails
  with "Keyset does not exist"; :func:`grant_key_read` gives it back.

Plain functions over the world (on disk, under its lock) and the twin's directory (the running
twin's object, so that it serves the change at once).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from psbridge.errors import NotInLab
from psbridge.lab.commands.certstore import store_entry, thumbprint
from psbridge.lab.entra.directory import Directory, graph_time
from psbridge.lab.webapi.records import iso
from psbridge.lab.world import World

CRM_APP_ID = "00000007-0000-0000-c000-000000000000"
ISSUER = "S2STokenIssuer"


def _crm_sp(data: dict[str, Any]) -> dict[str, Any]:
    sp = next((s for s in data["servicePrincipals"] if s["appId"] == CRM_APP_ID), None)
    if sp is None:
        raise NotInLab("the twin's tenant has no Dynamics CRM service principal")
    found: dict[str, Any] = sp
    return found


def _reissued(old: x509.Certificate, days: int) -> x509.Certificate:
    """A self-signed certificate with ``old``'s subject, valid from yesterday to noon UTC ``days`` days on.

    Noon, not now + ``days``: a health check counts whole calendar days in UTC, so an end at a time of
    day would count one day more or less depending on when the lab is asked.
    """
    now = dt.datetime.now(dt.UTC)
    noon = dt.datetime.combine(now.date() + dt.timedelta(days=days), dt.time(12), tzinfo=dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(noon))
    return builder.sign(key, hashes.SHA256())


def _issuer(data: dict[str, Any]) -> dict[str, Any]:
    """The configuration database's S2STokenIssuer certificate (the world's own dict, to change)."""
    issuer = next((c for c in data["deployment"]["certificates"] if c["certificate_type"] == ISSUER), None)
    if issuer is None:
        raise NotInLab(f"the lab's configuration database holds no {ISSUER} certificate: set up S2S first")
    return cast(dict[str, Any], issuer)


def certificate_expires_in(state_dir: Path, directory: Directory, days: int) -> str:
    """Make the deployment's S2S certificate one that ends ``days`` calendar days from today (UTC); its
    new thumbprint."""
    world = World.load(state_dir)
    with world.change() as data:
        issuer = _issuer(data)
        old_thumb = str(issuer["thumbprint"]).upper()
        cert = _reissued(x509.load_der_x509_certificate(base64.b64decode(issuer["data"])), days)
        der = cert.public_bytes(Encoding.DER)
        new_thumb = thumbprint(der)
        for server in data["servers"]:
            for i, entry in enumerate(server["store"]):
                if str(entry["thumbprint"]).upper() == old_thumb:
                    fresh = store_entry(cert, entry["has_private_key"], entry.get("key_spec", 1))
                    fresh["key_readers"] = list(entry.get("key_readers", []))
                    fresh["friendly_name"] = entry.get("friendly_name", "")
                    server["store"][i] = fresh
        issuer.update({"data": base64.b64encode(der).decode("ascii"), "thumbprint": new_thumb,
                       "expiration_date": cert.not_valid_after_utc.isoformat()})
    with directory.change() as tenant:
        for cred in _crm_sp(tenant).get("keyCredentials", []):
            if str(cred.get("customKeyIdentifier") or "").upper() == old_thumb:
                cred.update({"key": base64.b64encode(der).decode("ascii"), "customKeyIdentifier": new_thumb,
                             "startDateTime": graph_time(cert.not_valid_before_utc),
                             "endDateTime": graph_time(cert.not_valid_after_utc)})
    return new_thumb


def remove_key_credentials(directory: Directory) -> list[dict[str, Any]]:
    """Take every key credential off the Dynamics CRM service principal; what was there."""
    with directory.change() as tenant:
        sp = _crm_sp(tenant)
        removed: list[dict[str, Any]] = list(sp.get("keyCredentials", []))
        sp["keyCredentials"] = []
    return removed


def restore_key_credentials(directory: Directory, credentials: list[dict[str, Any]]) -> None:
    with directory.change() as tenant:
        _crm_sp(tenant)["keyCredentials"] = list(credentials)


def fail_mailbox(state_dir: Path, organization: str, mailbox: str, alert: str) -> None:
    """The named mailbox's last test failed (incoming, outgoing, the mailbox), with ``alert`` as its trace."""
    now = dt.datetime.now(dt.UTC).timestamp()
    with World.load(state_dir).change() as data:
        org = next((o for o in data["organizations"] if o["name"].lower() == organization.lower()), None)
        if org is None or "crm" not in org:
            raise NotInLab(f"the lab has no organization {organization!r} with a Web API")
        records = org["crm"]["records"]
        box = next((m for m in records.get("mailboxes", []) if m.get("name") == mailbox), None)
        if box is None:
            raise NotInLab(f"{organization} has no mailbox {mailbox!r}")
        box.update({"incomingemailstatus": 2, "outgoingemailstatus": 2, "mailboxstatus": 2,
                    "testemailconfigurationscheduled": False, "testmailboxaccesscompletedon": iso(now)})
        records.setdefault("tracelogs", []).append({
            "tracelogid": str(uuid.uuid4()), "text": alert[:2000], "level": 3, "tracecode": 1,
            "machinename": "CRM01", "regardingobjectid": {"id": box["mailboxid"], "type": "mailbox"},
            "createdon": iso(now),
        })


def revoke_key_read(state_dir: Path, account: str, server: str | None = None) -> list[str]:
    """Take ``account`` off the readers of the S2S certificate's key on ``server`` (None: every one).

    Returns the servers where it could read before.
    """
    with World.load(state_dir).change() as data:
        issuer = _issuer(data)
        thumb = str(issuer["thumbprint"]).upper()
        chosen = [s for s in data["servers"] if server is None or s["name"].lower() == server.lower()]
        if not chosen:
            raise NotInLab(f"the lab has no server {server!r}")
        revoked = []
        for s in chosen:
            for entry in s["store"]:
                readers = entry.get("key_readers", [])
                mine = [r for r in readers if r.lower() == account.lower()]
                if str(entry["thumbprint"]).upper() == thumb and mine:
                    entry["key_readers"] = [r for r in readers if r.lower() != account.lower()]
                    revoked.append(str(s["name"]))
    return revoked


def grant_key_read(state_dir: Path, account: str, servers: list[str]) -> None:
    """Give ``account`` read on the S2S certificate's key again on ``servers`` (undoes a revoke)."""
    with World.load(state_dir).change() as data:
        thumb = next(str(c["thumbprint"]).upper() for c in data["deployment"]["certificates"]
                     if c["certificate_type"] == ISSUER)
        for s in data["servers"]:
            if s["name"].lower() not in (n.lower() for n in servers):
                continue
            for entry in s["store"]:
                if str(entry["thumbprint"]).upper() == thumb:
                    entry.setdefault("key_readers", []).append(account)
