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
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  step "starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/georeview.log
  for _ in $(seq 20); do redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
