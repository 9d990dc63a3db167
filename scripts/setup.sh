#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine with Python 3.11:
#   1. the shared libraries that the PyPI `bpy` wheel (5.0.1) needs to import headless on a bare
#      Debian (APT_PKGS below; libegl1 is needed by the Workbench engine only),
#   2. a .venv with the exact versions pinned in requirements.txt,
#   3. with WITH_CHROMIUM=1 only (`make test` sets it): Debian's chromium (~300 MB installed), for the latent explorer's
#      browser test (tests/test_explorer_browser.py skips without it) and img/explorer.png.
# `make demo`, `make test` and `make bench` all call this first; a second call is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libxext6 libgl1 libegl1"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "[setup] installing apt libraries for bpy:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ "${WITH_CHROMIUM:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing chromium (WITH_CHROMIUM=1)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # not fatal: without a browser only tests/test_explorer_browser.py skips (and says why)
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || echo "[setup] chromium could not be installed: the explorer's browser test will skip"
fi

PYTHON="${PYTHON:-python3}"
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
echo "[setup] creating .venv from requirements.txt (first run downloads ~1.5 GB: bpy, tensorflow-cpu, ray)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "$want" > "$stamp"
echo "[setup] .venv ready"
