#!/usr/bin/env bash
# The test command of the README and of CI: set up (if needed), run the suite,
# then the installed-package smoke (scripts/wheel_smoke.sh; WHEEL_SMOKE=0 skips it).
# TEST_WORKERS (default 2) pytest processes share the suite, one test module
# each at a time (module fixtures are built once); compilation is single-threaded,
# so two workers keep both cores busy (14 min -> 10 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser test (tests/test_web.py) drives Debian's Chromium, which the users'
# quick start (setup.sh) does not need; ATTNSEP_SKIP_BROWSER=1 skips both.
if [ ! -x /usr/bin/chromium ] && [ "${ATTNSEP_SKIP_BROWSER:-}" != 1 ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "test: installing chromium and chromium-driver with apt-get (for tests/test_web.py)"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      chromium chromium-driver >/dev/null
  else
    echo "test: /usr/bin/chromium is missing and apt-get is not here: tests/test_web.py" \
      "will fail; install Chromium, or set ATTNSEP_SKIP_BROWSER=1 to skip it" >&2
  fi
fi
bash scripts/setup.sh
# The slowest tests are listed, so that every CI log shows where the suite's time goes.
.venv/bin/python -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadscope --durations=15 "$@"
if [ "${WHEEL_SMOKE:-1}" != 0 ]; then
  bash scripts/wheel_smoke.sh
fi
