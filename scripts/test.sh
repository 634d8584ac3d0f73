#!/usr/bin/env bash
# The test command (the README and .ci/run both call this): set up, lint, run the whole suite.
# Browser tests need Debian's chromium: installed here when missing and we are root (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
ruff check .
ruff format --check .
bash scripts/mypy.sh
# Two workers, each test file whole on one of them (browser tests share one app in order):
# the suite is CPU-bound on one core otherwise (11 min idle on 2 cores, 2026-12-02).
python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
