#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on loopback for the database tests and print its URL.
#   url=$(scripts/start_test_postgres.sh)  ->  postgresql+psycopg://bench@127.0.0.1:54329/bench_test
# Installs Debian's postgresql package when missing (as root). The cluster lives in a temporary
# folder (trust authentication, loopback only) and is stopped with: scripts/start_test_postgres.sh --stop
set -euo pipefail
PORT=${BENCH_TEST_PG_PORT:-54329}
DATA=${BENCH_TEST_PG_DIR:-/tmp/surge-bench-pg}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }
as_owner() {
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

bin=$(find_bin)
if [ "${1:-}" = --stop ]; then
    [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ] && as_owner "'$bin/pg_ctl' -D '$DATA' -m fast stop" >/dev/null || true
    exit 0
fi
if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
        bin=$(find_bin)
    fi
    [ -n "$bin" ] || { echo "start_test_postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
fi

if ! as_owner "'$bin/pg_ctl' -D '$DATA' status" >/dev/null 2>&1; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres "$DATA"
    as_owner "'$bin/initdb' -D '$DATA' -A trust -U bench" >/dev/null
    as_owner "'$bin/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w \
        -o \"-p $PORT -k '$DATA' -c listen_addresses=127.0.0.1 -c max_connections=100\" start" >/dev/null
fi
as_owner "'$bin/psql' -h 127.0.0.1 -p $PORT -U bench -d postgres -tAc \
    \"SELECT 1 FROM pg_database WHERE datname = 'bench_test'\"" | grep -q 1 \
    || as_owner "'$bin/createdb' -h 127.0.0.1 -p $PORT -U bench bench_test"
echo "postgresql+psycopg://bench@127.0.0.1:$PORT/bench_test"
