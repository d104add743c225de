#!/usr/bin/env bash
# Builds .venv from pyproject.toml (runtime + dev extra). uv when it can be had,
# plain venv + pip otherwise; both read the same pyproject.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
    echo "Cascade needs Python 3.11 (Django 5.2 LTS); found $("$PYTHON" --version)" >&2
    exit 1
}

if ! command -v uv >/dev/null; then
    "$PYTHON" -m pip install --quiet uv || true
fi

if command -v uv >/dev/null; then
    [ -x .venv/bin/python ] || uv venv --quiet --python "$PYTHON" .venv
    uv pip install --quiet --python .venv/bin/python -e '.[dev]'
else
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet -e '.[dev]'
fi
touch .venv/.installed
