#!/usr/bin/env bash
# Fresh machine to a finished demo: set up .venv, then run the whole runbook against the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/psbridge demo "$@"
