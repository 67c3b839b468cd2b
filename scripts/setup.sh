#!/usr/bin/env bash
# Idempotent setup for a Debian/Ubuntu machine: system packages, PostgreSQL+PostGIS+pgvector,
# Redis, Chromium, nginx, the Python virtualenv, the front-end build, database role and migrations.
# Every step checks first and skips what is already done, so running it twice does no harm.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. scripts/lib.sh

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# ---------------------------------------------------------------- system packages
apt_updated=0
apt_install() {
  # Install the named Debian packages that are not installed yet.
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated = 0 ]; then step "apt-get update"; $SUDO apt-get update -qq; apt_updated=1; fi
  step "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

apt_install ca-certificates curl make gcc python3-venv python3-dev
command -v psql >/dev/null || apt_install postgresql
PGV=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$PGV" ] || die "PostgreSQL is installed but no cluster exists under /etc/postgresql"
command -v redis-server >/dev/null || apt_install redis-server
command -v node >/dev/null || apt_install nodejs npm
apt_install "postgresql-$PGV-postgis-3" chromium fonts-dejavu-core
# nginx: the demo runs a private instance of it in front of gunicorn (Procfile `proxy:`, its own config,
# pid and temp folders under var/). Where installing it started the system's service (port 80, default
# site), stop and disable that one: nothing here uses it.
if ! dpkg -s nginx >/dev/null 2>&1; then
  apt_install nginx
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    step "stopping the system nginx service (the demo starts its own)"
    $SUDO systemctl disable --now nginx
  fi
fi

# pgvector: a package where the distribution has one (Debian 13, Ubuntu 24.04), otherwise built
# from Debian trixie's source package through a private apt state (system sources stay untouched).
if [ ! -f "/usr/share/postgresql/$PGV/extension/vector.control" ]; then
  if apt-cache show "postgresql-$PGV-pgvector" >/dev/null 2>&1 || { $SUDO apt-get update -qq; apt-cache show "postgresql-$PGV-pgvector" >/dev/null 2>&1; }; then
    apt_install "postgresql-$PGV-pgvector"
  else
    step "building pgvector from Debian's source package"
    apt_install "postgresql-server-dev-$PGV" dpkg-dev
    W=$(mktemp -d); mkdir -p "$W/lists/partial"
    M=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$M" ] || die "cannot find the Debian mirror in /etc/apt/sources.list.d/debian.sources; install pgvector by hand"
    echo "deb-src $M trixie main" > "$W/src.list"
    O=(-o Dir::Etc::SourceList="$W/src.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$W/lists")
    $SUDO apt-get "${O[@]}" update -qq
    (cd "$W" && apt-get "${O[@]}" source --download-only pgvector >/dev/null && tar xzf pgvector_*.orig.tar.gz)
    $SUDO make -s -C "$W"/pgvector-*/ OPTFLAGS="" PG_CONFIG="/usr/lib/postgresql/$PGV/bin/pg_config" install
    rm -rf "$W"
    # postgresql-server-dev upgrades the server to its point release: restart to load it.
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$PGV" main restart || true
  fi
fi

# ---------------------------------------------------------------- services
scripts/services.sh

# ---------------------------------------------------------------- database role and database
DB_USER=${DB_USER:-georeview}
DB_NAME=${DB_NAME:-georeview}
psql_admin() { if [ "$(id -u)" = 0 ]; then su postgres -c "psql -qAt -v ON_ERROR_STOP=1 -c \"$1\""; else sudo -u postgres psql -qAt -v ON_ERROR_STOP=1 -c "$1"; fi; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'")" != 1 ]; then
  step "creating database role $DB_USER"
  # SUPERUSER so that migrations (and the test database) can CREATE EXTENSION postgis/vector.
  psql_admin "CREATE ROLE $DB_USER LOGIN SUPERUSER PASSWORD '$DB_USER'"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]; then
  step "creating database $DB_NAME"
  psql_admin "CREATE DATABASE $DB_NAME OWNER $DB_USER"
fi

# ---------------------------------------------------------------- Python virtualenv
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || die "Python 3.11 is required (found $("$PY" --version)); set PYTHON=/path/to/python3.11"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { step "creating .venv"; "$PY" -m venv .venv; }
  step "installing torch (CPU works; CUDA is used when a GPU is present)"
  .venv/bin/pip install -q --upgrade pip setuptools wheel
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
  step "installing sam2 (no CUDA extension build, no isolated rebuild of torch)"
  SAM2_BUILD_CUDA=0 .venv/bin/pip install -q --no-build-isolation sam2==1.1.0
  step "installing the application and its dependencies"
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

# ---------------------------------------------------------------- front end
fstamp="frontend/node_modules/.built-$(cat frontend/package.json frontend/package-lock.json frontend/vite.config.ts frontend/tsconfig.json $(find frontend/src -type f | sort) | sha256sum | cut -c1-16)"
if [ ! -f "$fstamp" ] || [ ! -f static_build/frontend/.vite/manifest.json ]; then
  step "building the front end"
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build)
  rm -f frontend/node_modules/.built-*; touch "$fstamp"
fi

# ---------------------------------------------------------------- .env
if [ ! -f .env ]; then
  step "writing .env with a generated SECRET_KEY (edit it to change settings)"
  key=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
  sed "s|^SECRET_KEY=.*|SECRET_KEY=$key|" .env.example > .env
fi

# ---------------------------------------------------------------- Django
step "migrating the database"
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
step "setup complete"
