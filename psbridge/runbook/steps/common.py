"""What every step has: an :class:`Action` (what it changed, or would change), typed state rows
(:class:`Wanted`) that render themselves as tables, the certificate later steps work with, and the
sign-in to Entra ID.

A step's before and after states are objects with attributes, never tables read back: a step
decides from ``state.missing`` or ``state.lacking``, and the notebook shows the same object.
"""

from __future__ import annotations

import atexit
import datetime as dt
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from psbridge import certs, intents, secrets
from psbridge.errors import RunbookError
from psbridge.runbook.deployment import Deployment
from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

    from psbridge.cloud import GraphClient, SignIn
    from psbridge.remote.session import Session

RENEW_BEFORE = dt.timedelta(days=30)


class StepError(RunbookError):
    """A step cannot go on; the message says why and what to do."""


def norm_thumbprint(thumbprint: str | None) -> str:
    return (thumbprint or "").replace(" ", "").upper()


@dataclass
class Action:
    """What a step did (or in a plan, would do), with what the servers answered."""

    changes: list[str]
    planned: bool = False
    shown: list[Any] = field(default_factory=list)  # tables and script results, in order

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __add__(self, other: Action) -> Action:
        return Action(self.changes + other.changes, self.planned or other.planned, self.shown + other.shown)

    def _repr_html_(self) -> str:
        if not self.changes:
            head = "<p><b>Already done:</b> nothing to change.</p>"
        else:
            verb = "Would change" if self.planned else "Changed"
            items = "".join(f"<li>{html.escape(c)}</li>" for c in self.changes)
            head = f"<p><b>{verb}:</b></p><ul>{items}</ul>"
        parts = []
        for item in self.shown:
            if hasattr(item, "_repr_html_"):
                parts.append(item._repr_html_())
            elif hasattr(item, "to_html"):
                parts.append(str(item.to_html(index=False)))
            else:
                parts.append(f"<pre>{html.escape(str(item))}</pre>")
        return head + "".join(parts)

    def __repr__(self) -> str:
        verb = "would" if self.planned else "did"
        return f"Action({verb}: {'; '.join(self.changes) or 'nothing'})"


@dataclass(frozen=True)
class Wanted:
    """One thing that should hold a value: what it is, the value wanted, the value now.

    ``entity``/``setting``/``org_id`` name a configuration-database setting, so that a step can
    set exactly the rows that are not right.
    """

    what: str
    wanted: str
    now: str
    ok: bool
    entity: str | None = None
    setting: str | None = None
    org_id: str | None = None


@dataclass
class WantedState:
    """Rows of :class:`Wanted`; all ``ok`` means the step has nothing to do."""

    rows: list[Wanted]

    COLUMNS: ClassVar[list[str]] = ["what", "wanted", "now", "ok"]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def missing(self) -> list[Wanted]:
        return [r for r in self.rows if not r.ok]

    def __iter__(self) -> Iterator[Wanted]:
        return iter(self.rows)

    def _dicts(self) -> list[dict[str, Any]]:
        return [{"what": r.what, "wanted": r.wanted, "now": r.now, "ok": r.ok} for r in self.rows]

    def frame(self) -> pd.DataFrame:
        return dataframe(self._dicts(), self.COLUMNS)

    def _repr_html_(self) -> str:
        return html_table(self._dicts(), self.COLUMNS)

    def __repr__(self) -> str:
        return "\n".join(f"{'ok ' if r.ok else 'NO '} {r.what}: {r.now!r} (wanted {r.wanted!r})"
                         for r in self.rows)

    def require(self, context: str) -> None:
        if not self.ok:
            what = "; ".join(f"{r.what} is {r.now!r}, wanted {r.wanted!r}" for r in self.missing)
            raise StepError(f"{context} {what}")


def setting_row(session: Session, what: str, wanted: str, entity: str, setting: str,
                org_id: str | None = None, *, case: bool = False) -> Wanted:
    """A configuration-database setting as a :class:`Wanted` row (compared without case unless ``case``)."""
    from psbridge.crm.settings import get_advanced_setting

    now = str(get_advanced_setting(session, entity, setting, org_id) or "")
    ok = now == wanted if case else now.lower() == wanted.lower()
    return Wanted(what, wanted, now, ok, entity, setting, org_id)


# --- the certificate later steps use ------------------------------------------------------------


