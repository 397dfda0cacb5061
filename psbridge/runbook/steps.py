"""What each step notebook does, as functions the notebook calls and shows.

Every step has the same shape: read the *before* state, act (or in a plan, say what it would
do), read the *after* state. Acting is idempotent: what is already as wanted is left alone
and the step says so. A notebook stays a few lines::

    before = certificate_state(dep, thumbprint)      # a DataFrame, shown
    changes = install_certificate(dep, pfx_file, pfx_password, thumbprint, plan=plan)
    after = certificate_state(dep, thumbprint)
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from psbridge import certs, secrets
from psbridge.crm.organizations import get_organization
from psbridge.crm.scripts import (
    CONFIGURE_SERVER_SIDE_SYNC,
    SERVER_SIDE_SYNC_PARAMETERS,
    require_parameters,
)
from psbridge.crm.settings import S2S_TENANT_ID, get_advanced_setting
from psbridge.crm.snapin import use_crm_snapin
from psbridge.runbook.deployment import Deployment

S2S_PRINCIPAL_ID = "00000001-0000-0000-c000-000000000000"
S2S_METADATA_URL = "https://accounts.accesscontrol.windows.net/metadata/json/1"
RENEW_BEFORE = dt.timedelta(days=30)


class StepError(Exception):
    """A step cannot go on; the message says why and what to do."""


@dataclass
class Action:
    """What a step did (or in a plan, would do), with what the servers answered."""

    changes: list[str]
    planned: bool = False
    shown: list[Any] = field(default_factory=list)  # tables and script results, in order

    def __bool__(self) -> bool:
        return bool(self.changes)

    def _repr_html_(self) -> str:
        from html import escape

        if not self.changes:
            head = "<p><b>Already done:</b> nothing to change.</p>"
        else:
            verb = "Would change" if self.planned else "Changed"
            items = "".join(f"<li>{escape(c)}</li>" for c in self.changes)
            head = f"<p><b>{verb}:</b></p><ul>{items}</ul>"
        parts = []
        for item in self.shown:
            if hasattr(item, "_repr_html_"):
                parts.append(item._repr_html_())
            elif hasattr(item, "to_html"):
                parts.append(item.to_html(index=False))
            else:
                parts.append(f"<pre>{escape(str(item))}</pre>")
        return head + "".join(parts)

    def __repr__(self) -> str:
        verb = "would" if self.planned else "did"
        return f"Action({verb}: {'; '.join(self.changes) or 'nothing'})"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if hasattr(obj, "get_ci"):
        return obj.get_ci(name, default)
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _norm(thumbprint: str | None) -> str:
    return (thumbprint or "").replace(" ", "").upper()


# --- 00 preflight ---------------------------------------------------------------------------


def preflight(dep: Deployment) -> pd.DataFrame:
    """Every prerequisite, checked read-only, as one table (server, check, ok, detail).

    Every check runs, so the table shows every problem at once; :func:`require_all` then stops.
    """
    from psbridge.crm import check_prerequisites

    rows: list[dict[str, Any]] = []

    def add(server: str, check: str, ok: bool | None, detail: str) -> None:
        rows.append({"server": server, "check": check, "ok": ok, "detail": secrets.redact(detail)})

    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        # The snap-in is registered as the pool's initializer before it opens, so that the
        # checks below and the CRM operations of later cells share one loaded snap-in.
        session = use_crm_snapin(dep.session(name))
        try:
            session.open()
        except Exception as e:  # one unreachable server is a row, not the end of the report
            add(name, "PowerShell session", False, str(e))
            continue
        add(name, "PowerShell session", True, f"{session.profile.user} at {session.profile.endpoint}")
        for c in check_prerequisites(session, dep.tools_folder).checks:
            add(name, c.name, c.ok, c.detail)
    session = dep.session(dep.deployment_server)
    org_id = None
    try:
        org = get_organization(session, dep.organization)
        org_id = str(org.id)
        add(dep.deployment_server, "organization", True, f"{org.unique_name} ({org.id}), {org.state}")
        require_parameters(session, dep.script(CONFIGURE_SERVER_SIDE_SYNC), SERVER_SIDE_SYNC_PARAMETERS)
        add(dep.deployment_server, f"{CONFIGURE_SERVER_SIDE_SYNC} parameters", True,
            "takes -ClientID and -ClientSecret (Microsoft Graph era)")
    except Exception as e:
        add(dep.deployment_server, "organization and script", False, str(e))
    try:
        tid = discover_tenant_id(dep)
        add("cloud", "Entra ID tenant", True, f"{dep.tenant} is tenant {tid} ({dep.cloud.authority_host})")
    except Exception as e:
        add("cloud", "Entra ID tenant", False, str(e))
    frame = pd.DataFrame(rows, columns=["server", "check", "ok", "detail"])
    frame.attrs["organization_id"] = org_id
    return frame


def sweep_leftovers(dep: Deployment, *, plan: bool = False) -> Action:
    """psbridge's own leftovers (uploaded PFX files) on every server, removed (in a plan: listed)."""
    from psbridge.crm import sweep_leftovers as sweep

    said: list[str] = []
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        said += sweep(dep.session(name), plan=plan)
    return Action(said, plan)


