"""The psbridge kernel as Jupyter sees it: registered in psbridge's environment under
KERNEL_NAME, resolving to this interpreter, shipped in the wheel, and running notebooks by name."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from psbridge.runbook.kernel import DISPLAY_NAME, KERNEL_NAME

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "share" / "jupyter" / "kernels" / KERNEL_NAME
BIN = Path(sys.executable).parent  # the venv's bin (Scripts on Windows), with nothing activated


def _registered() -> Path:
    try:
        return Path(KernelSpecManager().get_kernel_spec(KERNEL_NAME).resource_dir)
    except NoSuchKernel:
        pytest.fail(f"no {KERNEL_NAME!r} kernel in {sys.prefix}: a wheel install registers it; an editable "
                    "one does not (setuptools skips data files there), which scripts/setup.sh makes up for "
                    f"with `jupyter kernelspec install share/jupyter/kernels/{KERNEL_NAME} --sys-prefix`")


def test_the_kernelspec_file_agrees_with_the_kernel_module() -> None:
    spec = json.loads((SPEC_DIR / "kernel.json").read_text(encoding="utf-8"))
    assert spec["display_name"] == DISPLAY_NAME and spec["language"] == "python"
    # "python" is what jupyter_client replaces by the sys.executable of whoever starts the kernel
    # (JupyterLab, nbclient): the interpreter of psbridge's environment, wherever it lives.
    assert spec["argv"] == ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    folder = f"share/jupyter/kernels/{KERNEL_NAME}"
    assert data_files == {folder: [f"{folder}/kernel.json"]}


def test_the_registered_kernel_is_this_interpreter() -> None:
    where = _registered()
    assert where.is_relative_to(Path(sys.prefix)), f"{where} is not in this environment ({sys.prefix})"
    km = KernelManager(kernel_name=KERNEL_NAME)
    assert km.kernel_spec is not None and km.kernel_spec.display_name == DISPLAY_NAME
    assert Path(km.format_kernel_cmd()[0]) == Path(sys.executable)
    listed = subprocess.run([str(BIN / "jupyter"), "kernelspec", "list", "--json"], capture_output=True,
                            text=True, timeout=120, check=True, env=_no_jupyter_env())
    assert KERNEL_NAME in json.loads(listed.stdout)["kernelspecs"]


def _no_jupyter_env() -> dict[str, str]:
    # As on a consultant's laptop: no JUPYTER_PATH, nothing activated.
    return {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "VIRTUAL_ENV"))}


def test_a_notebook_naming_the_kernel_runs_in_this_interpreter(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import sys, psbridge\nprint(sys.executable)"),
        # The token cache's choice, as a step's record shows it: on a host without an encrypted
        # store, the fallback's warning is in the cell's output.
        nbformat.v4.new_code_cell(
            "from pathlib import Path\nfrom psbridge.cloud.signin import PersistedCache\n"
            f"print(PersistedCache(Path({str(tmp_path / 'msal' / 't' / 'a.json')!r})).protection)"),
    ]
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert Path(printed) == Path(sys.executable)
    texts = {o.get("name"): o.get("text", "") for o in nb.cells[1].outputs}
    if "plaintext" in texts.get("stdout", ""):
        assert "token cache: no encrypted store on this host" in texts.get("stderr", ""), texts


def _stored_notebooks() -> list[Path]:
    return sorted({*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("psbridge/runbooks/**/*.ipynb")})


@pytest.mark.parametrize("path", _stored_notebooks(), ids=lambda p: p.stem)
def test_the_kernel_a_stored_notebook_names_is_this_interpreter(path: Path) -> None:
    """Opened in JupyterLab from psbridge's environment, a step runs where psbridge is."""
    name = nbformat.read(path, as_version=4).metadata["kernelspec"]["name"]
    if name == KERNEL_NAME:
        _registered()
    km = KernelManager(kernel_name=name)
    assert Path(km.format_kernel_cmd()[0]) == Path(sys.executable), name


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                    reason="the jupyter extra is not installed (pip install -e .[jupyter])")
def test_jupyter_lab_runs_from_the_venv() -> None:
    done = subprocess.run([str(BIN / "jupyter"), "lab", "--help"], capture_output=True, text=True,
                          timeout=180, env=_no_jupyter_env())
    assert done.returncode == 0, done.stderr
    assert "JupyterLab" in done.stdout


def _setuptools_builds_it() -> bool:
    try:
        from packaging.version import Version

        return Version(metadata.version("setuptools")) >= Version("77")
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _setuptools_builds_it(), reason="needs setuptools>=77 here (the test extra has it)")
def test_the_wheel_ships_the_kernelspec(tmp_path: Path) -> None:
    """The non-editable install (`pip install psbridge[jupyter]`) registers the kernel from here."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "records", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "lab-state"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(src)], check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("psbridge-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(f"share/jupyter/kernels/{KERNEL_NAME}/kernel.json")]
        assert len(names) == 1 and ".data/data/" in names[0], z.namelist()
        assert json.loads(z.read(names[0])) == json.loads((SPEC_DIR / "kernel.json").read_bytes())


def test_the_kernel_manager_hooks_psbridge_overrides_still_exist() -> None:
    """psbridge's kernel manager overrides two of jupyter_client's own methods (a faster wait for a
    killed kernel, forked launches): an upgrade that renames them must fail here, not go slow."""
    import inspect

    from jupyter_client.manager import AsyncKernelManager

    for name in ("_async_wait", "_async_launch_kernel"):
        assert inspect.iscoroutinefunction(getattr(AsyncKernelManager, name)), name
    assert "pollinterval" in inspect.signature(AsyncKernelManager._async_wait).parameters


def test_the_kernel_manager_starts_and_shuts_down_without_jupyter_clients_pause(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """jupyter_client's start and shutdown sleep 10 ms once done ("to ensure tests can capture the
    state"); psbridge's manager does not, and its ``ready`` future still says the outcome. An
    upgrade that stops wrapping them so is used as it is (nothing to take off)."""
    import asyncio
    import inspect

    from jupyter_client.manager import AsyncKernelManager

    from psbridge.runbook.kernel import kernel_manager_class

    for name in ("start_kernel", "shutdown_kernel"):
        wrapped = getattr(AsyncKernelManager, name)
        assert inspect.iscoroutinefunction(getattr(wrapped, "__wrapped__", wrapped)), name
    slept: list[float] = []
    sleep = asyncio.sleep

    async def noted(delay: float, *args: object) -> object:
        slept.append(delay)
        return await sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", noted)
    manager = kernel_manager_class({}, None, forked=False)(kernel_name=KERNEL_NAME)

    async def start_and_stop() -> tuple[bool, bool]:
        await manager.start_kernel()
        started = manager.ready.done() and manager.ready.exception() is None
        await manager.shutdown_kernel(now=True)
        return started, manager.ready.done() and manager.ready.exception() is None

    assert asyncio.run(start_and_stop()) == (True, True)
    assert not manager.has_kernel
    assert 0.01 not in slept, slept
