"""Step notebooks as code: the percent-format ``.py`` is the source, the ``.ipynb`` its stored twin.

The ``.py`` (jupytext's percent format) is what ruff and mypy check and what a diff shows; the
``.ipynb`` beside it, stored without outputs, is what papermill executes and JupyterLab opens.
Both carry jupytext's pairing (``formats: ipynb,py:percent``), so with jupytext in JupyterLab an
edit on either side is written to the other. :func:`sync` does the same from the command line
(``psbridge notebooks sync``) and also writes each notebook's ``parameters`` cell from the
runbook's YAML (:func:`psbridge.runbook.schema.parameters_cell`); :func:`check` lists what is out
of step, and a test runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psbridge.runbook.definition import DefinitionError, Runbook, StepSpec
from psbridge.runbook.kernel import DISPLAY_NAME, KERNEL_NAME
from psbridge.runbook.schema import parameters_cell

PAIRING = "ipynb,py:percent"
# The kernel psbridge registers (psbridge.runbook.kernel): JupyterLab opens a step in psbridge's
# own interpreter.
KERNELSPEC = {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}


def source_path(book: Runbook, step: StepSpec) -> Path:
    return book.notebook_path(step).with_suffix(".py")


def _parameters_cell(nb: Any) -> Any:
    for cell in nb.cells:
        if "parameters" in (cell.metadata.get("tags") or []):
            return cell
    return None


def _from_source(book: Runbook, step: StepSpec) -> Any:
    """The notebook as its source says, with the parameters cell the YAML says."""
    import jupytext

    nb = jupytext.read(source_path(book, step), fmt="py:percent")
    cell = _parameters_cell(nb)
    if cell is None:
        raise DefinitionError(f"{source_path(book, step)} has no cell tagged 'parameters'")
    cell.source = parameters_cell(book, step)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.setdefault("jupytext", {})["formats"] = PAIRING
    # The .py header names no jupytext version, so a newer jupytext writes the same file.
    nb.metadata["jupytext"]["notebook_metadata_filter"] = "-jupytext.text_representation"
    nb.metadata["jupytext"].pop("text_representation", None)
    for i, c in enumerate(nb.cells):
        # Stable ids keep the stored notebooks byte-identical from one sync to the next.
        c["id"] = f"{step.stem}-{i:02d}"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
        c.metadata.pop("lines_to_next_cell", None)
    return nb


def _texts(book: Runbook, step: StepSpec) -> tuple[str, str]:
    """(the .py text, the .ipynb text) as they should be stored."""
    import jupytext
    import nbformat

    nb = _from_source(book, step)
    ipynb = nbformat.writes(nb) + "\n"
    py = jupytext.writes(nb, fmt="py:percent")
    return py, ipynb


def sync(book: Runbook) -> list[Path]:
    """Write every step's parameters cell from the YAML, and its .ipynb from its .py; the files changed."""
    changed = []
    for step in book.steps:
        py, ipynb = _texts(book, step)
        for path, text in ((source_path(book, step), py), (book.notebook_path(step), ipynb)):
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                changed.append(path)
    return changed


def check(book: Runbook) -> list[str]:
    """What is out of step: a .py whose parameters cell is not the YAML's, a .ipynb not its .py's twin."""
    problems = []
    for step in book.steps:
        src = source_path(book, step)
        if not src.is_file():
            problems.append(f"{step.id}: no source {src.name} beside {step.notebook}")
            continue
        py, ipynb = _texts(book, step)
        if src.read_text(encoding="utf-8") != py:
            problems.append(f"{step.id}: {src.name} differs from what its runbook.yaml says (parameters "
                            "cell, metadata): run psbridge notebooks sync")
        path = book.notebook_path(step)
        if not path.is_file() or path.read_text(encoding="utf-8") != ipynb:
            problems.append(f"{step.id}: {step.notebook} is not the twin of {src.name}: run psbridge "
                            "notebooks sync")
    return problems