def require_all(checks: pd.DataFrame) -> None:
    failed = checks[checks["ok"].map(lambda v: v is False)]
    if len(failed):
        lines = [f"{r.check} on {r.server}: {r.detail}" for r in failed.itertuples()]
        raise StepError(f"{len(failed)} prerequisite(s) not met:\n  - " + "\n  - ".join(lines))


# --- 10 certificate -------------------------------------------------------------------------


@dataclass
class CertificateChoice:
    info: certs.CertificateInfo | None
    path: Path
    changes: list[str]

    def _repr_html_(self) -> str:
        shown = self.info._repr_html_() if self.info else "<p>(no certificate yet)</p>"
        return f"<p>PFX: <code>{self.path}</code></p>" + shown


KEEP_CERTIFICATE = (
    "psbridge does not replace a certificate on its own: the servers and Entra ID trust the kept one, "
    "and a new one is a rotation (the s2s-renew-certificate runbook). Fix what is wrong (the password "
    "reference, the file), or, to make a new certificate anyway, set replace_certificate: \"<why>\" in "
    "the parameter file; the record keeps the reason.")


def ensure_certificate(dep: Deployment, customer: str, pfx_path: str, pfx_password: str, days: int,
                       *, replace_certificate: str = "", plan: bool = False) -> CertificateChoice:
    """The S2S certificate: a provided PFX validated, or a self-signed one made once and reused.

    A generated certificate is kept in the org's work folder with its password at
    ``pfx_password``. One that no longer opens, or expires within 30 days, stops the step
    (a second certificate on the servers is never made silently) unless ``replace_certificate``
    says why it is to be replaced; the old PFX is then kept beside the new one.
    """
    if pfx_path:
        path = Path(pfx_path).expanduser()
        info = certs.validate_pfx(path, secrets.resolve(pfx_password))
        return CertificateChoice(info, path, [])
    path = dep.work_dir(customer) / "s2s.pfx"
    reason = "no certificate made yet"
    if path.exists():
        try:
            info = certs.inspect_pfx(path, secrets.resolve(pfx_password))
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
    action = f"generate a self-signed RSA 2048 certificate valid {days} days ({reason})"
    if plan:
        return CertificateChoice(None, path, [action])
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
    return CertificateChoice(made.info, path, [done, *stored])


# --- 20 install the certificate -------------------------------------------------------------


def certificate_state(dep: Deployment, thumbprint: str, subject: str = "") -> pd.DataFrame:
    """Where the certificate is: each server's LocalMachine\\My, and the configuration database."""
    from psbridge.crm import crm_certificates, store_certificates

    want = _norm(thumbprint)
    rows = []
    for server in dep.servers:
        session = dep.session(server)
        mine = [c for c in store_certificates(session, thumbprint=want)] if want else []
        same = store_certificates(session, subject=subject) if subject else []
        others = [c for c in same if c.thumbprint != want]
        detail = (f"until {mine[0].not_after}, private key {'yes' if mine[0].has_private_key else 'NO'}"
                  if mine else "not installed")
        if others:
            detail += f"; {len(others)} other certificate(s) with this subject"
        rows.append({"where": f"{server} LocalMachine\\My", "present": bool(mine and mine[0].has_private_key),
                     "detail": detail})
    crm = crm_certificates(use_crm_snapin(dep.session(dep.deployment_server)), "S2STokenIssuer")
    rows.append({"where": "CRM configuration database (S2STokenIssuer)",
                 "present": bool(want) and any(c.thumbprint == want for c in crm),
                 "detail": ", ".join(c.thumbprint for c in crm) or "none"})
    return pd.DataFrame(rows, columns=["where", "present", "detail"])


