"""What a text parameter may hold, by the name of its ``format`` in the runbook's schema.

A parameter file is checked whole before anything runs, and a step notebook run on its own
(papermill, JupyterLab) builds its :class:`~psbridge.runbook.deployment.Deployment` through the
same checks, so a value the server or the cloud would refuse — or misread — stops here, with
every problem named at once. The checks mirror what the far side accepts: CRM's organization
unique names, Windows logon and NetBIOS names, Windows paths, Entra tenants, WinRM URLs.

Every text parameter, whatever its format, is refused when it holds control or invisible
formatting characters (NUL, newlines, the right-to-left override U+202E): none of them belongs
in a name, a path or a URL, and printed on a terminal they can disguise what was written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from psbridge.remote.errors import ValidationError
from psbridge.text import invisible, shown

# Windows' classic MAX_PATH: the official scripts and the CRM cmdlets do not opt into longer paths.
MAX_WINDOWS_PATH = 259
MAX_TEXT = 256
MAX_CUSTOMER = 64


def _customer(v: str) -> str | None:
    import re

    if len(v) > MAX_CUSTOMER:
        return f"at most {MAX_CUSTOMER} characters, got {len(v)}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v) or ".." in v:
        return ("letters, digits and _ . - only, starting with a letter or digit (it names a folder of "
                "records)")
    return None


def _organization(v: str) -> str | None:
    from psbridge.crm.validation import organization_name

    return _refused(organization_name, v)


def _service_account(v: str) -> str | None:
    from psbridge.crm.validation import service_account

    return _refused(service_account, v)


def _windows_account(v: str) -> str | None:
    from psbridge.crm.validation import NETWORK_SERVICE, service_account

    why = _refused(service_account, v)
    if why is None and service_account(v) == NETWORK_SERVICE:
        return "Network Service cannot sign in remotely: name a DOMAIN\\user account"
    return why


def _upn(v: str) -> str | None:
    user, at, domain = v.rpartition("@")
    if not at or not user or "." not in domain or any(c in v for c in ' "\\/<>;,'):
        return "a user principal name such as admin@contoso.onmicrosoft.com"
    return None


def _tenant(v: str) -> str | None:
    from psbridge.crm.validation import tenant

    return _refused(tenant, v)


def _windows_path(v: str) -> str | None:
    from psbridge.remote.paths import server_path

    if len(v) > MAX_WINDOWS_PATH:
        return f"at most {MAX_WINDOWS_PATH} characters on Windows, got {len(v)}"
    return _refused(server_path, v)


def _local_file(suffixes: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        path = Path(v).expanduser()
        if suffixes and path.suffix.lower() not in suffixes:
            return f"expected a {' or '.join(suffixes)} file"
        try:
            if not path.is_file():
                return "no such file on this machine"
        except (OSError, ValueError) as e:  # a name too long for this file system
            return f"not a usable path ({type(e).__name__})"
        return None

    return check


def _server(v: str) -> str | None:
    """``NAME`` or ``NAME=URL`` (also ``NAME URL``): a NetBIOS name, a WinRM http(s) URL."""
    import re

    name, sep, url = v.replace(" ", "=", 1).partition("=")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,14}", name):
        return ("a server is NAME or NAME=https://host:5986/wsman, NAME a computer name of at most 15 "
                "letters, digits and -")
    if sep:
        return _winrm_url(url.strip())
    return None


def _winrm_url(v: str) -> str | None:
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "not a URL"
    if u.scheme not in ("http", "https") or not u.hostname:
        return "a WinRM URL is http(s)://host[:port]/wsman"
    if u.username or u.password or u.query or u.fragment:
        return "a WinRM URL carries no credentials, query or fragment"
    return None


def _redirect_uri(v: str) -> str | None:
    try:
        u = urlsplit(v)
    except ValueError:
        return "not a URL"
    local = u.hostname in ("localhost", "127.0.0.1")
    if not u.hostname or not (u.scheme == "https" or (u.scheme == "http" and local)):
        return "Entra ID takes an https:// redirect URI (http:// only for localhost)"
    return None


def _crm_url(v: str) -> str | None:
    """An organization's URL: https://server/org (Active Directory) or https://org.domain (IFD)."""
    try:
        u = urlsplit(v)
        u.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "not a URL"
    if u.scheme != "https" or not u.hostname:
        return ("the organization's URL is https://server/org or https://org.domain (HTTPS: a token or a "
                "password travels over it)")
    if u.username or u.password or u.query or u.fragment or "/api/" in u.path.lower():
        return "the organization's URL carries no credentials, query, fragment or /api/ path"
    return None


