"""The runner's kernel tuning (psbridge.runbook.kerneltune) changes what a cell costs, not what it does.

- the fast path past IPython's input transformers gives, for every code cell of every stored
  runbook and for cells in IPython's own syntax, exactly what the transformers give;
- a cell that needs a coroutine runner still gets one;
- in a real forked kernel: magics, shell commands and top-level ``await`` still work, output
  printed by a cell is all there before its ``idle``, and a traceback still shows the source
  line of a function defined in an earlier cell (the cells' code names).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from psbridge.runbook import kerneltune, registry, zygote
from psbridge.runbook.kernel import KERNEL_NAME, kernel_manager_class
from psbridge.runbook.warm import KernelPool

IPYTHON_SYNTAX = [
    "%time x = 1\n",
    "%%bash\necho hi\n",
    "!echo hi\n",
    "files = !ls\n",
    "x = %pwd\n",
    "len?\n",
    "len??\n",
    "?len\n",
    "In [1]: x = 5\n",
    "In [3]: def f():\n   ...:     return 1\n",
    ">>> x = 1\n>>> y = 2\n",
    "\n\nx = 1\n",
    "x = [\n...\n]\n",  # Python too (an Ellipsis), but IPython strips the second line's prompt
    "d = {\n...: 1}\n",
    "def stub():\n    ...\n",
    "    x = 1\n    y = 2\n",
    "if True:\n    %time y = 2\n",
    "",
]
# Python that only looks like IPython syntax, or lacks the newline the transformers add.
PYTHON = ["x = 1", "s = '''\n!not a command\n'''\n", "x != 1  # ?\n"]


def _stored_cells() -> list[str]:
    cells = []
    for name in registry.available():
        book = registry.load(name)
        for step in book.steps:
            nb = nbformat.read(book.notebook_path(step), as_version=4)
            cells += [c.source for c in nb.cells if c.cell_type == "code"]
    return cells


def test_the_fast_path_gives_what_ipythons_transformers_give() -> None:
    cells = _stored_cells()
    assert len(cells) > 50
    shipped = TransformerManager()
    tuned = TransformerManager()
    kerneltune._skip_transforms_for_python(tuned)
    fast = 0
    for cell in cells + PYTHON + IPYTHON_SYNTAX:
        assert tuned.transform_cell(cell) == shipped.transform_cell(cell), cell
        fast += kerneltune.python_unchanged(cell)
    # Every stored step cell is plain Python, so each takes the fast path; IPython syntax never does.
    assert fast == len(cells) + len(PYTHON)
    assert not any(kerneltune.python_unchanged(c) for c in IPYTHON_SYNTAX)


class _Shell:
    def should_run_async(self, raw_cell: str, *, transformed_cell: str | None = None,
                         preprocessing_exc_tuple: Any = None) -> bool:
        from IPython.core.async_helpers import _should_be_async

        return _should_be_async(transformed_cell or raw_cell)


@pytest.mark.parametrize("cell, wanted", [
    ("import asyncio\nawait asyncio.sleep(0)\n", True),
    ("async with lock:\n    pass\n", True),
    ("async def f():\n    await g()\n", False),  # defines a coroutine function, awaits nothing
    ("x = 'no await here'\n", False),
    ("x = 1\n", False),
])
def test_a_cell_that_needs_a_coroutine_runner_still_gets_one(cell: str, wanted: bool) -> None:
    shell = _Shell()
    kerneltune._async_only_when_asked(shell)
    assert shell.should_run_async(cell, transformed_cell=cell) is wanted


async def _execute(client: Any, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reply to ``code`` and every IOPub message of it up to its ``idle``."""
    msg_id = client.execute(code)
    messages = []
    while True:
        msg = await client.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        messages.append(msg)
    reply = await client.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply, messages


def _text(messages: list[dict[str, Any]]) -> str:
    out = []
    for m in messages:
        content = m["content"]
        if m["msg_type"] == "stream":
            out.append(content["text"])
        elif m["msg_type"] in ("execute_result", "display_data"):
            out.append(content["data"].get("text/plain", ""))
        elif m["msg_type"] == "error":
            out.append(re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(content["traceback"])))
    return "".join(out)


@pytest.mark.skipif(not zygote.SUPPORTED, reason="kernels are forked only where os.fork is")
def test_a_tuned_kernel_still_runs_ipython_and_says_where_an_error_is(tmp_path: Path) -> None:
    manager_class = kernel_manager_class(dict(os.environ), tmp_path / "kernels.log", forked=True)

    async def session(manager: Any) -> dict[str, str]:
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=30)
            said = {}
            for name, code in {
                # built as the extension loaded, before any result was shown
                "formatters": "print('formatters' in get_ipython().display_formatter._trait_values)",
                "magic": "%time tuned = 1",
                "shell": "!echo from-the-shell",
                "await": "import asyncio\nawaited = await asyncio.sleep(0, result='awaited')\nprint(awaited)",
                "prints": "for i in range(200):\n    print('line', i)",
                "define": "def boom():\n    raise ValueError('the line that fails')",
                "call": "boom()",
                "result": "tuned + 1",
            }.items():
                reply, messages = await _execute(client, code)
                said[name] = reply["content"]["status"] + "\n" + _text(messages)
            return said
        finally:
            client.stop_channels()

    with KernelPool(lambda n: (manager_class(kernel_name=KERNEL_NAME), None), ahead=1) as pool:
        kernel = pool.take()
        try:
            said = asyncio.run(session(kernel.manager))
        finally:
            pool.discard(kernel)
    assert said["formatters"] == "ok\nTrue\n"
    assert said["magic"].startswith("ok") and "Wall time" in said["magic"]
    assert said["shell"].startswith("ok") and "from-the-shell" in said["shell"]
    assert said["await"] == "ok\nawaited\n"
    assert said["prints"] == "ok\n" + "".join(f"line {i}\n" for i in range(200))
    assert said["call"].startswith("error")
    assert "raise ValueError('the line that fails')" in said["call"]  # the source line, found by name
    assert "Cell In[6], line 2" in said["call"]
    assert said["result"] == "ok\n2"
