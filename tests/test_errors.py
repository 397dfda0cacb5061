"""The one error tree (:mod:`psbridge.errors`), checked against the code rather than trusted.

- every exception class defined anywhere in the package derives from ``PsbridgeError``, save
  the few listed in ``NOT_ROOTED`` with the reason;
- the tree drawn in ``psbridge.errors``' docstring is the tree the classes form: the same
  classes, each with exactly the bases drawn;
- the names callers have always imported a class by still give that very class;
- no domain failure raises a builtin (``ValueError``, ``RuntimeError``, ...) outside the
  runbook engine, save the raises listed in ``BUILTIN_RAISES`` with the reason.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

import psbridge
from psbridge import errors
from psbridge.errors import PsbridgeError

PACKAGE = Path(psbridge.__file__).parent

# Exception classes outside the tree, by "module.QualName": the reason.
NOT_ROOTED: dict[str, str] = {}

# Builtin exceptions that stand for a domain failure when psbridge raises them itself.
BUILTINS = ("Exception", "RuntimeError", "ValueError", "KeyError", "LookupError", "IndexError",
            "TypeError", "AttributeError", "NotImplementedError", "OSError", "TimeoutError")

# Raises of those builtins that are right as they are, by (file, enclosing function): the reason.
BUILTIN_RAISES: dict[tuple[str, str], str] = {
    ("runbook/definition.py", "ParameterSpec._known_format"):
        "pydantic's protocol: a validator raises ValueError, pydantic gathers it into its own error",
    ("runbook/definition.py", "Runbook._consistent"):
        "pydantic's protocol: a validator raises ValueError; load() turns it into DefinitionError",
    ("runbook/engine.py", "WarmKernelEngine.execute_managed_notebook"):
        "a programming error: the engine called without a kernel (TypeError)",
    ("secrets.py", "Secret.__init__"):
        "a programming error: a Secret wraps a str (TypeError, as Python's own)",
    ("secrets.py", "Secret.__reduce__"):
        "pickle's protocol: an object that cannot be pickled raises TypeError",
    ("remote/command.py", "as_statements"):
        "a programming error: keyword parameters given with a pipeline (TypeError)",
    ("remote/convert.py", "PSRecord.__getattr__"):
        "Python's attribute protocol: a missing attribute is AttributeError",
    ("remote/convert.py", "_NoCipher.decrypt"):
        "psrpcore's crypto-provider protocol; to_plain catches the ValueError and keeps the value masked",
    ("remote/convert.py", "_NoCipher.encrypt"):
        "psrpcore's crypto-provider protocol; never called, since output is never sent back",
    ("remote/profile.py", "ConnectionProfile._password_is_a_reference"):
        "pydantic's validator protocol: pydantic gathers the ValueError into its ValidationError, "
        "which _checked turns into ProfileError",
    ("remote/profile.py", "ConnectionProfile._refuse_clear_text"):
        "pydantic's validator protocol (as _password_is_a_reference)",
    ("lab/commands/objects.py", "get_property"):
        "the emulated objects' lookup protocol: KeyError for a missing property, which Select-Object "
        "turns into its own error record",
    ("lab/webapi/records.py", "_getter.get"):
        "the OData evaluator's lookup protocol: KeyError for a property the entity lacks, which the "
        "query turns into CRM's own unknown-property error",
    ("runbook/kernel.py", "ReadyClient._async_wait_for_ready"):
        "jupyter_client's protocol: wait_for_ready raises RuntimeError, which its callers catch",
    ("lab/winrm/host.py", "Shell._run_for"):
        "a pipeline id the WinRM twin does not know: its service answers a SOAP fault",
    ("lab/winrm/records.py", "host_information_message.colour"):
        "a lab defect (a colour name that is not a ConsoleColor), ended by the host's last-resort handler",
    ("lab/winrm/auth.py", "parse_accounts"):
        "the lab's account table, written by the lab itself: a name that is not DOMAIN\\user is a lab "
        "defect, which 'psbridge lab up' reports",
    ("lab/winrm/auth.py", "NegotiateAcceptor.unseal"):
        "a sealed message that does not decode: the WinRM HTTP handler ends the session (401) on any "
        "unseal failure",
    ("lab/winrm/auth.py", "_boundary"): "as NegotiateAcceptor.unseal",
    ("lab/winrm/__init__.py", "start_endpoint"): "a programming error in the EndpointSpec the lab builds",
    ("pfxmac.py", "_tlv"):
        "a PFX structure the MAC reader does not read: password_verifies answers None for it, and the "
        "caller opens the file with OpenSSL, which names what is wrong",
    ("pfxmac.py", "_mac_parts"): "as _tlv",
}


# --- what the package defines ------------------------------------------------------------------


def _modules() -> list[ModuleType]:
    found = [psbridge]
    for info in pkgutil.walk_packages(psbridge.__path__, "psbridge."):
        found.append(importlib.import_module(info.name))
    return found


def _defined_exceptions() -> list[type[BaseException]]:
    """Every exception class, once, in the module that defines it (re-exports skipped)."""
    seen: dict[int, type[BaseException]] = {}
    for module in _modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                seen[id(obj)] = obj
    return sorted(seen.values(), key=_name)


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


DEFINED = _defined_exceptions()


def test_the_walk_finds_the_tree_and_the_lab() -> None:
    names = {_name(c) for c in DEFINED}
    assert {"psbridge.errors.PsbridgeError", "psbridge.errors.CommandFailed",
            "psbridge.lab.runspace.ScriptExit", "psbridge.remote.session._Dropped"} <= names


@pytest.mark.parametrize("cls", DEFINED, ids=_name)
def test_every_exception_class_derives_from_psbridge_error(cls: type[BaseException]) -> None:
    if _name(cls) in NOT_ROOTED:
        assert not issubclass(cls, PsbridgeError), f"{_name(cls)} is in the tree now: drop it from NOT_ROOTED"
        return
    assert issubclass(cls, PsbridgeError), f"{_name(cls)} derives from {cls.__mro__[1:]}, not PsbridgeError"


def test_not_rooted_lists_only_classes_that_exist() -> None:
    assert set(NOT_ROOTED) <= {_name(c) for c in DEFINED}


# --- the tree in the docstring -----------------------------------------------------------------

# "│   ├── Name [Extra, Bases]   what it is", four characters a level.
_LINE = re.compile(r"^(?P<branch>(?:[│ ]   |[├└]── )*)(?P<name>\w+)"
                   r"(?: \[(?P<extra>[^\]]+)\])?(?:\s+(?P<what>.*))?$")
_WHERE = re.compile(r"^\(in (?P<module>psbridge(?:\.\w+)+)\)")


def _drawn_tree() -> list[tuple[int, str, list[str], str]]:
    """(depth, name, further bases, module) of each line of the drawn tree."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    rows = []
    for raw in block.splitlines():
        line = raw.removeprefix("    ")
        m = _LINE.match(line)
        assert m, f"not a line of the tree: {raw!r}"
        where = _WHERE.match(m.group("what") or "")
        extra = [e.strip() for e in (m.group("extra") or "").split(",") if e.strip()]
        rows.append((len(m.group("branch")) // 4, m.group("name"), extra,
                     where.group("module") if where else "psbridge.errors"))
    return rows


