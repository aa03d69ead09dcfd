#!/usr/bin/env bash
# Starts the real services the tests talk to, on loopback ports, and writes
# their addresses to target/test-services.env for scripts/test to source:
#   - PostgreSQL (Debian package), a throw-away cluster under target/services/pg,
#     serving plain and TLS connections (private CA in target/services/pg/tls)
#   - S3 (s3s-fs from crates.io), a throw-away bucket under target/services/s3
# Idempotent: a service already answering is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/target/services"
mkdir -p "$root"
env_file="$PWD/target/test-services.env"
: > "$env_file"

# PostgreSQL --------------------------------------------------------------
# Serves plain and TLS connections on one port: TLS with a leaf certificate
# for 127.0.0.1/localhost signed by a private CA (rustls refuses a
# self-signed CA:TRUE certificate as the server's), so tests can connect with
# sslmode=verify-full&sslrootcert=$BERTH_TEST_POSTGRES_CA; the plain URL
# (sslmode unset = prefer) keeps working as before.
PG_PORT="${BERTH_TEST_PG_PORT:-55432}"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$pg_bin" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends postgresql
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi
pg="$root/pg"
pg_tls="$pg/tls"
pg_conn="host=127.0.0.1 port=$PG_PORT user=berth dbname=postgres connect_timeout=5"

# A TLS connection that verifies the server against our CA.
pg_tls_ok() {
    [ -s "$pg_tls/ca.crt" ] &&
        "$pg_bin/psql" "$pg_conn sslmode=verify-full sslrootcert=$pg_tls/ca.crt" \
            -Atqc 'SELECT 1' > /dev/null 2>&1
}

# CA + leaf for 127.0.0.1/localhost under $pg_tls, unless a valid pair is there.
pg_make_certs() {
    if [ -s "$pg_tls/server.crt" ] && [ -s "$pg_tls/server.key" ] &&
        openssl verify -CAfile "$pg_tls/ca.crt" "$pg_tls/server.crt" > /dev/null 2>&1 &&
        openssl x509 -checkend 86400 -noout -in "$pg_tls/server.crt" > /dev/null 2>&1; then
        return
    fi
    rm -rf "$pg_tls"
    mkdir -p "$pg_tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -keyout "$pg_tls/ca.key" -out "$pg_tls/ca.crt" \
        -subj "/CN=Berth test PostgreSQL CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2> /dev/null
    openssl req -newkey rsa:2048 -nodes \
        -keyout "$pg_tls/server.key" -out "$pg_tls/server.csr" \
        -subj "/CN=127.0.0.1" 2> /dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$pg_tls/leaf.ext"
    openssl x509 -req -in "$pg_tls/server.csr" -days 825 \
        -CA "$pg_tls/ca.crt" -CAkey "$pg_tls/ca.key" -CAcreateserial \
        -extfile "$pg_tls/leaf.ext" -out "$pg_tls/server.crt" 2> /dev/null
    chmod 600 "$pg_tls/ca.key"
    chmod 644 "$pg_tls/ca.crt" "$pg_tls/server.crt"
    # PostgreSQL refuses a key file others can read; it runs as `postgres`.
    chown postgres "$pg_tls/server.key"
    chmod 600 "$pg_tls/server.key"
}

pg_start() {
    su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$pg/data' -l '$pg/pg.log' -w \
        -o \"-c listen_addresses=127.0.0.1 -p $PG_PORT -k '$pg' -c max_connections=300 \
            -c ssl=on -c ssl_cert_file='$pg_tls/server.crt' -c ssl_key_file='$pg_tls/server.key'\" \
        start" > /dev/null
}

if ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U berth; then
    # initdb refuses to run as root; the Debian package creates `postgres`.
    rm -rf "$pg"
    mkdir -p "$pg"
    chown postgres "$pg"
    pg_make_certs
    su postgres -s /bin/sh -c "$pg_bin/initdb -D '$pg/data' -U berth --auth=trust -E UTF8" > "$pg/initdb.log"
    pg_start
elif ! pg_tls_ok; then
    # A cluster started by an earlier version of this script, without TLS
    # (or with certificates since removed). The SSL settings take effect on a
    # configuration reload, which keeps the connections of tests running
    # right now; a restart is the fallback.
    echo "start-services: PostgreSQL answers without TLS; enabling it"
    pg_make_certs
    "$pg_bin/psql" "$pg_conn" -Atq \
        -c "ALTER SYSTEM SET ssl_cert_file = '$pg_tls/server.crt'" \
        -c "ALTER SYSTEM SET ssl_key_file = '$pg_tls/server.key'" \
        -c "ALTER SYSTEM SET ssl = on" \
        -c "SELECT pg_reload_conf()" > /dev/null
    for _ in $(seq 1 50); do
        pg_tls_ok && break
        sleep 0.1
    done
    if ! pg_tls_ok; then
        echo "start-services: reload did not enable TLS; restarting PostgreSQL"
        su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$pg/data' -m fast -w stop" > /dev/null
        pg_start
    fi
fi
if ! pg_tls_ok; then
    echo "start-services: PostgreSQL does not serve TLS on 127.0.0.1:$PG_PORT; see $pg/pg.log" >&2
    exit 1
fi
{
    echo "BERTH_TEST_POSTGRES_URL=postgres://berth@127.0.0.1:$PG_PORT/postgres"
    echo "BERTH_TEST_POSTGRES_CA=$pg_tls/ca.crt"
} >> "$env_file"
echo "start-services: PostgreSQL on 127.0.0.1:$PG_PORT (plain and TLS, CA $pg_tls/ca.crt)"

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
