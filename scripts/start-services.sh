#!/usr/bin/env bash
# Starts the real services the tests talk to, on loopback ports, and writes
# their addresses to target/test-services.env for scripts/test to source:
#   - PostgreSQL (Debian package), a throw-away cluster under target/services/pg
# Idempotent: a service already answering is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/target/services"
mkdir -p "$root"
env_file="$PWD/target/test-services.env"
: > "$env_file"

# PostgreSQL --------------------------------------------------------------
PG_PORT="${BERTH_TEST_PG_PORT:-55432}"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$pg_bin" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends postgresql
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
pg="$root/pg"
if ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
    # initdb refuses to run as root; the Debian package creates `postgres`.
    rm -rf "$pg"
    mkdir -p "$pg"
    chown postgres "$pg"
    su postgres -s /bin/sh -c "$pg_bin/initdb -D '$pg/data' -U berth --auth=trust -E UTF8" > "$pg/initdb.log"
    su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$pg/data' -l '$pg/pg.log' -w \
        -o \"-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$pg' -c max_connections=300\" start" > /dev/null
fi
echo "BERTH_TEST_POSTGRES_URL=postgres://berth@127.0.0.1:$PG_PORT/postgres" >> "$env_file"
echo "start-services: PostgreSQL on 127.0.0.1:$PG_PORT"
