"""The inventory of a batch: one row per organization, checked whole before anything runs.

A partner keeps it as a CSV (one row per org) or a YAML file (shared defaults, deployments,
rows — or rows from a CSV beside it)::

    # fleet.yaml
    defaults:                               # every row's parameters start from these
      pfx_password: "keyring:psbridge/{customer}-{deployment}-pfx"
      client_secret: "keyring:psbridge/{customer}-{tenant}-secret"
    deployments:
      fabrikam-prod: {servers: ["CRM01=https://crm01.fabrikam.local:5986/wsman"]}
      wingtip: {file: wingtip.yaml}         # a deployment parameter file (relative to this one)
    orgs:                                   # or: orgs: fleet.csv
      - {customer: fabrikam, deployment: fabrikam-prod, organization: sales, tenant: fabrikam.onmicrosoft.com}
      - {customer: fabrikam, deployment: fabrikam-prod, organization: service, mailboxes: [all]}

In a CSV the columns ``customer, deployment, organization, tenant, zone, servers`` (servers
separated by ``;``) and ``deployment_file`` have these meanings; every other non-empty cell
is a parameter override, read as YAML (``365`` a number, ``[all]`` a list).

Text values may be templates over the row's ``{customer}``, ``{deployment}``, ``{organization}``,
``{tenant}`` and ``{zone}``, so one secret reference names every org's own secret. Each row's
parameters — defaults, then its deployment's, then its own — go through the runbook's schema
(:func:`psbridge.runbook.params.validate`); every problem is listed with the row it is in.
Rows that share a deployment must agree on what its deployment-wide steps take, since those
steps run once for all of them.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from psbridge.errors import ParameterError
from psbridge.runbook.definition import Runbook, Scope
from psbridge.runbook.formats import problems as format_problems
from psbridge.runbook.params import Checked, ParamsError, check, load_params
from psbridge.text import shown

# The row's own columns (the rest of a row are parameter overrides); and the template fields.
COLUMNS = ("customer", "deployment", "organization", "tenant", "zone", "servers", "deployment_file")
TEMPLATE_FIELDS = ("customer", "deployment", "organization", "tenant", "zone")
# Parameters that name the org itself: they differ between rows of one deployment by design.
PER_ORG = frozenset({"customer", "organization"})


class InventoryError(ParameterError):
    """An inventory that cannot be used: ``problems`` lists each, with its row."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{where}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


