#!/usr/bin/env bash
# Fresh machine to a passing check: set up .venv from the lock file with the test and jupyter
# extras (and Debian's Chromium for the record's page tests), then lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,jupyter
scripts/browser.sh
.venv/bin/ruff check psbridge tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
