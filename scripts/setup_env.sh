#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install surge-bench.
# Usage: scripts/setup_env.sh [extra ...]     e.g. scripts/setup_env.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
extras=$(IFS=,; echo "$*")
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# torch/torchvision come from the local wheel store when the machine has one (see DEPENDENCIES).
pip install --quiet --disable-pip-version-check -e "$spec"
