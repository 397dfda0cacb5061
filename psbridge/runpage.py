"""The run page: ``index.html``, the one page a change board opens first.

It is drawn from the manifest alone (so a record rebuilt from its journal gets one too): who
ran what, where and when, with which parameters (secret ones as the references they are), each
step's status, duration, what it changed and a link to its page, every change and its outcome,
the files of the record with their SHA-256, and for a failed or interrupted run what was done
and the command that resumes it.

The page has a stable name (:data:`RUN_PAGE`) at the record's root, so a batch's page links to
``<org>/<run-id>/index.html``; a run that belongs to a batch names it in its manifest's
``batch`` entry (``{"id": ..., "page": <path relative to the record>}``) and the page links back.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from typing import Any

from psbridge.pages import Link, esc, page, status_badge, table

RUN_PAGE = "index.html"

_ROLES = {"os": "OS user", "entra": "Entra ID account", "winrm": "WinRM account",
          "crm": "CRM Web API account"}


def step_page(step: dict[str, Any]) -> str:
    """The file name of a step's page (``20-install-certificate.html``)."""
    notebook = str(step.get("notebook") or "")
    return notebook[: -len(".ipynb")] + ".html" if notebook.endswith(".ipynb") else ""


def identities(manifest: dict[str, Any]) -> dict[str, str]:
    """Who acted in the run, by role: the OS user and machine, then every account that signed in."""
    out = {"OS user": f"{manifest.get('operator') or 'unknown'} on {manifest.get('machine') or 'unknown'}"}
    by_role: dict[str, list[str]] = {}
    for who in manifest.get("identities") or []:
        role = _ROLES.get(str(who.get("as")), str(who.get("as")))
        text = str(who.get("account") or "")
        if who.get("where"):
            text += f" ({who['where']})"
        if text not in by_role.setdefault(role, []):
            by_role[role].append(text)
    for role in ("Entra ID account", "WinRM account", "CRM Web API account"):
        out[role] = ", ".join(by_role.pop(role, [])) or "none signed in"
    out.update({role: ", ".join(names) for role, names in by_role.items()})
    return out


def signature_text(manifest: dict[str, Any]) -> str:
    signer = manifest.get("signer")
    if not signer:
        return "unsigned (psbridge verify checks the hashes only)"
    return f"signed by {signer.get('subject')} (SHA-1 {signer.get('thumbprint')}) in manifest.sig"


def resume_command(manifest: dict[str, Any]) -> str:
    """The command that resumes the run, quoted for the shell of the machine that ran it (the page may
    be drawn elsewhere: ``verify --repair`` of a Windows laptop's record on a Linux host)."""
    command = manifest.get("command")
    if isinstance(command, list) and command:
        args = [*map(str, command), "--resume"]
        if re.match(r"^[A-Za-z]:\\", args[0]):
            return subprocess.list2cmdline(args)
        return shlex.join(args)
    return "psbridge run PARAMS.yaml --resume (with the options the run had)"


def _time(text: Any) -> str:
    """An ISO time as a table shows it: to the second, in UTC as recorded (the header keeps it whole)."""
    value = str(text or "")
    return value[:19].replace("T", " ") if len(value) >= 19 else value


def _duration(seconds: Any) -> str:
    return f"{float(seconds):.1f} s" if isinstance(seconds, int | float) else ""


def _changes(step: dict[str, Any]) -> str:
    changes = (step.get("facts") or {}).get("changes")
    if step.get("status") in ("failed", "interrupted"):
        return esc(step.get("error") or step.get("status"))
    if step.get("status") == "carried":
        return esc(f"done earlier (run {step.get('carried_from')})")
    if not isinstance(changes, list):
        return ""
    if not changes:
        return "nothing changed"
    return "<ul>" + "".join(f"<li>{esc(c)}</li>" for c in changes) + "</ul>"


def _steps(manifest: dict[str, Any], present: set[str]) -> str:
    rows = []
    for number, step in enumerate(manifest.get("steps") or []):
        name = step_page(step)
        label = esc(name[: -len(".html")] if name else step.get("id"))
        link = f'<a href="{esc(name)}">{label}</a>' if name in present else label
        rows.append([str(number), link, esc(step.get("title")), status_badge(str(step.get("status"))),
                     esc(_time(step.get("started"))), _duration(step.get("duration_s")), _changes(step)])
    return table(rows, ["#", "step", "what", "status", "started (UTC)", "duration", "changed"],
                 raw=frozenset(range(7)))


def _parameters(manifest: dict[str, Any]) -> str:
    secret = set(manifest.get("secret_parameters") or [])
    rows = []
    for name, value in (manifest.get("parameters") or {}).items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append([name, shown, "secret: where it is kept" if name in secret and value else ""])
    return table(rows, ["parameter", "value", ""])


def _all_changes(manifest: dict[str, Any]) -> str:
    rows = [[_time(c.get("started")), str(c.get("step") or ""), str(c.get("action") or ""),
             str(c.get("where") or ""), str(c.get("what") or ""), str(c.get("outcome") or "")]
            for c in manifest.get("changes") or []]
    if not rows:
        return "<p>No change was made.</p>"
    return table(rows, ["started (UTC)", "step", "action", "where", "what", "outcome"])


