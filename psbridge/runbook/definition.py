"""A runbook definition: the ordered steps, the parameter schema and the facts between steps.

The one source of a runbook, read from its ``runbook.yaml`` (found by name through
:mod:`psbridge.runbook.registry`)::

    name: exchange-online-s2s
    notebooks: .                       # relative to the YAML file
    groups:
      connection: [lab, servers, winrm_user, winrm_password]
    parameters:
      organization: {type: str, required: true, format: organization, interactive: contoso}
      client_secret: {type: secret, writable: true, required: true}
    facts:
      thumbprint: {type: str, help: SHA-1 thumbprint of the S2S certificate}
    steps:
      - {id: certificate, notebook: 10-certificate.ipynb, scope: deployment,
         parameters: [organization, "@connection"], produces: [thumbprint]}
      - {id: install-certificate, notebook: 20-install-certificate.ipynb, scope: deployment,
         parameters: ["@connection"], consumes: [thumbprint]}
    summary:                           # optional (s2s-health's, shortened): facts a batch summary shows
      columns: {verdict: health_verdict, days_to_certificate_expiry: days_to_certificate_expiry}
      colour: verdict                  # rows coloured and counted by it on the batch's page
      sort: days_to_certificate_expiry # the page's order when it opens

A step's notebook takes the parameters it lists (``@group`` for a group), the facts it consumes
and ``plan``; its ``parameters`` cell is derived from this file (:mod:`psbridge.runbook.schema`).
A step's ``scope`` says what it works on — the ``deployment`` (its servers, its configuration
database), the ``tenant`` (Entra ID), or one ``organization`` — so a batch runs it once per
deployment, tenant or organization.

The definition checks itself when loaded: step ids unique, every fact produced by one step and
consumed only after it, every parameter a step names declared, every notebook present.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from psbridge.errors import RunbookError

ParamType = Literal["str", "int", "bool", "list", "secret"]
FactType = Literal["str", "int", "bool", "list", "dict", "secret"]

# Parameters every step notebook accepts besides the runbook's own.
MODE_PARAMETER = "plan"


class DefinitionError(RunbookError):
    """A runbook definition that cannot be used, or a step that is not in it."""


class Scope(enum.StrEnum):
    DEPLOYMENT = "deployment"
    TENANT = "tenant"
    ORGANIZATION = "organization"


class ParameterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ParamType = "str"
    required: bool = False
    default: Any = None
    # The value a notebook opened on its own starts with (its parameters cell); the default if unset.
    interactive: Any = None
    help: str = ""
    choices: list[str] | None = None
    min: int | None = None
    max: int | None = None
    pattern: str | None = None
    # What the text must be (psbridge.runbook.formats: organization, windows-path, tenant, ...);
    # for a list, what each item must be.
    format: str | None = None
    max_length: int | None = None
    # A secret a step creates and writes to this reference (so env: will not do).
    writable: bool = False

    @property
    def secret(self) -> bool:
        return self.type == "secret"

    @model_validator(mode="after")
    def _known_format(self) -> ParameterSpec:
        from psbridge.runbook.formats import FORMATS

        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r} (known: {', '.join(sorted(FORMATS))})")
        return self


class FactSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FactType = "str"
    help: str = ""


class SummarySpec(BaseModel):
    """Which recorded facts a batch's summary carries as columns, and how its page shows them.

    Declared by the runbook because only it knows which of its facts say how an org is: the
    batch record stays the same for every runbook, and a runbook without this section gets the
    plain summary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Column name -> the fact it shows, in the order the columns appear.
    columns: dict[str, str] = {}
    # The column whose values colour each row and are counted at the top of the page.
    colour: str | None = None
    # The column the page is sorted by when it opens (ascending; rows without a value last).
    sort: str | None = None


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    notebook: str
    title: str = ""
    scope: Scope = Scope.ORGANIZATION
    # The runbook parameters its notebook takes (``@name`` for a group), as written in the YAML.
    parameters: list[str] = []
    produces: list[str] = []
    consumes: list[str] = []
    # A step that only reads (checks, summary): it never has anything to change.
    read_only: bool = False
    # It calls the tenant's Microsoft Graph: in a batch it runs inside a lease of the tenant's Graph
    # semaphore and waits out a Retry-After another org's step was told (psbridge.batch.graphgate).
    graph: bool = False

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


class Runbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    version: str = "1"
    notebooks: str = "."
    groups: dict[str, list[str]] = {}
    parameters: dict[str, ParameterSpec]
    facts: dict[str, FactSpec] = {}
    steps: list[StepSpec]
    summary: SummarySpec = SummarySpec()
    # Set by load(): where the YAML was and its hash (recorded in every manifest).
    source: Path | None = None
    sha256: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        problems = []
        ids = [s.id for s in self.steps]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            problems.append(f"step id {dup!r} is used twice")
        produced: dict[str, str] = {}
        for step in self.steps:
            for fact in step.consumes:
                if fact not in self.facts:
                    problems.append(f"step {step.id} consumes undeclared fact {fact!r}")
                elif fact not in produced:
                    problems.append(f"step {step.id} consumes {fact!r} before any step produces it")
            for fact in step.produces:
                if fact not in self.facts:
                    problems.append(f"step {step.id} produces undeclared fact {fact!r}")
                elif fact in produced:
                    problems.append(f"fact {fact!r} is produced by both {produced[fact]} and {step.id}")
                produced.setdefault(fact, step.id)
        for step in self.steps:
            for name in step.parameters:
                if name.startswith("@") and name[1:] not in self.groups:
                    problems.append(f"step {step.id} names an undeclared group {name!r}")
                elif not name.startswith("@") and name not in self.parameters:
                    problems.append(f"step {step.id} takes an undeclared parameter {name!r}")
        for group, names in self.groups.items():
            problems += [f"group {group} names an undeclared parameter {n!r}" for n in names
                         if n not in self.parameters]
        problems += [f"summary column {col} shows an undeclared fact {fact!r}"
                     for col, fact in self.summary.columns.items() if fact not in self.facts]
        for what, col in (("colour", self.summary.colour), ("sort", self.summary.sort)):
            if col is not None and col not in self.summary.columns:
                problems.append(f"summary {what}: {col!r} is not one of its columns")
        clash = sorted(set(self.facts) & set(self.parameters))
        if clash:
            problems.append(f"names used both as parameter and fact: {', '.join(clash)}")
        if MODE_PARAMETER in self.parameters or MODE_PARAMETER in self.facts:
            problems.append(f"{MODE_PARAMETER!r} is reserved for the run mode")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def notebook_dir(self) -> Path:
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.notebooks).resolve()

    def notebook_path(self, step: StepSpec) -> Path:
        return self.notebook_dir / step.notebook

    def step(self, ref: str) -> StepSpec:
        """A step by id, notebook stem (``10-certificate``) or number prefix (``10``)."""
        for s in self.steps:
            if ref in (s.id, s.stem, s.notebook) or s.stem.split("-", 1)[0] == ref:
                return s
        known = ", ".join(s.id for s in self.steps)
        raise DefinitionError(f"no step {ref!r} in runbook {self.name} (steps: {known})")

    def index(self, ref: str) -> int:
        return self.steps.index(self.step(ref))

    @property
    def secret_parameters(self) -> list[str]:
        return [n for n, p in self.parameters.items() if p.secret]

    def step_parameters(self, step: StepSpec) -> list[str]:
        """The runbook parameters a step's notebook takes, groups expanded, in the order written."""
        names: list[str] = []
        for name in step.parameters:
            names += self.groups.get(name[1:], []) if name.startswith("@") else [name]
        return list(dict.fromkeys(names))


def load(path: str | Path) -> Runbook:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DefinitionError(f"no runbook definition at {path}") from None
    book = _parsed(path.resolve(), raw, path)
    missing = [s.notebook for s in book.steps if not book.notebook_path(s).is_file()]
    if missing:
        raise DefinitionError(f"{path}: notebooks not found in {book.notebook_dir}: {', '.join(missing)}")
    return book


@functools.lru_cache(maxsize=32)
def _parsed(source: Path, raw: bytes, path: Path) -> Runbook:
    """The runbook these bytes at ``source`` (resolved; ``path`` as the caller named it, for the
    messages) define, checked; parsed once a process for the same bytes (a batch loads its runbook
    for every organization; YAML and the model's checks take about 20 ms). A frozen model: every
    caller may share it."""
    try:
        # libyaml's loader where PyYAML has it: a tenth of the pure-Python one's time.
        data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        raise DefinitionError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{path} does not hold a runbook definition (a mapping)")
    try:
        book = Runbook(**data)
    except ValidationError as e:
        raise DefinitionError(f"{path}: " + "; ".join(_messages(e))) from None
    return book.model_copy(update={"source": source, "sha256": hashlib.sha256(raw).hexdigest()})


def _messages(e: ValidationError) -> list[str]:
    out = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


DEFAULT_RUNBOOK = "exchange-online-s2s"
