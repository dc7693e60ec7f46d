#!/usr/bin/env bash
# Set up the environment and run the test suite (CPU, a few minutes on 2 cores).
# Extra arguments go to pytest, e.g. ./run_tests.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh test nlp detection postgres
. .venv/bin/activate
python -m pytest "$@"
