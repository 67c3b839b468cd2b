#!/usr/bin/env bash
# Start PostgreSQL and Redis when they are not running (no systemd on these machines).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
PGV=$(ls /etc/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PGV" '$1==v && $2=="main"{print $4}' | grep -q online; then
  step "starting PostgreSQL $PGV"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PGV" main start
fi
# Redis is the Celery broker: queued jobs live only there, so it keeps an append-only file (fsync every second)
# and a restart loses at most a second of queued work (jobs still lost are re-sent: gpu_tasks/broker.py).
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  step "starting Redis (append-only file in /var/lib/redis)"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
    --appendonly yes --appendfsync everysec --dir /var/lib/redis --logfile /var/log/redis/georeview.log
  for _ in $(seq 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
elif [ "$(redis-cli -h 127.0.0.1 config get appendonly | tail -1)" != yes ]; then
  # A Redis started earlier without persistence (e.g. by an older version of this script): turn it on live.
  step "Redis is running without persistence: turning on its append-only file (CONFIG SET appendonly yes)"
  redis-cli -h 127.0.0.1 config set appendfsync everysec >/dev/null
  redis-cli -h 127.0.0.1 config set appendonly yes >/dev/null \
    || echo "warning: could not turn on Redis persistence; queued jobs are lost if Redis restarts" >&2
fi
