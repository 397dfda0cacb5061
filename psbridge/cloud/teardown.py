"""After S2S is configured, take back what only the setup needed: the client secret and the consent.

::

    report = teardown(graph, app, secret_ref="keyring:psbridge/contoso-setup")
    report.changed      # False on a second run

The app registration itself stays (its id is in the change record); pass
``remove_consent=False`` to keep the consent, ``remove_secret=False`` to keep the secret. The
report records what was removed and what was deliberately kept.
"""

from __future__ import annotations

import logging

from psbridge import secrets
from psbridge.cloud.apps import DEFAULT_SECRET_NAME, client_secrets_named, remove_client_secrets
from psbridge.cloud.consent import admin_consent, revoke_admin_consent
from psbridge.cloud.graph import GraphClient
from psbridge.cloud.models import AppRegistration, TeardownReport
from psbridge.secrets import SecretError, SecretRef

log = logging.getLogger("psbridge.cloud.teardown")


def setup_access(graph: GraphClient, app: AppRegistration, *,
                 secret_display_name: str = DEFAULT_SECRET_NAME) -> list[str]:
    """What of the setup is still there, read-only: one sentence a kind (empty: nothing left).

    What :func:`teardown` would remove, for a plan.
    """
    left = [f"client secret {c['keyId']}" for c in client_secrets_named(graph, app, secret_display_name)]
    consent = admin_consent(graph, app)
    if consent.role_names:
        left.append("admin consent to " + ", ".join(sorted(consent.role_names)))
    if consent.grants:
        scopes = sorted({s for g in consent.grants for s in g.get("scope", "").split()})
        left.append("delegated consent to " + (", ".join(scopes) or "no scopes"))
    return left


def teardown(graph: GraphClient, app: AppRegistration, secret_ref: str | SecretRef | None = None, *,
             remove_secret: bool = True, remove_consent: bool = True,
             secret_display_name: str = DEFAULT_SECRET_NAME) -> TeardownReport:
    ref = SecretRef.parse(secret_ref) if secret_ref is not None else None
    skipped: list[str] = []
    removed_keys: list[str] = []
    deleted_ref: str | None = None
    if remove_secret:
        removed_keys = remove_client_secrets(graph, app, display_name=secret_display_name)
        if ref is not None:
            try:
                secrets.resolve(ref)
            except SecretError:
                pass  # nothing stored there (any more)
            else:
                secrets.delete(ref)
                deleted_ref = str(ref)
    else:
        skipped.append("client secret kept (remove_secret=False)")
    roles: list[str] = []
    grants = 0
    if remove_consent:
        roles, grants = revoke_admin_consent(graph, app)
    else:
        skipped.append("admin consent kept (remove_consent=False)")
    report = TeardownReport(app_id=app.app_id, secrets_removed=removed_keys, secret_ref_deleted=deleted_ref,
                            role_assignments_removed=roles, delegated_grants_removed=grants, skipped=skipped)
    outcome = "changed the tenant" if report.changed else "found nothing to do"
    log.info("%s: teardown %s", app.display_name, outcome)
    return report
