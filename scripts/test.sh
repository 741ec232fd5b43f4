#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Tests that need a GPU or an engine source skip with
# the reason. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -rs "$@"
