"""``psbridge lab``: start, stop and inspect the embedded lab."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from psbridge.lab.config import LabConfig
from psbridge.lab.secretstore import lab_state_dir

# Locals in a traceback may hold the lab's passwords: never show them.
app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console()
err = Console(stderr=True)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="the lab's state directory (default: PSBRIDGE_LAB_STATE, else per user)"),
]
ServersOpt = Annotated[int, typer.Option("--servers", min=1, help="CRM servers, each its own WinRM endpoint")]
OrgsOpt = Annotated[int, typer.Option("--orgs", min=0, help="organizations in the deployment")]
LegacyOpt = Annotated[
    int, typer.Option("--legacy-servers", min=0, help="servers with the older ConfigureCrmServerSideSync.ps1")
]
NoCloudOpt = Annotated[bool, typer.Option("--no-cloud", help="no Entra ID/Graph twin: cloud unreachable")]
HostOpt = Annotated[str, typer.Option("--host", help="loopback address to listen on")]
WebApiOpt = Annotated[str | None, typer.Option(
    "--webapi", help="the organizations' Web API: ifd (claims with AD FS, what Exchange Online S2S "
                     "requires), "
    "ad (Active Directory: Negotiate/NTLM) or off; default: as this state directory's lab last served, else "
    "ifd")]


def _state(state: Path | None) -> Path:
    return (state or lab_state_dir()).expanduser().resolve()


def _shape_args(servers: int, orgs: int, legacy_servers: int, no_cloud: bool, host: str,
                webapi: str | None = None) -> list[str]:
    args = ["--servers", str(servers), "--orgs", str(orgs), "--legacy-servers", str(legacy_servers),
            "--host", host]
    if webapi:
        args += ["--webapi", webapi]
    return [*args, "--no-cloud"] if no_cloud else args


def _check_webapi(webapi: str | None) -> None:
    from psbridge.lab.orchestrator import WEB_DEPLOYMENTS

    if webapi is not None and webapi not in WEB_DEPLOYMENTS:
        err.print(f"--webapi takes {', '.join(WEB_DEPLOYMENTS)}, not {webapi!r}")
        raise typer.Exit(2)


def _print_servers(config: LabConfig) -> None:
    # Plain lines, never cut: the URLs are what a reader copies.
    for s in config.servers:
        line = f"{s.name}  ({s.script_generation} scripts)  {', '.join(s.roles)}"
        console.print(line, soft_wrap=True, markup=False)
        for e in s.endpoints:
            console.print(f"    {e.url}", soft_wrap=True)


def _print_endpoints(config: LabConfig) -> None:
    console.print(f"lab {config.state_dir} (pid {config.pid})")
    _print_servers(config)
    accounts = Table(title="accounts (passwords in the lab secret store, by reference)")
    for col in ("user", "password", "roles"):
        accounts.add_column(col, overflow="fold")
    for a in config.accounts:
        accounts.add_row(a.user, a.password_ref, ", ".join(a.roles) or "-")
    console.print(accounts)
    console.print("organizations: " + ", ".join(o.name for o in config.organizations))
    if config.entra:
        console.print(f"Entra ID: {config.entra.get('authority')}", soft_wrap=True)
        console.print(f"Graph: {config.entra.get('graph_url')}", soft_wrap=True)
    else:
        console.print("Entra ID: none (the cloud is unreachable from the servers)")
    web = config.webapi
    if web:
        console.print(f"CRM Web API ({web.get('deployment')}: {web.get('sign_in')}):", soft_wrap=True)
        for org, url in (web.get("organizations") or {}).items():
            console.print(f"    {org}  {url}/api/data/v9.0", soft_wrap=True)
        console.print(f"    discovery  {web.get('discovery_url')}", soft_wrap=True)
        console.print(f"    client-certificate site  {web.get('client_certificate_site')}", soft_wrap=True)
        if web.get("adfs"):
            adfs = web["adfs"]
            console.print(f"AD FS: {adfs.get('authority')} (client {adfs.get('client_id')})", soft_wrap=True)
    else:
        console.print("CRM Web API: none (started with --webapi off)")
    console.print(f"CA bundle: {config.ca_bundle}", soft_wrap=True)
    console.print(f"description: {LabConfig.path_for(config.state_dir)}", soft_wrap=True)


@app.command()
def up(
    state: StateOpt = None,
    servers: ServersOpt = 2,
    orgs: OrgsOpt = 2,
    legacy_servers: LegacyOpt = 0,
    no_cloud: NoCloudOpt = False,
    host: HostOpt = "127.0.0.1",
    webapi: WebApiOpt = None,
    foreground: Annotated[bool, typer.Option("--foreground", help="serve here until Ctrl-C")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait until it is ready")] = 60.0,
    deployments: Annotated[int, typer.Option(
        "--deployments", min=0, max=200, help="a fleet: this many deployments, each its own lab in "
        "STATE/depNN with --servers and --orgs, and STATE/inventory.yaml for psbridge batch")] = 0,
) -> None:
    """Start the lab on loopback (in the background unless --foreground) and write lab.json.

    A state directory keeps its world: --servers/--orgs/--legacy-servers shape a new one only.
    """
    from psbridge.lab import background
    from psbridge.lab.orchestrator import Lab, LabError
    from psbridge.lab.world import WorldError

    where = _state(state)
    if legacy_servers > servers:
        err.print("--legacy-servers cannot exceed --servers")
        raise typer.Exit(2)
    _check_webapi(webapi)
    if deployments:
        from psbridge.lab import fleet

        if foreground:
            err.print("--deployments starts labs in the background: no --foreground")
            raise typer.Exit(2)
        try:
            configs = fleet.up(where, deployments, _shape_args(servers, orgs, legacy_servers, no_cloud, host,
                                                               webapi), timeout)
        except (LabError, WorldError, OSError, ValueError) as e:
            err.print(f"cannot start the fleet: {e}")
            raise typer.Exit(1) from None
        for name, config in configs.items():
            console.print(f"{name}: lab {config.state_dir} (pid {config.pid}), servers "
                          f"{', '.join(s.name for s in config.servers)}, organizations "
                          f"{', '.join(o.name for o in config.organizations)}", soft_wrap=True, markup=False)
        console.print(f"inventory for psbridge batch: {where / fleet.INVENTORY}", soft_wrap=True,
                      markup=False)
        return
    already = background.running(where)
    if already is not None:
        console.print(f"a lab is already running for {where} (pid {already.pid})")
        _print_endpoints(already)
        return
    try:
        if foreground:
            lab = Lab(where, servers=servers, orgs=orgs, legacy_servers=legacy_servers, cloud=not no_cloud,
                      host=host, webapi=webapi)

            def ready(config: LabConfig) -> None:
                _print_endpoints(config)
                console.print("serving; Ctrl-C (Ctrl-Break on Windows) or 'psbridge lab down' stops it")

            background.serve(lab, on_ready=ready)
            console.print("lab stopped")
            return
        config = background.spawn(where, _shape_args(servers, orgs, legacy_servers, no_cloud, host, webapi),
                                  timeout)
    except (LabError, WorldError, OSError, ValueError) as e:
        err.print(f"cannot start the lab: {e}")
        raise typer.Exit(1) from None
    _print_endpoints(config)
    legacy = sum(s.script_generation == "legacy" for s in config.servers)
    if (len(config.servers), len(config.organizations), legacy) != (servers, orgs, legacy_servers):
        console.print(f"note: {where} already held a world, kept as it is: {len(config.servers)} servers "
                      f"({legacy} legacy), {len(config.organizations)} organizations", soft_wrap=True)


@app.command()
def down(
    state: StateOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for it to stop")] = 30.0,
) -> None:
    """Stop the lab serving for the state directory; its state stays on disk."""
    from psbridge.lab import background

    where = _state(state)
    from psbridge.lab import fleet

    if fleet.members(where) is not None:
        for member, stopped in fleet.down(where, timeout):
            console.print(f"{member.name}: " + (f"lab stopped (pid {stopped})" if stopped else "not running"))
        return
    pid = background.shutdown(where, timeout)
    if pid is None:
        console.print(f"no lab is running for {where}")
    else:
        console.print(f"lab stopped (pid {pid})")


def _table(title: str, frame: Any) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*("" if v is None or v != v else str(v) for v in row))  # v != v: NaN
    if frame.empty:
        table.caption = "(none)"
    return table


@app.command()
def status(state: StateOpt = None) -> None:
    """The world: organizations, configuration database, certificate stores, CRM certificates."""
    import pandas as pd

    from psbridge.lab import background, faults
    from psbridge.lab.entra.status import status_tables as entra_tables
    from psbridge.lab.world import World, WorldError

    where = _state(state)
    try:
        world = World.load(where)
    except WorldError as e:
        err.print(f"{e} (start it with 'psbridge lab up')")
        raise typer.Exit(1) from None
    live = background.running(where)
    console.print(f"lab {where}: " + (f"running (pid {live.pid})" if live else "not running"))
    if live:
        _print_servers(live)
    for name, frame in world.status_tables().items():
        console.print(_table(name, frame))
    for name, frame in entra_tables(where / "entra").items():
        console.print(_table(name, frame))
    from psbridge.lab.webapi.status import status_tables as email_tables

    for name, frame in email_tables(world.data).items():
        console.print(_table(name, frame))
    rows = [
        {"server": server, "drop after": f.drop_after, "delay": f.delay or None,
         "fail commands": "; ".join(f"{k}={v}" for k, v in f.fail_commands.items()),
         "deny auth": f.deny_auth or None}
        for server, f in faults.all_faults(where).items()
    ]
    columns = ["server", "drop after", "delay", "fail commands", "deny auth"]
    console.print(_table("faults", pd.DataFrame(rows, columns=columns)))


@app.command()
def fault(
    server: Annotated[str, typer.Argument(help="the server, e.g. CRM01")],
    state: StateOpt = None,
    drop_after: Annotated[int | None, typer.Option("--drop-after", min=0,
                                                   help="answer N requests, then drop the next")] = None,
    delay: Annotated[float | None, typer.Option("--delay", min=0, help="seconds added to answers")] = None,
    fail_command: Annotated[list[str] | None, typer.Option("--fail-command", metavar="NAME=MESSAGE",
                                                           help="this command fails with MESSAGE")] = None,
    deny_auth: Annotated[bool | None, typer.Option("--deny-auth/--allow-auth",
                                                   help="answer every sign-in with 401")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="remove this server's faults first")] = False,
) -> None:
    """Inject faults into one server of the lab (running or not; they apply at once)."""
    from psbridge.lab import faults
    from psbridge.lab.world import World, WorldError

    where = _state(state)
    try:
        names = World.load(where).server_names()
    except WorldError as e:
        err.print(f"{e} (start it with 'psbridge lab up')")
        raise typer.Exit(1) from None
    name = next((n for n in names if n.lower() == server.lower()), None)
    if name is None:
        err.print(f"the lab has no server {server!r} (servers: {', '.join(names)})")
        raise typer.Exit(2)
    knobs: dict[str, Any] = {}
    if drop_after is not None:
        knobs["drop_after"] = drop_after
    if delay is not None:
        knobs["delay"] = delay
    if fail_command:
        failing = {}
        for item in fail_command:
            command, sep, message = item.partition("=")
            if not (sep and command.strip()):
                err.print(f"--fail-command takes NAME=MESSAGE, not {item!r}")
                raise typer.Exit(2)
            failing[command.strip()] = message
        knobs["fail_commands"] = {**faults.read_faults(where, name).fail_commands, **failing}
    if deny_auth is not None:
        knobs["deny_auth"] = deny_auth
    if clear:
        faults.clear_faults(where, name)
    now = faults.set_faults(where, name, **knobs) if knobs else faults.read_faults(where, name)
    if not now.any:
        console.print(f"{name}: no faults")
        return
    parts = []
    if now.drop_after is not None:
        parts.append(f"drop after {now.drop_after} requests")
    if now.delay:
        parts.append(f"delay {now.delay:g} s")
    parts += [f"{k} fails: {v}" for k, v in now.fail_commands.items()]
    if now.deny_auth:
        parts.append("sign-in denied")
    console.print(f"{name}: " + "; ".join(parts))


@app.command()
def webapi(
    state: StateOpt = None,
    delay: Annotated[float | None, typer.Option("--delay", min=0,
                                                help="seconds added to every answer")] = None,
    drop_after: Annotated[int | None, typer.Option("--drop-after", min=0,
                                                   help="answer N requests, then drop the next")] = None,
    deny_auth: Annotated[bool | None, typer.Option("--deny-auth/--allow-auth",
                                                   help="answer every sign-in with 401")] = None,
    fail_request: Annotated[list[str] | None, typer.Option(
        "--fail-request", metavar="'METHOD SET=MESSAGE'",
        help="e.g. 'PATCH mailboxes=...': such requests fail with CRM's error and MESSAGE")] = None,
    expire_tokens: Annotated[bool, typer.Option(
        "--expire-tokens", help="refuse every token issued until now as expired")] = False,
    refuse_tokens: Annotated[bool | None, typer.Option("--refuse-tokens/--accept-tokens",
                                                       help="refuse every bearer token as expired")] = None,
    test_delay: Annotated[float | None, typer.Option("--test-delay", min=0,
                                                     help="seconds Test & Enable takes")] = None,
    allow_listed: Annotated[bool | None, typer.Option(
        "--allow-listed/--not-allow-listed",
        help="whether Exchange Online lets the tenant in (its allow-list since 1 Oct 2025)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="back to the defaults first")] = False,
) -> None:
    """Faults and settings of the CRM Web API twin (running or not; they apply at once)."""
    import json
    import time

    from psbridge.lab.webapi import KNOBS_FILE
    from psbridge.lab.webapi.knobs import WEBAPI, JsonKnobs

    knobs = JsonKnobs(_state(state) / KNOBS_FILE, WEBAPI)
    if clear:
        knobs.reset()
    values: dict[str, Any] = {}
    for name, value in (("delay", delay), ("drop_after", drop_after), ("deny_auth", deny_auth),
                        ("refuse_tokens", refuse_tokens), ("test_delay", test_delay),
                        ("allow_listed", allow_listed)):
        if value is not None:
            values[name] = value
    if expire_tokens:
        values["expire_tokens_before"] = time.time()
    if fail_request:
        failing = dict(knobs.get("fail_requests"))
        for item in fail_request:
            what, sep, message = item.partition("=")
            if not (sep and len(what.split()) == 2):
                err.print(f"--fail-request takes 'METHOD SET=MESSAGE', not {item!r}")
                raise typer.Exit(2)
            method, entity_set = what.split()
            failing[f"{method.upper()} {entity_set.lower()}"] = message
        values["fail_requests"] = failing
    now = knobs.set(**values) if values else knobs.snapshot()
    shown = {k: v for k, v in now.items() if k != "generation"}
    console.print(json.dumps(shown, indent=1, sort_keys=True), soft_wrap=True, markup=False)


@app.command(hidden=True)
def serve(
    state: StateOpt = None,
    servers: ServersOpt = 2,
    orgs: OrgsOpt = 2,
    legacy_servers: LegacyOpt = 0,
    no_cloud: NoCloudOpt = False,
    host: HostOpt = "127.0.0.1",
    webapi: WebApiOpt = None,
) -> None:
    """Serve the lab in this process until SIGTERM/SIGINT/Ctrl-Break or 'psbridge lab down'."""
    import os

    from psbridge.lab import background
    from psbridge.lab.orchestrator import Lab, LabError
    from psbridge.lab.world import WorldError

    where = _state(state)
    os.environ["PSBRIDGE_LAB_STATE"] = str(where)
    _check_webapi(webapi)
    lab = Lab(where, servers=servers, orgs=orgs, legacy_servers=legacy_servers, cloud=not no_cloud, host=host,
              webapi=webapi)
    try:
        background.serve(lab, on_ready=lambda c: print(f"lab ready (pid {c.pid})", flush=True))
    except (LabError, WorldError, OSError, ValueError) as e:
        err.print(str(e))
        raise typer.Exit(1) from None
