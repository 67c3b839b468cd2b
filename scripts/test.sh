#!/usr/bin/env bash
# Run the whole test suite against the real PostgreSQL/PostGIS, Redis and Chromium (sets up what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/setup.sh
step "lint"
.venv/bin/ruff check .
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null || die "models and migrations differ: run manage.py makemigrations"
step "tests"
mkdir -p test-artifacts
exec .venv/bin/pytest "$@"
