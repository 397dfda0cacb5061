"""The organizations' email configuration as tables, read from ``world.json`` without starting anything.

For ``psbridge lab status``: each organization's email server profiles, its email settings
(default profile, channel, approval) and every mailbox with its delivery methods, approval and
the statuses Test & Enable left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SERVER_TYPES = {0: "Exchange Server", 1: "POP3/SMTP", 2: "Exchange Server (Hybrid)",
                3: "Exchange Online (Hybrid)"}
CREDENTIALS = {0: "user or queue", 1: "profile", 2: "server to server", 3: "Windows integrated",
               4: "anonymous"}
DELIVERY = {0: "none", 1: "Outlook", 2: "server-side sync", 3: "forward mailbox"}
ACT = {0: "Outlook", 1: "server-side sync", 2: "none"}
APPROVAL = {0: "empty", 1: "approved", 2: "pending", 3: "rejected"}
STATUS = {0: "not run", 1: "success", 2: "failure"}


def _name(value: Any, names: dict[int, str]) -> str:
    return names.get(value, "" if value is None else str(value))


def status_tables(world: dict[str, Any]) -> dict[str, pd.DataFrame]:
    import pandas as pd

    profiles, settings, boxes = [], [], []
    for org in world["organizations"]:
        crm = org.get("crm")
        if crm is None:
            continue
        recs = crm["records"]
        names = {p["emailserverprofileid"]: p["name"] for p in recs["emailserverprofiles"]}
        for p in recs["emailserverprofiles"]:
            profiles.append({
                "organization": org["name"], "profile": p["name"],
                "type": _name(p.get("servertype"), SERVER_TYPES),
                "incoming credentials": _name(p.get("incomingcredentialretrieval"), CREDENTIALS),
                "outgoing credentials": _name(p.get("outgoingcredentialretrieval"), CREDENTIALS),
                "autodiscover": p.get("useautodiscover"), "default tenant id": p.get("usedefaulttenantid"),
                "active": p.get("statecode", 0) == 0,
            })
        o = recs["organizations"][0]
        default = (o.get("defaultemailserverprofileid") or {}).get("id")
        settings.append({
            "organization": org["name"], "default profile": names.get(default, default or ""),
            "channel": {0: "server-side sync", 1: "Email Router"}.get(o.get("emailconnectionchannel"), ""),
            "approve users": o.get("requireapprovalforuseremail"),
            "approve queues": o.get("requireapprovalforqueueemail"),
        })
        for m in recs["mailboxes"]:
            pending = m.get("_test_due") is not None
            boxes.append({
                "organization": org["name"], "mailbox": m.get("name"), "address": m.get("emailaddress"),
                "profile": names.get((m.get("emailserverprofile") or {}).get("id"), ""),
                "incoming": _name(m.get("incomingemaildeliverymethod"), DELIVERY),
                "outgoing": _name(m.get("outgoingemaildeliverymethod"), DELIVERY),
                "appointments, contacts, tasks": _name(m.get("actdeliverymethod"), ACT),
                "approval": _name(m.get("emailrouteraccessapproval"), APPROVAL),
                "test": "scheduled" if pending else _name(m.get("mailboxstatus"), STATUS),
                "incoming status": _name(m.get("incomingemailstatus"), STATUS),
                "outgoing status": _name(m.get("outgoingemailstatus"), STATUS),
                "act status": _name(m.get("actstatus"), STATUS),
            })
    return {
        "email server profiles": pd.DataFrame(profiles, columns=[
            "organization", "profile", "type", "incoming credentials", "outgoing credentials", "autodiscover",
            "default tenant id", "active"]),
        "email configuration": pd.DataFrame(settings, columns=[
            "organization", "default profile", "channel", "approve users", "approve queues"]),
        "mailboxes": pd.DataFrame(boxes, columns=[
            "organization", "mailbox", "address", "profile", "incoming", "outgoing",
            "appointments, contacts, tasks", "approval", "test", "incoming status", "outgoing status",
            "act status"]),
    }
