"""Step 1 — the S2S certificate: a customer's CA-issued PFX validated, or a self-signed one made once.

A generated certificate is kept in the organization's work folder with its password at the
``pfx_password`` reference and reused by every later run. One that no longer opens, or expires
within 30 days, stops the step: a new certificate is a rotation (a second one on the servers and
in Entra ID), which is a deliberate act — ``replace_certificate`` says why, and the record keeps it.
"""

from __future__ import annotations

import datetime as dt
import html
import shutil
from dataclasses import dataclass
from pathlib import Path

from psbridge import certs, intents, secrets
from psbridge.runbook.deployment import Deployment
from psbridge.runbook.steps.common import CERTIFICATE_MEMOS, RENEW_BEFORE, StepError

KEEP_CERTIFICATE = (
    "psbridge does not replace a certificate on its own: the servers and Entra ID trust the kept one, "
    "and a new one is a rotation (the s2s-renew-certificate runbook). Fix what is wrong (the password "
    "reference, the file), or, to make a new certificate anyway, set replace_certificate: \"<why>\" in "
    "the parameter file; the record keeps the reason.")


@dataclass
class CertificateChoice:
    """The certificate step 1 settled on (``info`` None in a plan that would make one)."""

    info: certs.CertificateInfo | None
    path: Path
    changes: list[str]

    def _repr_html_(self) -> str:
        shown = self.info._repr_html_() if self.info else "<p>(no certificate yet)</p>"
        return f"<p>PFX: <code>{html.escape(str(self.path))}</code></p>" + shown


def ensure_certificate(dep: Deployment, customer: str, pfx_path: str, pfx_password: str, days: int,
                       *, replace_certificate: str = "", plan: bool = False) -> CertificateChoice:
    """The S2S certificate: a provided PFX validated, or a self-signed one made once and reused."""
    if pfx_path:
        path = Path(pfx_path).expanduser()
        info = certs.validate_pfx(path, secrets.resolve(pfx_password))
        return CertificateChoice(info, path, [])
    path = dep.work_dir(customer) / "s2s.pfx"
    reason = "no certificate made yet"
    if path.exists():
        try:
            # Opened (its password checked), and remembered for the steps after this one.
            digest = certs.pfx_digest(path)
            info = certs.inspect_pfx_remembered(path, secrets.resolve(pfx_password),
                                                dep.work_dir(customer) / CERTIFICATE_MEMOS, open_it=True,
                                                digest=digest)
            intents.pfx_opened(digest, pfx_password)
        except secrets.SecretError as e:
            problem = f"the password of the kept PFX {path} cannot be read: {e}"
        except certs.CertificateError:
            problem = f"the kept PFX {path} does not open with the password at {pfx_password}"
        else:
            problems = info.problems(now=dt.datetime.now(dt.UTC) + RENEW_BEFORE)
            if not problems:
                return CertificateChoice(info, path, [])
            problem = f"the kept certificate {info.thumbprint} {problems[0]}"
        if not replace_certificate.strip():
            raise StepError(f"{problem}. {KEEP_CERTIFICATE}")
        reason = f"replacing it as asked ({replace_certificate.strip()}): {problem}"
    if plan:
        return CertificateChoice(None, path, [
            f"generate a self-signed RSA 2048 certificate valid {days} days ({reason})"])
    done = f"generated a self-signed RSA 2048 certificate valid {days} days"
    if path.exists():
        # Copied, not moved: killed before the new one is written, the old one is still in place.
        kept = path.with_name(f"s2s-replaced-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.pfx")
        shutil.copy2(path, kept)
        done += f" ({reason}); the old PFX is kept at {kept}"
    try:
        password = secrets.resolve(pfx_password)
        stored = []
    except secrets.SecretError:
        password = certs.new_pfx_password()
        # Stored before it is used: a PFX sealed with a password nobody kept would be lost.
        secrets.store(pfx_password, password)
        stored = [f"stored a new PFX password at {pfx_password}"]
    made = certs.generate_self_signed(dep.organization, password, days=days)
    made.write(path)
    # Sealed with the password just now: the run's later steps need not open it to know.
    digest = certs.pfx_digest(path)
    certs.remember_pfx(made.info, dep.work_dir(customer) / CERTIFICATE_MEMOS, digest)
    intents.pfx_opened(digest, pfx_password)
    return CertificateChoice(made.info, path, [done, *stored])
