#!/usr/bin/env bash
# Berth on the scale-out configuration (PostgreSQL metadata + S3 blobs, the
# services scripts/start-services.sh runs: PostgreSQL 15 and s3s-fs on this
# machine) against Berth on the embedded defaults (SQLite + filesystem), one
# after the other, same scenarios as scripts/bench.sh. The table goes to
# docs/PERFORMANCE.md between the scale-out markers; the ratio column is
# scale-out / embedded.
#
#   scripts/bench-scale-out.sh [--rounds N] [--quick] [--scenario LIST] [--duration D]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=1
QUICK_FLAG=
SCENARIO=all
DURATION=5s
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --quick) QUICK_FLAG=--quick; DURATION=1s; shift ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-scale-out.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
log() { echo "== $*" >&2; }

export PATH="$HOME/.cargo/bin:$PATH"
scripts/start-services.sh >&2
set -a
# shellcheck disable=SC1091
. target/test-services.env
set +a

log "building release binaries (berth, berth-bench)"
cargo build --release --quiet --bin berth --bin berth-bench
BERTH="$ROOT/target/release/berth"
BENCH="$ROOT/target/release/berth-bench"
PORT=${BERTH_PORT:-5183}
WORK=$(mktemp -d /var/tmp/berth-bench-scale.XXXXXX)
mkdir -p "$WORK/results"
SERVER_PID=
cleanup() {
  [ -z "$SERVER_PID" ] || { kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

export RUST_LOG=warn
BERTH_ADMIN_PASSWORD=$(openssl rand -hex 16)
export BERTH_ADMIN_PASSWORD BERTH_AUTH_AUTO_CREATE_PROJECTS=true
export BERTH_BENCH_PASSWORD=$BERTH_ADMIN_PASSWORD
PG_ADMIN_URL=$BERTH_TEST_POSTGRES_URL

wait_ready() { # URL PID
  for _ in $(seq 1 3000); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1/v2/" || true)
    case "$code" in 200|401) return 0 ;; esac
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

FAILED=0
for round in $(seq 1 "$ROUNDS"); do
  for label in berth berth-pg-s3; do
    data="$WORK/data-$label-$round"
    mkdir -p "$data"
    envs=()
    if [ "$label" = berth-pg-s3 ]; then
      db="bench_scale_${round}_$RANDOM"
      psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >&2
      envs=(
        "BERTH_METADATA_URL=${PG_ADMIN_URL%/*}/$db"
        BERTH_STORAGE_BACKEND=s3
        "BERTH_S3_ENDPOINT=$BERTH_TEST_S3_ENDPOINT"
        "BERTH_S3_BUCKET=$BERTH_TEST_S3_BUCKET"
        "BERTH_S3_PREFIX=bench-$db"
        "BERTH_S3_ACCESS_KEY_ID=$BERTH_TEST_S3_ACCESS_KEY"
        "BERTH_S3_SECRET_ACCESS_KEY=$BERTH_TEST_S3_SECRET_KEY"
        BERTH_S3_ALLOW_HTTP=true
      )
    fi
    log "round $round: $label"
    env "${envs[@]}" "$BERTH" serve --listen "127.0.0.1:$PORT" --data-dir "$data" \
      > "$WORK/$label-$round.log" 2>&1 &
    SERVER_PID=$!
    url="http://127.0.0.1:$PORT"
    wait_ready "$url" "$SERVER_PID" || { tail -20 "$WORK/$label-$round.log" >&2; exit 1; }
    # The project the scenarios push to (see scripts/bench.sh).
    loc=$(curl -sSf -u "admin:$BERTH_ADMIN_PASSWORD" -X POST -o /dev/null -D - \
      "$url/v2/bench/created/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
    curl -sSf -u "admin:$BERTH_ADMIN_PASSWORD" -X DELETE -o /dev/null "$url$loc"
    # shellcheck disable=SC2086
    "$BENCH" --url "$url" --label "$label" --server-pid "$SERVER_PID" --user admin \
      --scenario "$SCENARIO" --duration "$DURATION" $QUICK_FLAG \
      >> "$WORK/results/$label-$round.jsonl" || FAILED=1
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  done
done

mkdir -p target/bench-results
cp "$WORK"/results/*.jsonl target/bench-results/
tmp="$WORK/report.md"
"$BENCH" report "$WORK"/results/*.jsonl --out "$tmp" --a berth-pg-s3 --b berth \
  --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
  --meta "rounds=$ROUNDS, ${QUICK_FLAG:-full sizes}, fixed-duration scenarios $DURATION each" \
  --meta "berth=$(git rev-parse --short HEAD), release build, authentication on (Bearer tokens)" \
  --meta "berth-pg-s3=PostgreSQL $(psql "$PG_ADMIN_URL" -tAc 'SHOW server_version' | cut -d' ' -f1) on loopback (TLS), s3s-fs 0.14.1 on loopback (its files on the same disk)" \
  --meta "machine=$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM; server, database, object store and client share the cores"
section=$(sed -e '/<!-- bench:begin/d' -e '/<!-- bench:end/d' "$tmp")
python3 - "$section" <<'PY'
import sys
doc_path = "docs/PERFORMANCE.md"
doc = open(doc_path).read()
begin, end = "<!-- scale-out:begin (scripts/bench-scale-out.sh) -->", "<!-- scale-out:end -->"
block = begin + "\n" + sys.argv[1].strip() + "\n" + end
if begin in doc and end in doc:
    doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end):]
else:
    doc = doc.rstrip() + "\n\n## Scale-out configuration: PostgreSQL + S3 vs the embedded defaults\n\n" \
        "The ratio column is scale-out / embedded (Berth against itself); Distribution is not in this table.\n\n" + block + "\n"
open(doc_path, "w").write(doc)
PY
log "scale-out section written to docs/PERFORMANCE.md"
exit "$FAILED"
