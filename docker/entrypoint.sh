#!/bin/sh
# Entry point of the web, worker and gpu-worker images: wait for the database, migrate when asked
# (only the web service sets RUN_MIGRATIONS=1, so replicas and workers never race), then run the command.
set -eu

if [ "${WAIT_FOR_DB:-1}" = 1 ]; then
  # Ask through Django so that every DATABASE_URL form the settings accept works; the database can
  # accept connections a little after its healthcheck passes (PostGIS initialisation on first start).
  python - <<'PY'
import os
import time

import django
from django.db import connection
from django.db.utils import OperationalError

django.setup()
deadline = time.monotonic() + int(os.environ.get("DB_WAIT_SECONDS", "60"))
while True:
    try:
        connection.ensure_connection()
        break
    except OperationalError as exc:
        if time.monotonic() > deadline:
            raise SystemExit(f"entrypoint: database not reachable: {exc}") from None
        time.sleep(2)
PY
fi

if [ "${RUN_MIGRATIONS:-0}" = 1 ]; then
  python manage.py migrate --noinput
fi

exec "$@"
