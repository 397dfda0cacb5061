"""What a psbridge process leaves out of its imports because it would cost seconds for nothing."""

from __future__ import annotations

import subprocess
import sys


def test_nbformat_comes_without_rfc3987_syntax_and_still_validates() -> None:
    # rfc3987-syntax (installed with JupyterLab) builds an Earley parser as it is imported: about a
    # second in each process that imports nbformat, for a format no psbridge schema has.
    code = (
        "import sys, time\n"
        "import psbridge.evidence, nbformat, jsonschema\n"
        "assert sys.modules.get('rfc3987_syntax') is None, sys.modules.get('rfc3987_syntax')\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
        "nbformat.validate(nb)\n"
        "jsonschema.validate({'a': 1}, {'type': 'object', 'properties': {'a': {'type': 'integer'}}})\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