@dataclass
class CertificateRef:
    """The certificate later steps use: handed on by step 10, or found again from its PFX."""

    pfx_file: str
    thumbprint: str
    subject: str
    exists: bool
    der: bytes = b""

    def _repr_html_(self) -> str:
        state = "" if self.exists else " (not made yet: the plan shows what would happen)"
        return (f"<p>Certificate <code>{html.escape(self.thumbprint or '?')}</code> "
                f"{html.escape(self.subject)}{state}<br>PFX <code>{html.escape(self.pfx_file)}</code></p>")


# Where the certificates of PFX files already opened are remembered (psbridge.certs.inspect_pfx_remembered).
CERTIFICATE_MEMOS = "certificates"


def certificate_for(dep: Deployment, customer: str, pfx_path: str, pfx_file: str, pfx_password: str,
                    thumbprint: str = "", *, required: bool = True) -> CertificateRef:
    """The certificate of step 10, from its facts or (run on its own) from the PFX it left.

    In a plan (``required=False``) it may not exist yet: the step then says what it would do.
    A step that may upload the PFX (``required``) opens it, so that a wrong password stops it before
    anything changes — unless a step of this same run opened these very bytes with the password at
    the same reference (its journal says so: :func:`psbridge.intents.pfx_opened`); the others (which
    need the public certificate only) describe it from the memo left when it was last opened with
    its password (the same bytes, the same certificate).
    """
    path = Path(pfx_file or pfx_path or dep.work_dir(customer) / "s2s.pfx").expanduser()
    if not path.exists():
        if thumbprint or required:
            raise StepError(f"no PFX at {path}: run step 10 (certificate) first")
        return CertificateRef(str(path), "", "", False)
    digest = certs.pfx_digest(path)
    open_it = required and not intents.pfx_opened_in_this_run(digest, pfx_password)
    info = certs.inspect_pfx_remembered(path, secrets.resolve(pfx_password),
                                        dep.work_dir(customer) / CERTIFICATE_MEMOS, open_it=open_it,
                                        digest=digest)
    if open_it:
        intents.pfx_opened(digest, pfx_password)
    if thumbprint and norm_thumbprint(thumbprint) != info.thumbprint:
        raise StepError(f"{path} holds certificate {info.thumbprint}, but step 10 recorded "
                        f"{norm_thumbprint(thumbprint)}: run step 10 again")
    return CertificateRef(str(path), info.thumbprint, info.subject, True, info.der)


# --- the cloud -----------------------------------------------------------------------------------


def sign_in(dep: Deployment, admin_account: str = "") -> SignIn:
    """The administrator's sign-in (device code; the cached one when it is still good)."""
    from psbridge.cloud import sign_in_device_code
    from psbridge.runbook.timing import timed

    signed: SignIn = timed("signin", sign_in_device_code)(dep.cloud, dep.tenant,
                                                          account=admin_account or None)
    intents.acted_as("entra", signed.username or signed.client_id, signed.tenant_id or dep.tenant)
    return signed


def graph_client(dep: Deployment, admin: SignIn) -> GraphClient:
    from psbridge.cloud import GraphClient
    from psbridge.runbook import throttles
    from psbridge.runbook.timing import instrument

    # A Retry-After is the tenant's, not this client's: the batch holds the tenant's other orgs too.
    client: GraphClient = instrument(GraphClient(dep.cloud, admin, on_retry_after=throttles.report),
                                     "request", "graph")
    return client


def discover_tenant_id(dep: Deployment) -> str:
    from psbridge.cloud import tenant_id_from_discovery
    from psbridge.runbook.timing import timed

    return str(timed("discovery", tenant_id_from_discovery)(dep.cloud, dep.tenant))


# --- the organization's Web API ------------------------------------------------------------------


@dataclass(frozen=True)
class WebApiTarget:
    """Where the organization's Web API is and how to sign in there: references, never values."""

    url: str
    user: str
    password: str  # a secret reference ("" for the current Windows user, or a device code)
    sign_in: str  # device-code | password (claims only)
    adfs_client_id: str
    adfs_client_secret: str  # a secret reference, or ""
    ca_bundle: str
    discovery_url: str = ""

    def _repr_html_(self) -> str:
        rows = {"Web API": f"{self.url}/api/data/v9.0", "as": self.user or "-",
                "password": self.password or "-", "AD FS client": self.adfs_client_id or "-",
                "AD FS sign-in": self.sign_in}
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td>{html.escape(v)}</td></tr>" for k, v in rows.items())
        return f"<table>{cells}</table>"


