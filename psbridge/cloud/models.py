"""What the cloud operations return: small pydantic models that read well in a notebook.

Each has a plain ``repr`` and an HTML view (``_repr_html_``, without pandas); collections also
give a pandas DataFrame (``.table()``, pandas imported then). None holds a secret value: a client
secret is represented by its key id, its hint and the *reference* of where its value was stored.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from psbridge.tables import dataframe, html_table

if TYPE_CHECKING:
    import pandas as pd

_KEY_COLUMNS = ["thumbprint", "subject", "type", "usage", "start", "end", "expired", "keyId"]
_CONSENT_COLUMNS = ["permission", "type", "id", "this run"]


class _Shown(BaseModel):
    model_config = ConfigDict(frozen=True)

    def _rows(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(_text(v))}</td></tr>"
            for k, v in self._rows()
        )
        return f"<table><caption>{escape(type(self).__name__)}</caption>{cells}</table>"


def _text(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="seconds")
    if isinstance(v, BaseModel):
        return repr(v)
    return "" if v is None else str(v)


class AppRegistration(_Shown):
    display_name: str
    app_id: str
    object_id: str
    service_principal_id: str
    sign_in_audience: str
    redirect_uris: list[str]
    # What this run did: [] when everything already was as wanted.
    changes: list[str] = []


class SecretInfo(_Shown):
    key_id: str
    display_name: str
    hint: str
    start: dt.datetime
    end: dt.datetime
    secret_ref: str
    created: bool


class Permission(_Shown):
    resource_app_id: str
    name: str
    kind: str  # "Role" (application permission) or "Scope" (delegated)
    id: str


def _permission_rows(perms: list[Permission]) -> list[dict[str, Any]]:
    return [{"permission": p.name, "type": "Application" if p.kind == "Role" else "Delegated", "id": p.id}
            for p in perms]


def permissions_table(perms: list[Permission]) -> pd.DataFrame:
    return dataframe(_permission_rows(perms), ["permission", "type", "id"])


class RequiredAccess(_Shown):
    app_id: str
    permissions: list[Permission]
    changed: bool

    def table(self) -> pd.DataFrame:
        return permissions_table(self.permissions)

    def _repr_html_(self) -> str:
        state = "updated" if self.changed else "already as required"
        head = f"<p>Required access of app {escape(self.app_id)}: {state}</p>"
        return head + html_table(_permission_rows(self.permissions), ["permission", "type", "id"])


class ConsentResult(_Shown):
    app_id: str
    granted: list[Permission]
    created: list[str]
    already: list[str]

    def _consent_rows(self) -> list[dict[str, Any]]:
        return [{**row, "this run": "granted" if p.name in self.created else "already granted"}
                for p, row in zip(self.granted, _permission_rows(self.granted), strict=True)]

    def table(self) -> pd.DataFrame:
        return dataframe(self._consent_rows(), _CONSENT_COLUMNS)

    def _repr_html_(self) -> str:
        return (f"<p>Admin consent for app {escape(self.app_id)}</p>"
                + html_table(self._consent_rows(), _CONSENT_COLUMNS))


class KeyCredentialInfo(_Shown):
    key_id: str
    thumbprint: str | None
    display_name: str | None
    type: str
    usage: str
    start: dt.datetime | None
    end: dt.datetime | None

    @property
    def expired(self) -> bool:
        return self.end is not None and self.end < dt.datetime.now(dt.UTC)


class CrmServicePrincipal(_Shown):
    object_id: str
    app_id: str
    display_name: str
    service_principal_names: list[str]
    key_credentials: list[KeyCredentialInfo]

    def _key_rows(self) -> list[dict[str, Any]]:
        return [{"thumbprint": k.thumbprint, "subject": k.display_name, "type": k.type, "usage": k.usage,
                 "start": k.start, "end": k.end, "expired": k.expired, "keyId": k.key_id}
                for k in self.key_credentials]

    def table(self) -> pd.DataFrame:
        return dataframe(self._key_rows(), _KEY_COLUMNS)

    def has_certificate(self, thumbprint: str) -> bool:
        t = thumbprint.replace(" ", "").upper()
        return any((k.thumbprint or "").upper() == t and not k.expired for k in self.key_credentials)

    def _repr_html_(self) -> str:
        spns = "".join(f"<li>{escape(s)}</li>" for s in self.service_principal_names)
        return (f"<p>{escape(self.display_name)} ({escape(self.app_id)}), object {escape(self.object_id)}</p>"
                f"<p>servicePrincipalNames:</p><ul>{spns}</ul>" + html_table(self._key_rows(), _KEY_COLUMNS))


class TeardownReport(_Shown):
    app_id: str
    secrets_removed: list[str]  # key ids
    secret_ref_deleted: str | None
    role_assignments_removed: list[str]  # permission names
    delegated_grants_removed: int
    skipped: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.secrets_removed or self.secret_ref_deleted or self.role_assignments_removed
                    or self.delegated_grants_removed)