def _crm_user(v: str) -> str | None:
    """Who signs in to the Web API: DOMAIN\\user (Windows) or a UPN (AD FS)."""
    if "@" in v:
        return _upn(v)
    return _windows_account(v)


def _mailbox(v: str) -> str | None:
    """A mailbox to set up: all, a user (DOMAIN\\user or an email address) or queue:NAME."""
    if v.strip().lower() == "all":
        return None
    if v.lower().startswith("queue:"):
        return None if v[len("queue:"):].strip() else "queue:NAME names the queue"
    if "@" in v:
        return _upn(v) and "an email address such as alice@contoso.com"
    if "\\" in v:
        return _windows_account(v)
    return "all, a user (DOMAIN\\user or an email address) or queue:NAME"


def _guid(v: str) -> str | None:
    import re

    if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", v):
        return "a GUID such as 6a4b8c2e-31d7-4f5a-9e2b-7c1d0f3a5b9e"
    return None


def _display_name(v: str) -> str | None:
    return "a display name is not empty" if not v.strip() else None


def _lab(v: str) -> str | None:
    """A lab that is up: 'auto' (the default state directory), a state directory or its lab.json."""
    from psbridge.lab.config import LabConfig, LabConfigError
    from psbridge.lab.secretstore import lab_state_dir

    if v.strip().lower() != "auto" and _local_path(v):
        return _local_path(v)
    where = lab_state_dir() if v.strip().lower() == "auto" else Path(v).expanduser()
    try:
        config = LabConfig.load(where)
    except (LabConfigError, OSError, ValueError):
        return f"no lab at {where}: start it with 'psbridge lab up' (or run 'psbridge demo')"
    if not config.ready:
        return f"the lab at {config.state_dir} is not running: start it with 'psbridge lab up'"
    return None


def _local_path(v: str) -> str | None:
    try:
        Path(v).expanduser().resolve()
    except (OSError, ValueError) as e:
        return f"not a usable path ({type(e).__name__})"
    return None


def _refused(check: Callable[[str], object], v: str) -> str | None:
    try:
        check(v)
    except ValidationError as e:
        return e.reason
    return None


FORMATS: dict[str, Callable[[str], str | None]] = {
    "customer": _customer,
    "organization": _organization,
    "service-account": _service_account,
    "windows-account": _windows_account,
    "upn": _upn,
    "tenant": _tenant,
    "windows-path": _windows_path,
    "pfx-file": _local_file((".pfx", ".p12")),
    "pem-file": _local_file((".pem", ".crt", ".cer")),
    "server": _server,
    "url": _redirect_uri,
    "crm-url": _crm_url,
    "crm-user": _crm_user,
    "guid": _guid,
    "mailbox": _mailbox,
    "display-name": _display_name,
    "lab": _lab,
    "path": _local_path,
}


def problems(name: str, value: str, fmt: str | None, max_length: int | None = None) -> list[str]:
    """Why ``value`` cannot be parameter ``name`` (``[]``: it can); an empty value is not checked."""
    out = []
    bad = invisible(value)
    if bad:
        out.append(f"{name}: {shown(value)} holds control or invisible characters ({', '.join(bad)})")
        return out
    if value and fmt:
        why = FORMATS[fmt](value)
        if why:
            # The far side's own checks often quote the value already.
            return [f"{name}: {why}" if value in why else f"{name}: {shown(value)}: {why}"]
    limit = max_length or MAX_TEXT
    if len(value) > limit:
        out.append(f"{name}: at most {limit} characters, got {len(value)}")
    return out