def install_certificate(dep: Deployment, pfx_file: str, pfx_password: str, thumbprint: str,
                        subject: str = "", *, plan: bool = False) -> Action:
    """CertificateReconfiguration.ps1 on each async server lacking the certificate, ``-updateCrm`` once.

    In a plan, the state is read and the would-be actions listed; nothing is uploaded or run.
    """
    from psbridge.crm import certificate_reconfiguration

    state = certificate_state(dep, thumbprint, subject)
    lacking = [str(r.where).split(" ")[0] for r in state.itertuples()
               if not r.present and "LocalMachine" in str(r.where)]
    in_crm = bool(state["present"].iloc[-1])
    if not lacking and in_crm:
        return Action([], plan)
    if plan:
        todo = [f"install the certificate on {s}" for s in lacking]
        if not in_crm:
            todo.append(f"record it in the CRM configuration database (-updateCrm on "
                        f"{dep.deployment_server})")
        return Action(todo, True)
    swept = sweep_leftovers(dep).changes
    # The Deployment Tools server first: -updateCrm runs there, once.
    order = [s for s in dep.servers if s != dep.deployment_server]
    if dep.deployment_server in dep.servers or not in_crm:
        order.insert(0, dep.deployment_server)
    report = certificate_reconfiguration(
        [dep.session(s) for s in order], Path(pfx_file), pfx_password, dep.service_account,
        tools_folder=dep.tools_folder,
    )
    shown: list[Any] = [report.to_frame()] + [o.result for o in report.servers if o.result is not None]
    return Action(swept + [f"{o.server}: {o.detail}" for o in report.servers if o.changed], False, shown)


# --- 30 Entra ID ----------------------------------------------------------------------------


def sign_in(dep: Deployment, admin_account: str = "") -> Any:
    from psbridge.cloud import sign_in_device_code
    from psbridge.runbook.timing import timed

    return timed("signin", sign_in_device_code)(dep.cloud, dep.tenant, account=admin_account or None)


def graph_client(dep: Deployment, admin: Any) -> Any:
    from psbridge.cloud import GraphClient
    from psbridge.runbook.timing import instrument

    return instrument(GraphClient(dep.cloud, admin), "request", "graph")


def app_state(graph: Any, app_name: str) -> pd.DataFrame:
    from psbridge.cloud import find_app

    app = find_app(graph, app_name)
    if app is None:
        return pd.DataFrame([{"app registration": app_name, "exists": False, "appId": None,
                              "client secrets": 0}])
    creds = graph.get(f"/applications/{app['id']}", {"$select": "id,passwordCredentials"})
    return pd.DataFrame([{"app registration": app_name, "exists": True, "appId": app["appId"],
                          "client secrets": len(creds.get("passwordCredentials", []))}])


# --- 40 ConfigureCrmServerSideSync ----------------------------------------------------------


