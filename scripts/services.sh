#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis run on loopback for the scale-out tests
# (server/tests/storage_backends.rs, cluster.rs, redis_fallback.rs), that
# Chromium (the browser tests, driven by playwright-core), nginx (the load
# balancer and attachment cache tests), HAProxy (the readiness health
# check test) and systemd-analyze (the systemd unit example's check) are
# installed, then prints the
# variables the tests read, for `eval`:
#
#     eval "$(bash scripts/services.sh)"
#
# Idempotent: installs the Debian packages only when missing, creates the
# `microbot` role and database only when missing, starts each engine only
# when it is not answering. Progress goes to stderr; stdout carries only the
# `export` lines. Needs root (or sudo) the first time, to install and start.
set -euo pipefail

PG_PORT=5432
REDIS_PORT=6379
PG_USER=microbot
PG_PASSWORD=microbot
PG_DB=microbot

log() { echo "services: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

as_postgres() {
    # `runuser` needs root; sudo works for everyone else.
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

missing=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql-common)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        postgresql postgresql-common redis-server chromium nginx libnginx-mod-stream haproxy systemd >&2
fi

# PostgreSQL: the distribution's cluster (newest version), listening on
# localhost (the Debian default), started without systemd.
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating PostgreSQL $version cluster 'main' on port $PG_PORT"
    as_root pg_createcluster "$version" main --port "$PG_PORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    log "starting PostgreSQL $version/main"
    as_root pg_ctlcluster "$version" main start >&2
fi
# The cluster's real port (5432 unless something else held it at creation).
PG_PORT=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')
for _ in $(seq 1 50); do
    if as_postgres psql -p "$PG_PORT" -tAc 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.2
done
if [ "$(as_postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
    log "creating role $PG_USER"
    as_postgres psql -p "$PG_PORT" -q -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'" >&2
fi
if [ "$(as_postgres psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    log "creating database $PG_DB"
    as_postgres psql -p "$PG_PORT" -q -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >&2
fi

# Redis: a daemon on loopback without persistence (the bus holds nothing
# that must survive a restart; see docs/OPERATIONS.md).
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --save "" --appendonly no --logfile /tmp/microbot-redis.log >&2
    for _ in $(seq 1 50); do
        if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
fi
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null

log "PostgreSQL on 127.0.0.1:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT are up"
echo "export MICROBOT_TEST_POSTGRES=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
echo "export MICROBOT_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT/"
echo "export MICROBOT_CHROMIUM=/usr/bin/chromium"
echo "export MICROBOT_NGINX=/usr/sbin/nginx"
echo "export MICROBOT_HAPROXY=/usr/sbin/haproxy"
