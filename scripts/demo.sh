#!/usr/bin/env bash
# Set everything up (idempotent), load the demo, and run the web server and workers until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/setup.sh
step "loading the demo user, project and scene"
.venv/bin/python manage.py seed_demo
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
cat <<MSG

  GeoReview is starting at  http://$HOST:$PORT/
  Log in as                 demo / demo-password
  API docs                  http://$HOST:$PORT/api/docs/
  Stop with Ctrl-C.

MSG
export PORT HOST
exec .venv/bin/honcho start -f Procfile