@dataclass(frozen=True)
class Wanted:
    """One thing that should hold a value: what it is, the value wanted, the value now.

    ``entity``/``setting``/``org_id`` name a configuration-database setting, so that a step
    can set exactly the rows that are not right without reading them back out of a table.
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

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def missing(self) -> list[Wanted]:
        return [r for r in self.rows if not r.ok]

    def frame(self) -> pd.DataFrame:
        rows = [{"what": r.what, "wanted": r.wanted, "now": r.now, "ok": r.ok} for r in self.rows]
        return pd.DataFrame(rows, columns=["what", "wanted", "now", "ok"])

    def _repr_html_(self) -> str:
        return str(self.frame().to_html(index=False))

    def __repr__(self) -> str:
        return self.frame().to_string(index=False)


@dataclass
class S2SState(WantedState):
    """Step 4's state: the service principal's trust in the certificate, and the three settings."""

    @property
    def trusts_certificate(self) -> bool:
        return self.rows[0].ok


def _setting(session: Any, what: str, wanted: str, entity: str, setting: str, org_id: str | None = None,
             *, case: bool = False) -> Wanted:
    now = str(get_advanced_setting(session, entity, setting, org_id) or "")
    ok = now == wanted if case else now.lower() == wanted.lower()
    return Wanted(what, wanted, now, ok, entity, setting, org_id)


def s2s_state(dep: Deployment, graph: Any, thumbprint: str, tenant_id: str) -> S2SState:
    from psbridge.cloud import read_crm_service_principal

    session = dep.session(dep.deployment_server)
    crm = read_crm_service_principal(graph)
    org = get_organization(session, dep.organization)
    trust = Wanted("Dynamics CRM service principal trusts the certificate", _norm(thumbprint),
                   ", ".join(k.thumbprint or "?" for k in crm.key_credentials) or "no key credentials",
                   crm.has_certificate(thumbprint))
    return S2SState([
        trust,
        _setting(session, "ServerSettings S2SDefaultAuthorizationServerPrincipalId", S2S_PRINCIPAL_ID,
                 "ServerSettings", "S2SDefaultAuthorizationServerPrincipalId"),
        _setting(session, "ServerSettings S2SDefaultAuthorizationServerMetadataUrl", S2S_METADATA_URL,
                 "ServerSettings", "S2SDefaultAuthorizationServerMetadataUrl", case=True),
        _setting(session, f"{org.unique_name} {S2S_TENANT_ID}", tenant_id, "Organization", S2S_TENANT_ID,
                 str(org.id)),
    ])


SETUP_ACCESS_LEFT = (
    "The setup client secret and admin consent of the app are still in place; the next run of this step "
    "removes them once S2S is configured (teardown), or remove them in the Entra admin center.")


def configure_s2s(dep: Deployment, state: S2SState, pfx_file: str, pfx_password: str, app_id: str,
                  tenant_id: str, client_secret_ref: str, *, plan: bool = False) -> Action:
    """ConfigureCrmServerSideSync.ps1 on the deployment server, unless everything is already set.

    When the Dynamics CRM service principal already trusts the certificate (a run stopped after
    the script's Graph part, say), the script is not run again: it would write the key credential
    once more. The settings still missing are set directly with Set-CrmAdvancedSetting, to the
    values the script sets.
    """
    from psbridge.crm.settings import set_advanced_setting

    if state.ok:
        return Action([], plan)
    missing = state.missing
    session = dep.session(dep.deployment_server)
    if state.trusts_certificate:
        what = (f"set on {dep.deployment_server} (the service principal already trusts the certificate, so "
                "ConfigureCrmServerSideSync.ps1 is not run again): " + "; ".join(r.what for r in missing))
        if plan:
            return Action([what], True)
        for r in missing:
            assert r.entity is not None and r.setting is not None
            set_advanced_setting(session, r.entity, r.setting, r.wanted, r.org_id)
        return Action([what], False)
    what = f"run ConfigureCrmServerSideSync.ps1 on {dep.deployment_server} to set: " + "; ".join(
        r.what for r in missing)
    if plan:
        return Action([what], True)
    from psbridge.crm import configure_server_side_sync
    from psbridge.remote.errors import BridgeError

    swept = sweep_leftovers(dep).changes
    try:
        done = configure_server_side_sync(session, Path(pfx_file), pfx_password, dep.organization, tenant_id,
                                          app_id, client_secret_ref, tools_folder=dep.tools_folder)
    except BridgeError as e:
        raise StepError(f"{e}. {SETUP_ACCESS_LEFT}") from None
    return Action([*swept, what.replace("run ", "ran ", 1)], False, [done.result])


# --- 50 tenant id ---------------------------------------------------------------------------


def tenant_id_state(dep: Deployment, tenant_id: str) -> WantedState:
    session = dep.session(dep.deployment_server)
    org = get_organization(session, dep.organization)
    return WantedState([_setting(session, f"{org.unique_name} ({org.id}) {S2S_TENANT_ID}", tenant_id,
                                 "Organization", S2S_TENANT_ID, str(org.id))])


def set_tenant_id(dep: Deployment, tenant_id: str, *, plan: bool = False) -> Action:
    from psbridge.crm.settings import set_tenant_id as crm_set_tenant_id

    if tenant_id_state(dep, tenant_id).ok:
        return Action([], plan)
    what = f"set {dep.organization} {S2S_TENANT_ID} to {tenant_id}"
    if plan:
        return Action([what], True)
    crm_set_tenant_id(dep.session(dep.deployment_server), dep.organization, tenant_id)
    return Action([what])


# --- shared between steps -------------------------------------------------------------------


@dataclass
class CertificateRef:
    """The certificate later steps use: handed on by step 10, or found again from its PFX."""

    pfx_file: str
    thumbprint: str
    subject: str
    exists: bool

    def _repr_html_(self) -> str:
        state = "" if self.exists else " (not made yet: the plan shows what would happen)"
        return (f"<p>Certificate <code>{self.thumbprint or '?'}</code> {self.subject}{state}<br>"
                f"PFX <code>{self.pfx_file}</code></p>")


def certificate_for(dep: Deployment, customer: str, pfx_path: str, pfx_file: str, pfx_password: str,
                    thumbprint: str = "", *, required: bool = True) -> CertificateRef:
    """The certificate of step 10, from its facts or (run on its own) from the PFX it left.

    In a plan (``required=False``) it may not exist yet: the step then says what it would do.
    """
    path = Path(pfx_file or pfx_path or dep.work_dir(customer) / "s2s.pfx").expanduser()
    if not path.exists():
        if thumbprint or required:
            raise StepError(f"no PFX at {path}: run step 10 (certificate) first")
        return CertificateRef(str(path), "", "", False)
    info = certs.inspect_pfx(path, secrets.resolve(pfx_password))
    if thumbprint and _norm(thumbprint) != info.thumbprint:
        raise StepError(f"{path} holds certificate {info.thumbprint}, but step 10 recorded "
                        f"{_norm(thumbprint)}: run step 10 again")
    return CertificateRef(str(path), info.thumbprint, info.subject, True)


def require_present(state: pd.DataFrame) -> None:
    missing = [str(w) for w in state.loc[~state["present"].astype(bool), "where"]]
    if missing:
        raise StepError("the certificate is still missing from: " + ", ".join(missing))


def require_ok(state: WantedState, context: str) -> None:
    if not state.ok:
        what = "; ".join(f"{r.what} is {r.now!r}, wanted {r.wanted!r}" for r in state.missing)
        raise StepError(f"{context} {what}")


def discover_tenant_id(dep: Deployment) -> str:
    from psbridge.cloud import tenant_id_from_discovery

    return tenant_id_from_discovery(dep.cloud, dep.tenant)


@dataclass
class EntraApp:
    app: Any
    secret: Any
    access: Any
    consent: Any
    tenant_id: str
    changes: list[str]
    note: str = ""

    def _repr_html_(self) -> str:
        from html import escape

        parts = [x._repr_html_() for x in (self.app, self.secret, self.access, self.consent) if x is not None]
        done = "<br>".join(escape(c) for c in self.changes) or "already done: nothing changed"
        note = f"<p>{escape(self.note)}</p>" if self.note else ""
        return f"<p><b>{'Changes' if self.changes else 'Result'}:</b> {done}</p>" + note + "".join(parts)


SETUP_NOT_NEEDED = ("S2S is already configured with this certificate (step 4's state below is all ok): the "
                    "setup client secret and admin consent are not needed, so none are added.")


def s2s_configured_already(dep: Deployment, graph: Any, cert: CertificateRef) -> S2SState | None:
    """Step 4's state for this certificate, if there is one yet: all ok means step 3 has nothing to do.

    Without it a re-run would add back the secret and consent that step 4's teardown removed.
    """
    if not cert.thumbprint:
        return None
    from psbridge.cloud import tenant_id_from_graph

    return s2s_state(dep, graph, cert.thumbprint, tenant_id_from_graph(graph))


def ensure_entra_app(graph: Any, app_name: str, redirect_uri: str, client_secret: str, days: int,
                     *, plan: bool = False, configured: S2SState | None = None) -> EntraApp:
    """Step 3 with psbridge.cloud: app + service principal, client secret, required access, consent.

    ``configured``: step 4's state (:func:`s2s_configured_already`); when all of it is ok the app
    is left as it is.
    """
    from psbridge.cloud import (
        ensure_app,
        ensure_client_secret,
        ensure_required_access,
        find_app,
        get_app,
        grant_admin_consent,
        tenant_id_from_graph,
    )

    tenant_id = tenant_id_from_graph(graph)
    if configured is not None and configured.ok:
        return EntraApp(get_app(graph, app_name), None, None, None, tenant_id, [], SETUP_NOT_NEEDED)
    if plan:
        found = find_app(graph, app_name)
        changes = [] if found else [f"create app registration {app_name!r} with its service principal, a "
                                    f"client secret stored at {client_secret}, Graph permissions and consent"]
        return EntraApp(None, None, None, None, tenant_id, changes)
    app = ensure_app(graph, app_name, redirect_uri)
    secret = ensure_client_secret(graph, app, client_secret, days)
    access = ensure_required_access(graph, app)
    consent = grant_admin_consent(graph, app)
    changes = list(app.changes)
    if secret.created:
        changes.append(f"added client secret {secret.key_id} (value stored at {secret.secret_ref})")
    if access.changed:
        changes.append("set required access: " + ", ".join(p.name for p in access.permissions))
    if consent.created:
        changes.append("granted admin consent: " + ", ".join(consent.created))
    return EntraApp(app, secret, access, consent, tenant_id, changes)


def entra_facts(dep: Deployment, graph: Any, app_name: str, app_id: str, tenant_id: str,
                client_secret_ref: str) -> tuple[str, str, str]:
    """app id, tenant id and secret reference: handed on by step 30, or looked up (run on its own)."""
    from psbridge.cloud import find_app, tenant_id_from_graph

    if not app_id:
        found = find_app(graph, app_name)
        app_id = found["appId"] if found else ""
    return app_id, tenant_id or tenant_id_from_graph(graph), client_secret_ref


KEPT = ("teardown is off: the setup client secret and admin consent stay in the tenant. Remove them when "
        "they are no longer needed (run this step with teardown on, or in the Entra admin center).")


def remove_setup_access(graph: Any, app_name: str, client_secret_ref: str, *, teardown: bool,
                        configured: bool, plan: bool = False) -> Action:
    """After step 4: take back the client secret (and its stored value) and the admin consent.

    ConfigureCrmServerSideSync needs them once, to trust the certificate; left in place, a secret
    of an app with Application.ReadWrite.All is a standing risk. The app registration stays.
    """
    from psbridge.cloud import get_app, setup_access
    from psbridge.cloud import teardown as take_back

    if not teardown:
        return Action([], plan, [KEPT])
    app = get_app(graph, app_name)
    if plan:
        left = setup_access(graph, app) if app is not None else []
        if not configured and not left:
            left = ["the client secret and consent step 3 adds"]
        return Action([f"remove from {app_name!r}: " + "; ".join(left)] if left else [], True)
    if not configured or app is None:
        return Action([])
    report = take_back(graph, app, client_secret_ref)
    changes = []
    if report.secrets_removed:
        changes.append("removed client secret " + ", ".join(report.secrets_removed))
    if report.secret_ref_deleted:
        changes.append(f"deleted the stored client secret at {report.secret_ref_deleted}")
    if report.role_assignments_removed:
        changes.append("revoked admin consent: " + ", ".join(sorted(report.role_assignments_removed)))
    if report.delegated_grants_removed:
        changes.append(f"revoked the delegated permission grant ({report.delegated_grants_removed})")
    return Action(changes, False, [report] if changes else [])


def setup_access_left(graph: Any, app_name: str) -> list[str]:
    """What of the setup's client secret and consent is in the tenant now ([] after a teardown)."""
    from psbridge.cloud import get_app, setup_access

    app = get_app(graph, app_name)
    return setup_access(graph, app) if app is not None else []


def facts_table(**facts: Any) -> pd.DataFrame:
    return pd.DataFrame([{"fact": k, "value": ", ".join(map(str, v)) if isinstance(v, list) else v}
                         for k, v in facts.items()], columns=["fact", "value"])


def final_state(dep: Deployment, admin_account: str, thumbprint: str, tenant_id: str, app_name: str = "",
                teardown: bool = True) -> pd.DataFrame:
    """One table of everything the runbook set, read again where it lives."""
    from psbridge.crm import find_leftovers

    rows = []
    for name in dict.fromkeys([dep.deployment_server, *dep.servers]):
        leftovers = find_leftovers(dep.session(name))
        rows.append({"where": f"{name} psbridge upload folder", "ok": not leftovers,
                     "state": "; ".join(str(x.path) for x in leftovers) or "empty (no PFX left behind)"})
    for r in certificate_state(dep, thumbprint).itertuples():
        rows.append({"where": r.where, "state": "certificate present" if r.present else "certificate MISSING",
                     "ok": bool(r.present)})
    graph = graph_client(dep, sign_in(dep, admin_account))
    for w in s2s_state(dep, graph, thumbprint, tenant_id).rows:
        rows.append({"where": w.what, "state": w.now, "ok": w.ok})
    if app_name:
        left = setup_access_left(graph, app_name)
        rows.append({"where": f"setup access of {app_name!r} (client secret, consent)",
                     "state": "; ".join(left) or "removed", "ok": not (left and teardown)})
    return pd.DataFrame(rows, columns=["where", "state", "ok"])
