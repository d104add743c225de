#!/usr/bin/env bash
# ruff, then the whole pytest suite against a throw-away PostgreSQL cluster,
# which is stopped whatever happens. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/ruff check .
.venv/bin/ruff format --check .

# The same test-only defaults as conftest.py, for the manage.py call below.
export SECRET_KEY=${SECRET_KEY:-test-secret-key-not-for-production}

# The browser tests drive Debian's Chromium (Playwright cannot download one offline).
if [ ! -x /usr/bin/chromium ]; then
    echo "Chromium not found; installing Debian's chromium package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

# The load smoke test (tests/bench/test_load.py) drives the stack with wrk.
if ! command -v wrk >/dev/null; then
    echo "wrk not found; installing Debian's wrk package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

source scripts/pg_temp.sh
source scripts/redis_temp.sh
trap 'pg_temp_stop; redis_temp_stop' EXIT
pg_temp_start
redis_temp_start
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on port $PG_PORT, Redis on $REDIS_TEST_URL"

.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || {
    echo "Models and migrations disagree: run manage.py makemigrations" >&2
    exit 1
}
.venv/bin/python -m pytest "$@"