class _Row(BaseModel):
    """One row as written, before its parameters are merged and checked."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(min_length=1)
    deployment: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    organization: str = Field(min_length=1)
    tenant: str = ""
    zone: str = Field(default="", max_length=64, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?$")
    servers: list[str] = []
    deployment_file: str = ""
    overrides: dict[str, Any] = {}


class _Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: list[str] = []
    file: str = ""
    zone: str = ""
    parameters: dict[str, Any] = {}


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runbook: str | None = None
    defaults: dict[str, Any] = {}
    deployments: dict[str, _Deployment] = {}
    orgs: list[dict[str, Any]] | str


@dataclass(frozen=True)
class OrgEntry:
    """One organization of the batch, its parameters checked against the runbook."""

    row: int  # 1-based, as a person counts the rows (a CSV's header is row 0)
    customer: str
    deployment: str
    organization: str
    tenant: str
    zone: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.customer}/{self.organization}"


@dataclass
class Inventory:
    source: Path
    runbook: str | None
    orgs: list[OrgEntry]
    # What was read, as validated: written into the batch record (secrets are references).
    as_validated: dict[str, Any] = field(default_factory=dict)
    # Every org of the file, before --orgs chose some: each deployment's lead is its first org here.
    every: list[OrgEntry] = field(default_factory=list)
    # Parameters only the customer's other runbooks take, left out (``ignored.note()`` says which).
    ignored: Checked = field(default_factory=lambda: Checked({}))

    def lead_of(self, deployment: str) -> OrgEntry:
        return next(o for o in (self.every or self.orgs) if o.deployment == deployment)

    def deployments(self) -> dict[str, list[OrgEntry]]:
        """Each deployment's orgs in inventory order: the first leads (runs the deployment's steps)."""
        out: dict[str, list[OrgEntry]] = {}
        for org in self.orgs:
            out.setdefault(org.deployment, []).append(org)
        return out

    def select(self, pattern: str | None) -> Inventory:
        """The orgs whose ``customer/organization`` (or deployment) matches a shell-style pattern."""
        if not pattern:
            return self
        from fnmatch import fnmatchcase

        chosen = [o for o in self.orgs if any(fnmatchcase(x, pattern) for x in
                                              (o.key, o.organization, o.deployment, o.customer))]
        return Inventory(self.source, self.runbook, chosen, self.as_validated, self.every or self.orgs,
                         self.ignored)


def read_rows(path: Path) -> tuple[str | None, dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(runbook, defaults, deployments, rows) as written; InventoryError when the file is unreadable."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM in front of a CSV
    except FileNotFoundError:
        raise InventoryError(where, ["no such inventory file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(where, [f"cannot be read: {e}"]) from None
    if path.suffix.lower() == ".csv":
        return None, {}, {}, _csv_rows(where, text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InventoryError(where, [f"not valid YAML: {e}"]) from None
    if isinstance(data, list):
        data = {"orgs": data}
    if not isinstance(data, dict):
        raise InventoryError(where, ["an inventory is a mapping with orgs (and defaults, deployments), "
                                     "or a list of rows"])
    try:
        doc = _File.model_validate(data)
    except PydanticError as e:
        raise InventoryError(where, [_pydantic(err) for err in e.errors()]) from None
    rows = doc.orgs
    if isinstance(rows, str):
        csv_path = (path.parent / rows)
        _, _, _, rows = read_rows(csv_path)
    deployments = {name: d.model_dump() for name, d in doc.deployments.items()}
    return doc.runbook, dict(doc.defaults), deployments, rows


def _csv_rows(where: str, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise InventoryError(where, ["the CSV has no header row"])
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, cells in enumerate(reader, start=1):
        if None in cells:
            problems.append(f"row {number}: more cells than the header has columns")
            continue
        row: dict[str, Any] = {}
        for name, cell in cells.items():
            name, cell = (name or "").strip(), (cell or "").strip()
            if not cell:
                continue
            if name == "servers":
                row[name] = [s.strip() for s in cell.split(";") if s.strip()]
            elif name in COLUMNS:
                row[name] = cell
            else:
                try:
                    row[name] = yaml.safe_load(cell)
                except yaml.YAMLError:
                    row[name] = cell
        rows.append(row)
    if problems:
        raise InventoryError(where, problems)
    return rows


def _pydantic(err: Any) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _render(value: Any, fields: dict[str, str], where: str, problems: list[str]) -> Any:
    """A template's text with the row's fields; a field it does not know is a problem."""
    if isinstance(value, list):
        return [_render(v, fields, where, problems) for v in value]
    if not isinstance(value, str) or "{" not in value:
        return value
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as e:
        problems.append(f"{where}: not a template ({e}); write {{{{ and }}}} for braces")
        return value
    unknown = [n for n in names if n not in fields]
    if unknown:
        problems.append(f"{where}: unknown template field {{{unknown[0]}}} (known: "
                        + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS) + ")")
        return value
    return value.format_map(fields)


def load(path: str | Path, book: Runbook) -> Inventory:
    """Read and check an inventory whole; InventoryError lists every problem with its row."""
    path = Path(path)
    runbook, defaults, deployments, raw_rows = read_rows(path)
    problems: list[str] = []
    # Parameters of the customer's other runbooks the rows give (one inventory for the lifecycle).
    ignored: dict[str, list[str]] = {}
    orgs: list[OrgEntry] = []
    dep_files: dict[str, dict[str, Any]] = {}

    def deployment_file(ref: str, where: str) -> dict[str, Any]:
        target = (path.parent / ref).resolve()
        key = str(target)
        if key not in dep_files:
            try:
                dep_files[key] = load_params(target)
            except ParamsError as e:
                problems.append(f"{where}: deployment file {ref}: " + "; ".join(e.problems))
                dep_files[key] = {}
        return dep_files[key]

    for number, raw in enumerate(raw_rows, start=1):
        if not isinstance(raw, dict):
            problems.append(f"row {number}: a row is a mapping of column: value, got {shown(raw)}")
            continue
        own = {k: raw[k] for k in COLUMNS if k in raw}
        own["overrides"] = {**(raw.get("overrides") or {}),
                            **{k: v for k, v in raw.items() if k not in COLUMNS and k != "overrides"}}
        try:
            row = _Row.model_validate(own)
        except PydanticError as e:
            label = f"row {number}" + (f" ({raw.get('customer')}/{raw.get('organization')})"
                                       if raw.get("organization") else "")
            problems += [f"{label}: {_pydantic(err)}" for err in e.errors()]
            continue
        label = f"row {number} ({row.customer}/{row.organization})"
        dep = deployments.get(row.deployment) or {}
        zone = row.zone or str(dep.get("zone") or "")
        tenant = row.tenant or str(row.overrides.get("tenant") or dep.get("parameters", {}).get("tenant")
                                   or defaults.get("tenant") or "")
        fields = {"customer": row.customer, "deployment": row.deployment, "organization": row.organization,
                  "tenant": tenant or row.deployment, "zone": zone}
        merged: dict[str, Any] = {}
        for layer, layer_where in ((defaults, "defaults"),):
            merged.update({k: _render(v, fields, f"{label}: {layer_where}.{k}", problems)
                           for k, v in layer.items()})
        dep_ref = row.deployment_file or str(dep.get("file") or "")
        if dep_ref:
            merged.update(deployment_file(dep_ref, label))
        merged.update({k: _render(v, fields, f"{label}: deployments.{row.deployment}.{k}", problems)
                       for k, v in (dep.get("parameters") or {}).items()})
        servers = row.servers or list(dep.get("servers") or [])
        if servers:
            merged["servers"] = servers
        merged.update({k: _render(v, fields, f"{label}: {k}", problems) for k, v in row.overrides.items()})
        merged["customer"], merged["organization"] = row.customer, row.organization
        if row.tenant:
            merged["tenant"] = row.tenant
        try:
            checked = check(book, merged, where=label)
        except ParamsError as e:
            problems += [f"{label}: {p}" for p in e.problems]
            continue
        params = checked.params
        for name, books in checked.ignored.items():
            ignored.setdefault(name, books)
        lab = str(params.get("lab") or "")
        if lab and lab.lower() != "auto":
            # The workers read it too, from wherever they were started: a path from here, whole.
            params["lab"] = str(Path(lab).expanduser().resolve())
        orgs.append(OrgEntry(number, row.customer, row.deployment, row.organization, tenant, zone, params))
    if not raw_rows:
        problems.append("no organizations: the inventory has no rows")
    for dup in _duplicates([o.key for o in orgs]):
        rows = ", ".join(str(o.row) for o in orgs if o.key == dup)
        problems.append(f"rows {rows}: {dup} is listed more than once")
    problems += _deployment_agreement(book, orgs)
    for name in deployments:
        if not any(o.deployment == name for o in orgs) and not problems:
            problems.append(f"deployments.{name}: no row names this deployment")
    if problems:
        raise InventoryError(str(path), problems)
    return Inventory(path, runbook, orgs, {
        "source": str(path), "runbook": runbook, "defaults": defaults, "deployments": deployments,
        "ignored": ignored,
        "orgs": [{"row": o.row, "customer": o.customer, "deployment": o.deployment,
                  "organization": o.organization, "tenant": o.tenant, "zone": o.zone, "parameters": o.params}
                 for o in orgs]}, ignored=Checked({}, ignored))


def _duplicates(keys: list[str]) -> list[str]:
    return [k for k in dict.fromkeys(keys) if keys.count(k) > 1]


def deployment_parameters(book: Runbook) -> list[str]:
    """What the state-changing deployment- and tenant-wide steps take: one value per deployment."""
    names: list[str] = []
    for step in book.steps:
        if step.scope != Scope.ORGANIZATION and not step.read_only:
            names += [n for n in book.step_parameters(step) if n not in PER_ORG]
    return list(dict.fromkeys(names))


def deployment_identity(params: dict[str, Any]) -> str:
    """What a deployment is, whatever an inventory calls it: its lab, or its servers' addresses."""
    lab = str(params.get("lab") or "")
    servers = sorted(str(s).split("=", 1)[-1].lower() for s in params.get("servers") or [])
    return (f"lab {lab}" if lab else "") + (" " if lab and servers else "") + ";".join(servers)


