#!/usr/bin/env bash
# The test command of the README and of CI: set up (if needed), then run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
