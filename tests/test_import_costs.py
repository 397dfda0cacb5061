"""What a psbridge process leaves out of its imports because it would cost seconds for nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_nbformat_comes_without_rfc3987_syntax_and_still_validates() -> None:
    # rfc3987-syntax (installed with JupyterLab) builds an Earley parser as it is imported: about a
    # second in each process that imports nbformat, for a format no psbridge schema has.
    code = (
        "import sys\n"
        "import psbridge.evidence, nbformat, jsonschema\n"
        "assert sys.modules.get('rfc3987_syntax') is None, sys.modules.get('rfc3987_syntax')\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
        "nbformat.validate(nb)\n"
        "jsonschema.validate({'a': 1}, {'type': 'object', 'properties': {'a': {'type': 'integer'}}})\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_papermill_comes_without_pyarrow_which_pandas_still_gets_later(tmp_path: Path) -> None:
    # papermill's I/O module imports pyarrow (with numpy, some 40 MB) for hdfs:// paths alone.
    out = tmp_path / "t.parquet"
    code = (
        "import sys\n"
        "from psbridge.runbook import runner\n"
        "runner._register_memory()  # the runner's first use of papermill\n"
        "import papermill, papermill.iorw\n"
        "assert 'pyarrow' not in sys.modules and 'numpy' not in sys.modules, 'pyarrow came with papermill'\n"
        "import pandas as pd\n"
        f"pd.DataFrame({{'a': [1, 2]}}).to_parquet({str(out)!r})\n"
        f"assert pd.read_parquet({str(out)!r})['a'].tolist() == [1, 2]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
