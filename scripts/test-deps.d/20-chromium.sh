#!/usr/bin/env bash
# Debian chromium for the headless-browser report test (tests/test_report_browser.py drives it through playwright
# with executable_path, so playwright never downloads a browser of its own).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq >/dev/null || { echo "20-chromium: apt-get update failed" >&2; exit 1; }
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null \
  || { echo "20-chromium: apt-get install chromium failed" >&2; exit 1; }
