#!/usr/bin/env bash
# Starts the real services the tests talk to, on loopback ports, and writes
# their addresses to target/test-services.env for scripts/test to source:
#   - PostgreSQL (Debian package), a throw-away cluster under target/services/pg
#   - S3 (s3s-fs from crates.io), a throw-away bucket under target/services/s3
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

# S3-compatible object storage ---------------------------------------------
# s3s-fs (crates.io) checks SigV4 signatures and maps each bucket to a
# directory under its root. 0.15+ needs a newer Rust than the workspace's.
S3_PORT="${BERTH_TEST_S3_PORT:-9010}"
S3_BUCKET="berth-test"
S3_ACCESS_KEY="berthtest"
S3_SECRET_KEY="berthtestsecret"
s3="$root/s3"
if ! command -v s3s-fs > /dev/null; then
    cargo install s3s-fs --version 0.14.1 --features binary --locked
fi
if ! (exec 3<> "/dev/tcp/127.0.0.1/$S3_PORT") 2> /dev/null; then
    # Throw-away data, like the PostgreSQL cluster: a fresh start is empty.
    rm -rf "$s3/data"
    mkdir -p "$s3/data"
    # setsid: keep it running after this script and its caller's job end.
    setsid s3s-fs --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
        "$s3/data" > "$s3/s3s-fs.log" 2>&1 < /dev/null &
    echo $! > "$s3/s3s-fs.pid"
    for _ in $(seq 1 100); do
        if (exec 3<> "/dev/tcp/127.0.0.1/$S3_PORT") 2> /dev/null; then break; fi
        sleep 0.1
    done
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$S3_PORT") 2> /dev/null; then
        echo "start-services: s3s-fs did not start; see $s3/s3s-fs.log" >&2
        exit 1
    fi
fi
# A bucket is a directory of the server's root (what its CreateBucket does).
mkdir -p "$s3/data/$S3_BUCKET"
{
    echo "BERTH_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "BERTH_TEST_S3_BUCKET=$S3_BUCKET"
    echo "BERTH_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY"
    echo "BERTH_TEST_S3_SECRET_KEY=$S3_SECRET_KEY"
} >> "$env_file"
echo "start-services: S3 (s3s-fs) on 127.0.0.1:$S3_PORT, bucket $S3_BUCKET"

# More services, one script each (sourced: they append to $env_file) ------
for extra in scripts/services/*.sh; do
    [ -e "$extra" ] || continue
    # shellcheck disable=SC1090
    . "$extra"
done
