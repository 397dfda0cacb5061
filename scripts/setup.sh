#!/usr/bin/env bash
# Create (or refresh) the project's own virtualenv in .venv and install psbridge into it, each
# dependency at the version requirements/lock.txt pins (the set CI tests), and register the
# psbridge kernel there.
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh test,jupyter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
if [ $# -gt 0 ]; then spec=".[$1]"; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e "$spec"
# A wheel installs the kernelspec into the environment; an editable install skips data files
# (a setuptools limitation), so it is installed here from the same file.
.venv/bin/jupyter kernelspec install share/jupyter/kernels/psbridge --sys-prefix --log-level=WARN
