#!/usr/bin/env bash
# Make a throwaway venv with the peer scanners from PyPI (and numpy/joblib for bench/gen.py).
# usage: bench/peers.sh [VENV]   (default /tmp/peers)
set -euo pipefail
venv=${1:-/tmp/peers}
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "picklescan[7z]" modelscan numpy joblib
"$venv/bin/pip" list 2>/dev/null | grep -iE '^(picklescan|modelscan|numpy|joblib) '