def _resolve(name: str) -> type:
    found = getattr(builtins, name, None) or getattr(errors, name, None)
    assert isinstance(found, type), f"{name} is neither a builtin nor in psbridge.errors"
    return found


def test_the_drawn_tree_is_the_tree_the_classes_form() -> None:
    rows = _drawn_tree()
    assert rows[0][:2] == (0, "PsbridgeError") and PsbridgeError.__bases__ == (Exception,)
    parents: list[type] = []
    drawn: list[type] = []
    for depth, name, extra, module in rows:
        cls = getattr(importlib.import_module(module), name, None)
        assert isinstance(cls, type), f"{module} has no class {name}"
        assert cls.__module__ == module, f"{name} is drawn in {module} but defined in {cls.__module__}"
        assert depth <= len(parents), f"{name} is drawn below a line it does not follow"
        del parents[depth:]
        if parents:
            wanted = (parents[-1], *(_resolve(e) for e in extra))
            assert cls.__bases__ == wanted, f"{name}: drawn with bases {wanted}, defined with {cls.__bases__}"
        parents.append(cls)
        drawn.append(cls)
    assert len(set(drawn)) == len(drawn), "a class is drawn twice"
    public = {c for c in DEFINED if issubclass(c, PsbridgeError) and not c.__name__.startswith("_")}
    missing = sorted(_name(c) for c in public - set(drawn))
    assert not missing, f"in the tree but not drawn in psbridge.errors' docstring: {missing}"


