"""The ``psbridge`` papermill engine: an executed notebook carries papermill's own metadata.

A notebook runs through ``papermill.execute_notebook(..., engine_name="psbridge")`` in a warm kernel
of a :class:`~psbridge.runbook.warm.KernelPool`, as the runner runs a step; each cell's start, end,
duration and status are what papermill's own engine writes (the duration is taken without
dateutil's parser, from the same two times).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import pytest
from papermill.exceptions import PapermillExecutionError

from psbridge.runbook import zygote
from psbridge.runbook.engine import ENGINE_NAME
from psbridge.runbook.kernel import KERNEL_NAME, kernel_manager_class
from psbridge.runbook.warm import KernelPool


def _notebook(path: Path, *bodies: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (psbridge)",
                                 "language": "python"}
    parameters = nbformat.v4.new_code_cell("pause: float = 0.0")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# a step"), parameters,
                *(nbformat.v4.new_code_cell(b) for b in bodies)]
    nbformat.write(nb, path)
    return path


def _execute(path: Path, tmp_path: Path, **parameters: Any) -> Any:
    forked = zygote.SUPPORTED

    def manager_for(number: int) -> tuple[Any, Path | None]:
        manager = kernel_manager_class({}, tmp_path / "kernels.log", forked=forked)(kernel_name=KERNEL_NAME)
        return manager, None

    with KernelPool(manager_for, ahead=1, needed=1) as pool:
        kernel = pool.take()
        try:
            return pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters=parameters,
                                       engine_name=ENGINE_NAME, kernel=kernel, kernel_name=KERNEL_NAME,
                                       progress_bar=False, cwd=str(tmp_path))
        finally:
            pool.discard(kernel)


def _times(cell: Any) -> tuple[dt.datetime, dt.datetime, float]:
    meta = cell.metadata.papermill
    return (dt.datetime.fromisoformat(meta["start_time"]), dt.datetime.fromisoformat(meta["end_time"]),
            meta["duration"])


def test_each_cell_has_papermills_times_and_status(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "step.ipynb", "import time\ntime.sleep(pause)\nprint('slept')",
                     "from IPython.display import HTML\nHTML('<b>done</b>')")
    nb = _execute(path, tmp_path, pause=0.2)
    assert [c.metadata.get("tags") for c in nb.cells][2] == ["injected-parameters"]
    for cell in nb.cells:
        started, ended, duration = _times(cell)
        assert started <= ended
        assert duration == (ended - started).total_seconds()
        assert cell.metadata.papermill["status"] == "completed"
        assert cell.metadata.papermill["exception"] is False
    slept = nb.cells[3]
    assert _times(slept)[2] >= 0.2
    assert slept.outputs[0]["text"] == "slept\n"
    assert nb.cells[4].outputs[0]["data"]["text/html"] == "<b>done</b>"
    nbformat.validate(nb)
    # What papermill wrote is what it returned.
    written = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert [c.metadata.papermill for c in written.cells] == [c.metadata.papermill for c in nb.cells]


def test_a_failing_cell_has_its_duration_and_the_rest_stay_pending(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "step.ipynb", "raise RuntimeError('the step stops here')", "x = 1")
    with pytest.raises(PapermillExecutionError, match="the step stops here"):
        _execute(path, tmp_path)
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    # papermill puts a note of the failure above the cells; found by their code, not their place
    failed = next(c for c in nb.cells if c.source.startswith("raise RuntimeError"))
    after = next(c for c in nb.cells if c.source == "x = 1")
    started, ended, duration = _times(failed)
    assert duration == (ended - started).total_seconds()
    assert failed.metadata.papermill["status"] == "failed"
    assert failed.metadata.papermill["exception"] is True
    assert after.metadata.papermill["status"] == "pending"
    assert after.metadata.papermill["start_time"] is None
    assert "duration" not in after.metadata.papermill or after.metadata.papermill["duration"] is None


def test_the_step_uses_the_client_that_warmed_its_kernel(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's client is the one the pool warmed the kernel with, still connected: it connects
    no channels of its own, and the notebook's language_info is what this very kernel answered to
    kernel_info while it warmed, not asked again after the last cell (as papermill's client does)."""
    from psbridge.runbook.kernel import ReadyClient

    asked: list[str] = []

    def counting(name: str) -> Any:
        original = getattr(ReadyClient, name)

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            asked.append(name)
            return original(self, *args, **kwargs)

        return call

    path = _notebook(tmp_path / "step.ipynb", "import sys\nprint(sys.version.split()[0])")
    nb = _execute(path, tmp_path)
    language = nb.metadata["language_info"]
    printed = next(c for c in nb.cells if c.get("outputs")).outputs[0]["text"].strip()
    assert language["name"] == "python" and language["version"] == printed
    for name in ("kernel_info", "start_channels"):
        monkeypatch.setattr(ReadyClient, name, counting(name))
    nb = _execute(path, tmp_path)
    assert nb.metadata["language_info"] == language
    # Each once, by the pool's warming client; the step asked nothing, connected nothing.
    assert sorted(asked) == ["kernel_info", "start_channels"]
