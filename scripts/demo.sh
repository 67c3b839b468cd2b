#!/usr/bin/env bash
# Set everything up (idempotent), load the demo, and run the web server and workers until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
scripts/setup.sh
step "loading the demo user, project and scene"
.venv/bin/python manage.py seed_demo
# Model weights when the hub answers within a few seconds; otherwise it says which command installs them
# and the demo starts anyway (searching then says the same).
.venv/bin/python manage.py fetch_models --if-online
# Clients reach nginx on HOST:PORT; gunicorn listens on loopback WEB_PORT behind it (Procfile).
PORT=${PORT:-8000}
HOST=${HOST:-127.0.0.1}
WEB_PORT=${WEB_PORT:-8001}
for p in "$PORT" "$WEB_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p is in use (another demo still running?): stop it, or run with PORT=... WEB_PORT=... scripts/demo.sh"
  fi
done
cat <<MSG

  GeoReview is starting at  http://$HOST:$PORT/
  Log in as                 demo / demo-password
  API docs                  http://$HOST:$PORT/api/docs/
  Stop with Ctrl-C.

MSG
export PORT HOST WEB_PORT
exec .venv/bin/honcho start -f Procfile
