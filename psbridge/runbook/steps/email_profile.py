"""Step 6a — the Exchange Online (Hybrid) email server profile, and the organization's email settings.

The profile (found by name) must be of type Exchange Online (Hybrid), sign in with
server-to-server authentication for incoming and outgoing email, use the organization's default
tenant id (its ``S2STenantId``, step 5) and find the mailboxes' server by autodiscover; the
organization must name it as its default profile, use server-side sync as its email channel and
give new users and queues server-side sync as their delivery methods. What differs is created or
updated through the Web API, nothing else; a plan says what it would write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psbridge.crm import email
from psbridge.runbook.steps.common import Action, StepError, Wanted, WantedState, web_api, web_api_target

if TYPE_CHECKING:
    from psbridge.crm.webapi import WebApi

__all__ = ["ProfileState", "ensure_profile", "profile_state", "web_api", "web_api_target"]

_ATTRIBUTE_NAMES = {
    "servertype": "server type", "incomingcredentialretrieval": "incoming email: credentials",
    "outgoingcredentialretrieval": "outgoing email: credentials",
    "usesamesettingsforoutgoingconnections": "same settings for outgoing", "useautodiscover": "autodiscover",
    "usedefaulttenantid": "the organization's tenant id (S2STenantId)", "exchangeonlinetenantid": "tenant id",
    "incomingusessl": "incoming email over TLS", "outgoingusessl": "outgoing email over TLS",
}


@dataclass
class ProfileState(WantedState):
    """The profile's attributes and the organization's email settings, each wanted against found."""

    spec: email.ProfileSpec | None = None
    profile: email.Profile | None = None
    settings: email.EmailSettings | None = None
    duplicates: int = 0
    names: dict[str, str] = field(default_factory=dict)  # profile id -> name, for the default's row


def profile_state(api: WebApi, profile_name: str, tenant_id: str = "") -> ProfileState:
    """Read the profile (by name) and the organization's email settings; nothing changes."""
    email.check_names(api)
    spec = email.ProfileSpec(profile_name)
    found = email.find_profiles(api, profile_name)
    profile = found[0] if len(found) == 1 else None
    settings = email.email_settings(api)
    rows = []
    what = f"email server profile {profile_name!r}"
    if len(found) > 1:
        now_text = f"{len(found)} with this name"
    else:
        now_text = f"exists ({profile.id})" if profile else "missing"
    rows.append(Wanted(what, "Exchange Online (Hybrid)", now_text, profile is not None))
    for attr, wanted in spec.attributes().items():
        now = profile.values.get(attr) if profile else None
        shown = email.describe_value(attr, now) if profile else "-"
        rows.append(Wanted(f"{what}: {_ATTRIBUTE_NAMES.get(attr, attr)}", email.describe_value(attr, wanted),
                           shown, profile is not None and now == wanted))
    if profile is not None:
        rows.append(Wanted(f"{what}: status", "active", "active" if profile.active else "inactive",
                           profile.active))
    names = {str(r["emailserverprofileid"]).lower(): str(r["name"])
             for r in api.get_all("emailserverprofiles", {"$select": "name"})}
    default = settings.default_profile_id
    default_shown = names.get(default or "", default or "none")
    rows.append(Wanted("organization: default email server profile", profile_name, default_shown,
                       profile is not None and default == profile.id))
    rows.append(Wanted("organization: email connection channel", "server-side sync",
                       email.label(email.Channel, settings.channel),
                       settings.channel == email.Channel.SERVER_SIDE_SYNC))
    for label, now, wanted, kind in (
            ("incoming email", settings.incoming, email.Delivery.SERVER_SIDE_SYNC, email.Delivery),
            ("outgoing email", settings.outgoing, email.Delivery.SERVER_SIDE_SYNC, email.Delivery),
            ("appointments, contacts and tasks", settings.act, email.ActDelivery.SERVER_SIDE_SYNC,
             email.ActDelivery)):
        rows.append(Wanted(f"organization: default for new users and queues: {label}",
                           email.label(kind, wanted), email.label(kind, now), now == wanted))
    return ProfileState(rows, spec=spec, profile=profile, settings=settings, duplicates=len(found),
                        names=names)


def ensure_profile(api: WebApi, state: ProfileState, *, plan: bool = False) -> Action:
    """Create or update the profile, then the organization's settings; only what differs."""
    if state.ok:
        return Action([], plan)
    assert state.spec is not None and state.settings is not None
    name = state.spec.name
    if state.duplicates > 1:
        raise StepError(f"{state.duplicates} email server profiles are named {name!r}: rename or remove "
                        "all but one in the web client (Settings > Email Configuration > Email Server "
                        "Profiles), or name another profile_name")
    changes: list[str] = []
    writes = email.profile_differences(state.profile, state.spec)
    if state.profile is None:
        changes.append(f"create the Exchange Online (Hybrid) email server profile {name!r} with "
                       "server-to-server authentication, the organization's tenant id and autodiscover")
    elif writes:
        changes.append(f"update the email server profile {name!r}: " + ", ".join(
            f"{_ATTRIBUTE_NAMES.get(k, k)} to {email.describe_value(k, v)}" for k, v in writes.items()
            if k not in ("statuscode",)))
    profile_id = state.profile.id if state.profile else "<the new profile>"
    org = email.settings_changes(state.settings, profile_id)
    org_said = _settings_said(org, name)
    if org_said:
        changes.append("set the organization's email configuration: " + "; ".join(org_said))
    if plan:
        return Action(changes, True)
    if state.profile is None:
        profile_id = email.create_profile(api, state.spec)
    elif writes:
        email.update_profile(api, state.profile.id, writes)
    org = email.settings_changes(state.settings, profile_id)
    if org:
        email.set_email_settings(api, state.settings.organization_id, org)
    return Action([c.replace("<the new profile>", profile_id) for c in changes])


def _settings_said(changes: dict[str, Any], name: str) -> list[str]:
    said = []
    if "defaultemailserverprofileid@odata.bind" in changes:
        said.append(f"default email server profile {name!r}")
    if "emailconnectionchannel" in changes:
        said.append("server-side sync as the email connection channel")
    if "defaultemailsettings" in changes:
        said.append("server-side sync for incoming and outgoing email and for appointments, contacts and "
                    "tasks of new users and queues")
    return said
