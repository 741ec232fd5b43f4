#!/usr/bin/env bash
# Set up (if needed) and run the test suite. Tests that need a GPU or an engine source skip with
# the reason. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Without a GPU, Triton kernels are tested in Triton's interpreter; it must be chosen before the
# first import of triton in the test process.
if ! nvidia-smi -L >/dev/null 2>&1; then
  export TRITON_INTERPRET=1
fi
exec .venv/bin/python -m pytest -q -rs "$@"