def _what_happened(manifest: dict[str, Any]) -> str:
    status = str(manifest.get("status"))
    if status not in ("failed", "interrupted"):
        return ""
    done = [c for c in manifest.get("changes") or [] if c.get("outcome") == "done"]
    open_ = [c for c in manifest.get("changes") or [] if c.get("outcome") != "done"]
    items = "".join(f"<li>{esc(c.get('outcome'))}: {esc(c.get('action'))} on {esc(c.get('where'))} "
                    f"({esc(c.get('what'))})</li>" for c in open_)
    made = f"<p>{len(done)} change(s) were made and are listed below" if done else "<p>No change was made"
    return (f'<section class="notice {esc(status)}"><h2>What happened</h2>'
            f"<p>{esc(manifest.get('failure') or status)}</p>" + made
            + (f"; not finished:</p><ul>{items}</ul>" if items else ".</p>")
            + "<p>Every step reads the world before it acts, so after fixing the cause the run goes on "
            f"where it stopped with:</p><pre>{esc(resume_command(manifest))}</pre></section>")


def run_page(manifest: dict[str, Any], files: dict[str, str] | None = None) -> str:
    """The run page of ``manifest``; ``files``: the other files of the record and their SHA-256."""
    files = files or {}
    book = manifest.get("runbook") or {}
    status = str(manifest.get("status") or "unknown")
    who = f"{manifest.get('customer')}/{manifest.get('organization')}"
    head = {
        "customer": str(manifest.get("customer")), "organization": str(manifest.get("organization")),
        "runbook": f"{book.get('name')} {book.get('version')} — {book.get('title')}",
        "runbook SHA-256": str(book.get("sha256")),
        "run": str(manifest.get("run_id")), "mode": str(manifest.get("mode")), "status": status,
        "started": str(manifest.get("started")), "ended": str(manifest.get("ended") or ""),
        "duration": _duration(manifest.get("duration_s")),
        **identities(manifest),
        "psbridge": f"{manifest.get('psbridge')} (Python {manifest.get('python')})",
        "signature": signature_text(manifest),
    }
    nav: list[Link] = []
    batch = manifest.get("batch")
    if isinstance(batch, dict) and batch.get("page"):
        nav.append(Link(f"batch {batch.get('id')}", str(batch["page"])))
    present = set(files)
    body = (_what_happened(manifest)
            + f"<h2>Steps</h2>{_steps(manifest, present)}"
            + f"<h2>Changes, in the order they were made</h2>{_all_changes(manifest)}"
            + f"<h2>Parameters</h2>{_parameters(manifest)}"
            + "<h2>Files of this record</h2>"
            + table([[f'<a href="{esc(n)}">{esc(n)}</a>', esc(d)] for n, d in sorted(files.items())],
                    ["file", "SHA-256"], raw=frozenset({0, 1}))
            + "<p>manifest.json holds these hashes, and its own; <code>psbridge verify</code> "
            "recomputes them" + (" and checks manifest.sig" if manifest.get("signer") else "") + ".</p>")
    return page(body, title=f"Run {manifest.get('run_id')} — {who} — {status}", header=head,
                heading=f"{book.get('name')} for {who}", nav=nav, status=status)


def step_header(manifest: dict[str, Any], step: dict[str, Any]) -> dict[str, str]:
    """The facts on top of a step's page (the same as the run page's, for this step)."""
    book = manifest.get("runbook") or {}
    return {"run": str(manifest.get("run_id")), "customer / organization":
            f"{manifest.get('customer')} / {manifest.get('organization')}",
            "runbook": f"{book.get('name')} {book.get('version')}",
            "step": f"{step.get('id')} — {step.get('title')}", "mode": str(manifest.get("mode")),
            "status": str(step.get("status")) + (f": {step.get('error')}" if step.get("error") else ""),
            "started": str(step.get("started") or ""), "ended": str(step.get("ended") or ""),
            "duration": _duration(step.get("duration_s")),
            "operator": f"{manifest.get('operator')} on {manifest.get('machine')}"}


def step_nav(manifest: dict[str, Any], step_id: str) -> list[Link]:
    """Links from a step's page: the run page, the previous and the next step's page."""
    steps = [s for s in manifest.get("steps") or [] if s.get("status") not in ("not run",)]
    ids = [s.get("id") for s in steps]
    nav = [Link("↑ run page", RUN_PAGE)]
    if step_id in ids:
        i = ids.index(step_id)
        if i > 0 and steps[i - 1].get("status") != "carried":
            nav.append(Link(f"← {step_page(steps[i - 1])[:-5]}", step_page(steps[i - 1])))
        if i + 1 < len(steps):
            nav.append(Link(f"{step_page(steps[i + 1])[:-5]} →", step_page(steps[i + 1])))
    nav.append(Link("notebook (.ipynb)", step_page(next((s for s in steps if s.get('id') == step_id), {}))
                    .replace(".html", ".ipynb")))
    return nav

