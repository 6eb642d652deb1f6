#!/usr/bin/env bash
# ERP appliance install: ./install.sh [--prefix DIR] [--no-user] [--memory-max 8G] (--help lists every option).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "Error: python3 (3.11 or newer, with the venv module) is required; install it or set PYTHON=/path/to/python3.11." >&2; exit 2; }
exec "$PY" -s "$here/installer" install --bundle "$here" "$@"
