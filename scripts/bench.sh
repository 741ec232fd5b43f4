#!/usr/bin/env bash
# Set up (if needed) and run a benchmark. No arguments: every available plugin at its quick
# defaults on the best device here. Arguments go to `af3 bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/af3 bench "$@"
