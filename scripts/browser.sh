#!/usr/bin/env bash
# Headless Chromium for the tests that open a record's pages: Debian's own package, installed with
# apt when it is missing (nothing is downloaded from anywhere else). Elsewhere, say what to install.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed and there is no apt-get here: install Chromium for the page tests" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