# --- where callers import from -----------------------------------------------------------------

LEGACY = [
    ("psbridge.remote", ["AuthenticationFailed", "BridgeError", "CommandError", "CommandFailed",
                         "CommandTimeout", "ConnectError", "ConnectionLost", "ProfileError", "ScriptFailed",
                         "ScriptNotFound", "TransferError", "UnsupportedScript", "ValidationError"]),
    ("psbridge.remote.errors", ["BridgeError", "CommandFailed", "ConnectionLost", "ScriptFailed",
                                "TransferError", "ValidationError"]),
    ("psbridge.secrets", ["SecretError"]),
    ("psbridge.files", ["LockTimeout"]),
    ("psbridge.certs", ["CertificateError"]),
    ("psbridge.cloud", ["GraphError", "SignInError", "TenantLookupError"]),
    ("psbridge.cloud.graph", ["GraphError"]),
    ("psbridge.cloud.signin", ["SignInError"]),
    ("psbridge.cloud.tenant", ["TenantLookupError"]),
    ("psbridge.crm", ["PrerequisiteFailed"]),
    ("psbridge.crm.prerequisites", ["PrerequisiteFailed"]),
    ("psbridge.lab.config", ["LabConfigError"]),
    ("psbridge.lab.orchestrator", ["LabError"]),
    ("psbridge.lab.world", ["WorldError"]),
]


@pytest.mark.parametrize(("module", "names"), LEGACY, ids=[m for m, _ in LEGACY])
def test_classes_are_still_importable_where_they_were(module: str, names: list[str]) -> None:
    loaded = importlib.import_module(module)
    for name in names:
        assert getattr(loaded, name) is getattr(errors, name), f"{module}.{name} is a copy"


def test_builtin_compatibility_where_callers_catch_builtins() -> None:
    # Input checks were caught as ValueError, a lab lookup as KeyError, a lock wait as TimeoutError.
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.ValidationError, errors.BridgeError)
    assert issubclass(errors.RecordError, ValueError) and issubclass(errors.LockTimeout, TimeoutError)
    assert issubclass(errors.NotInLab, KeyError) and issubclass(errors.NotFoundInTenant, LookupError)
    # ...but says its sentence, not KeyError's quoted key.
    assert str(errors.NotInLab("the lab has no server 'CRM09'")) == "the lab has no server 'CRM09'"


# --- no builtin for a domain failure -----------------------------------------------------------


def _builtin_raises_in(source: str, rel: str) -> dict[tuple[str, str], list[str]]:
    """(file, enclosing function) -> the builtins raised there, line by line."""
    found: dict[tuple[str, str], list[str]] = {}

    def visit(node: ast.AST, where: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, [*where, child.name])
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                target = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(target, ast.Name) and target.id in BUILTINS:
                    found.setdefault((rel, ".".join(where)), []).append(f"line {child.lineno}: {target.id}")
            visit(child, where)

    visit(ast.parse(source), [])
    return found


def _builtin_raises() -> dict[tuple[str, str], list[str]]:
    """Every builtin raised in psbridge (the step notebooks' sources aside: they raise through steps)."""
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if not rel.startswith("runbooks/"):
            found.update(_builtin_raises_in(path.read_text(encoding="utf-8"), rel))
    return found


def test_the_raise_scan_sees_every_form() -> None:
    source = (
        "class A:\n    def f(self):\n        def inner():\n            raise ValueError('x')\n\n"
        "def g():\n    try:\n        pass\n    except OSError:\n        raise KeyError from None\n\n"
        "def h():\n    raise\n\n"
        "raise RuntimeError('at import')\n"
    )
    assert set(_builtin_raises_in(source, "x.py")) == {("x.py", "A.f.inner"), ("x.py", "g"), ("x.py", "")}


def test_no_builtin_is_raised_for_a_domain_failure() -> None:
    found = _builtin_raises()
    unexplained = {k: v for k, v in found.items() if k not in BUILTIN_RAISES}
    assert not unexplained, f"raise a psbridge.errors class (or say why not in BUILTIN_RAISES): {unexplained}"
    stale = sorted(set(BUILTIN_RAISES) - set(found))
    assert not stale, f"BUILTIN_RAISES lists raises that are gone: {stale}"