def _deployment_agreement(book: Runbook, orgs: list[OrgEntry]) -> list[str]:
    """Rows of one deployment that would give its once-run steps different inputs."""
    problems = []
    names = deployment_parameters(book)
    groups: dict[str, list[OrgEntry]] = {}
    for o in orgs:
        groups.setdefault(o.deployment, []).append(o)
    for dep, members in groups.items():
        lead = members[0]
        for other in members[1:]:
            if other.customer != lead.customer:
                problems.append(f"row {other.row} ({other.key}): deployment {dep} belongs to customer "
                                f"{lead.customer} (row {lead.row}), not {other.customer}")
            differ = [n for n in names if other.params.get(n) != lead.params.get(n)]
            if differ:
                problems.append(
                    f"row {other.row} ({other.key}): deployment {dep}'s steps run once for all its orgs, "
                    f"but this row differs from row {lead.row} in {', '.join(differ)}")
    # Two names for one deployment would let two runs change its servers at once.
    seen: dict[str, str] = {}
    for dep, members in groups.items():
        ident = deployment_identity(members[0].params)
        if not ident:
            continue
        if ident in seen and seen[ident] != dep:
            problems.append(f"deployments {seen[ident]} and {dep} name the same servers: one deployment, "
                            "one name (its steps must never run twice at once)")
        seen.setdefault(ident, dep)
    for o in orgs:
        if o.tenant:
            problems += [f"row {o.row} ({o.key}): {p}" for p in format_problems("tenant", o.tenant, "tenant")]
    return problems