def web_api_target(dep: Deployment, crm_url: str = "", crm_user: str = "", crm_password: str = "",
                   crm_sign_in: str = "device-code", adfs_client_id: str = "", adfs_client_secret: str = "",
                   ca_bundle: str = "") -> WebApiTarget:
    """The Web API of ``dep``'s organization: as given, or (in the lab) as ``lab.json`` says.

    Checks what it is given as the runbook's schema would (a notebook run on its own has had no
    parameter file checked). The sign-in account defaults to the one the PowerShell sessions use.
    """
    from psbridge.runbook import formats
    from psbridge.runbook.deployment import DeploymentError, running_lab

    problems = (formats.problems("crm_url", crm_url, "crm-url")
                + formats.problems("crm_user", crm_user, "crm-user")
                + formats.problems("adfs_client_id", adfs_client_id, "guid"))
    for name, ref in (("crm_password", crm_password), ("adfs_client_secret", adfs_client_secret)):
        if ref and not secrets.is_reference(ref):
            problems.append(f"{name}: write where the secret lives (env:NAME, file:PATH, "
                            "keyring:SERVICE/NAME or lab:NAME), never the value")
    if crm_sign_in not in ("device-code", "password"):
        problems.append("crm_sign_in: device-code or password")
    if problems:
        raise DeploymentError(problems)
    profile = dep.profiles[dep.deployment_server]
    user = crm_user or profile.user or ""
    password = crm_password or profile.password or ""
    discovery = ""
    if dep.lab_state is not None:
        from psbridge.lab.config import LabConfigError

        config = running_lab(str(dep.lab_state))
        try:
            url = crm_url or config.web_url(dep.organization)
        except LabConfigError as e:
            raise DeploymentError(str(e)) from None
        web = config.webapi or {}
        discovery = str(web.get("discovery_url") or "")
        adfs = web.get("adfs") or {}
        if adfs and crm_sign_in == "password":
            adfs_client_id = adfs_client_id or str(adfs.get("confidential_client_id") or "")
            adfs_client_secret = adfs_client_secret or str(adfs.get("client_secret_ref") or "")
        elif adfs:
            adfs_client_id = adfs_client_id or str(adfs.get("client_id") or "")
        if adfs and "\\" in user:
            # AD FS names its users by UPN: the lab's LAB\\user is user@lab.local.
            domain, _, name = user.partition("\\")
            user = f"{name}@{domain.lower()}.local"
        ca_bundle = ca_bundle or config.ca_bundle
    else:
        url = crm_url
        if not url:
            raise DeploymentError("crm_url: name the organization's URL, e.g. "
                                  "https://crm.contoso.local/contoso (Active Directory) or "
                                  "https://contoso.contoso.com (IFD)")
    return WebApiTarget(url.rstrip("/"), user, password, crm_sign_in, adfs_client_id, adfs_client_secret,
                        ca_bundle, discovery)


def probe_web_api(target: WebApiTarget) -> Any:
    """What the organization's 401 asks for (a :class:`psbridge.crm.webapi.SignInOffer`)."""
    from psbridge.crm.webapi import probe
    from psbridge.runbook.timing import timed

    return timed("webapi", probe)(target.url, ca_bundle=target.ca_bundle or None)


def web_api(dep: Deployment, target: WebApiTarget) -> Any:
    """One signed-in :class:`psbridge.crm.webapi.WebApi` for the step, closed with the deployment."""
    from psbridge.crm.webapi import WebApi
    from psbridge.runbook.timing import instrument, timed

    password = secrets.resolve(target.password) if target.password else None
    client_secret = secrets.resolve(target.adfs_client_secret) if target.adfs_client_secret else None
    api = timed("webapi_signin", WebApi.connect)(
        target.url, user=target.user, password=password, adfs_client_id=target.adfs_client_id,
        adfs_client_secret=client_secret, adfs_sign_in=target.sign_in, ca_bundle=target.ca_bundle or None,
        organization=dep.organization)
    instrument(api, "request", "webapi")
    intents.acted_as("crm", target.user or "the current Windows user", target.url)
    # A notebook that stops at a failing cell never reaches its closing cell.
    atexit.register(api.close)
    return api


def sweep_leftovers(dep: Deployment, *, plan: bool = False) -> Action:
    """psbridge's own leftovers (uploaded PFX files) on every server, removed (in a plan: listed)."""
    from psbridge.crm import sweep_leftovers as sweep

    said: list[str] = []
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        said += sweep(dep.session(name), plan=plan)
    return Action(said, plan)
