#!/usr/bin/env bash
# Berth vs CNCF Distribution (Debian's docker-registry 2.8.x), side by side
# on this machine: N rounds; in each, every scenario group runs on both
# registries back to back, each time on a fresh server and data directory; the
# machine's limits measured in the same run, medians written to
# docs/PERFORMANCE.md.
#
#   scripts/bench.sh                 # 3 rounds, full sizes (about 20 min on 2 cores)
#   scripts/bench.sh --quick         # 1 round, small sizes: checks that it all works
#   scripts/bench.sh --rounds 5 --duration 10s --scenario manifest-get,pull
#
# Options: --rounds N, --quick, --duration D (fixed-duration scenarios, default
# 5s), --scenario LIST (default all), --out FILE (default docs/PERFORMANCE.md),
# --work DIR (data dirs and raw results; default a new dir under /var/tmp, on
# the data disk, never tmpfs; removed at the end), --keep (keep the data dirs).
# The raw JSON lines of every round are copied to target/bench-results/.
# Berth runs with authentication (always on): its admin gets a random password
# for the run, berth-bench logs in as the admin (Bearer token flow) and the
# admin's pushes create the project `bench`. Distribution runs without auth.
# Exits non-zero if any scenario of any round had errors (the report is still
# written, with the errors marked).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

ROUNDS=3
QUICK=0
DURATION=5s
SCENARIO=all
OUT=docs/PERFORMANCE.md
WORK=
KEEP=0
BERTH_PORT=${BERTH_PORT:-5181}
DIST_PORT=${DIST_PORT:-5182}
ROUNDS_SET=0

while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; ROUNDS_SET=1; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  [ "$ROUNDS_SET" = 1 ] || ROUNDS=1
  DURATION=${DURATION/5s/1s}
fi

log() { echo "== $*" >&2; }

# --- tools -------------------------------------------------------------------
if ! command -v docker-registry >/dev/null 2>&1 && [ ! -x /usr/bin/docker-registry ]; then
  log "installing docker-registry (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
fi
DIST_BIN=$(command -v docker-registry || echo /usr/bin/docker-registry)
if ! command -v iperf3 >/dev/null 2>&1; then
  log "installing iperf3 (Debian; optional, for the loopback limit)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null 2>&1; } ||
    log "iperf3 not installed: the loopback limit comes from berth-bench alone"
fi
for tool in openssl dd; do
  command -v "$tool" >/dev/null || { echo "bench.sh: $tool is missing" >&2; exit 1; }
done

log "building release binaries (berth, berth-bench)"
cargo build --release --quiet --bin berth --bin berth-bench
BERTH="$ROOT/target/release/berth"
BENCH="$ROOT/target/release/berth-bench"

MADE_WORK=0
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
  MADE_WORK=1
fi
mkdir -p "$WORK/results" "$WORK/trash"
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$KEEP" = 0 ]; then
    log "removing data directories"
    if [ "$MADE_WORK" = 1 ]; then
      rm -rf "$WORK"
    else
      find "$WORK" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} + 2>/dev/null || true
    fi
  fi
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$BERTH_PORT" "$DIST_PORT"; do
  port_free "$p" || { echo "bench.sh: port $p is in use (set BERTH_PORT / DIST_PORT)" >&2; exit 1; }
done

dist_config() { # DATA PORT
  cat <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$2
EOF
}

# Prints the command line that serves registry $1 from data dir $2.
server_cmd() {
  case "$1" in
    berth) echo "$BERTH serve --listen 127.0.0.1:$BERTH_PORT --data-dir $2" ;;
    distribution)
      mkdir -p "$2"
      dist_config "$2/storage" "$DIST_PORT" > "$2/config.yml"
      echo "$DIST_BIN serve $2/config.yml" ;;
  esac
}
port_of() { [ "$1" = berth ] && echo "$BERTH_PORT" || echo "$DIST_PORT"; }

wait_ready() { # URL PID
  for _ in $(seq 1 3000); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${1##*:}") 2>/dev/null; then
      local code
      code=$(curl -s -o /dev/null -w '%{http_code}' "$1/v2/" || true)
      case "$code" in 200|401) return 0 ;; esac
    fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

export RUST_LOG=warn
# Berth's system admin, created on each fresh data directory; berth-bench
# reads the password from BERTH_BENCH_PASSWORD (Distribution ignores both).
BERTH_ADMIN_PASSWORD=$(openssl rand -hex 16)
export BERTH_ADMIN_PASSWORD BERTH_AUTH_AUTO_CREATE_PROJECTS=true
export BERTH_BENCH_PASSWORD=$BERTH_ADMIN_PASSWORD
# berth-bench's credentials for registry $1 (none for Distribution).
bench_auth() { [ "$1" = berth ] && echo "--user admin" || true; }
# Creates the project `bench` on Berth before the scenarios (the admin's first
# push would, but a scenario may read first: image-push HEADs its blobs): an
# upload session opened and cancelled (it leaves the empty repository
# bench/created).
create_bench_project() { # URL
  local loc
  loc=$(curl -sSf -u "admin:$BERTH_ADMIN_PASSWORD" -X POST -o /dev/null -D - \
    "$1/v2/bench/created/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
  [ -n "$loc" ] || return 1
  case "$loc" in http*) ;; *) loc="$1$loc" ;; esac
  curl -sSf -u "admin:$BERTH_ADMIN_PASSWORD" -X DELETE -o /dev/null "$loc"
}
QUICK_FLAG=
[ "$QUICK" = 1 ] && QUICK_FLAG=--quick
FAILED=0
START=$(date -u +%Y-%m-%dT%H:%MZ)

# Starts registry $1 on a fresh data directory and runs scenario group $3 of
# round $2 against it, appending the figures to the round's results.
run_group() { # REG ROUND GROUP
  local reg=$1 round=$2 group=$3 port url data out
  port=$(port_of "$reg")
  url="http://127.0.0.1:$port"
  out="$WORK/results/$reg-$round.jsonl"
  data="$WORK/data-$reg"
  [ ! -e "$data" ] || mv "$data" "$WORK/trash/stale-$RANDOM"
  # The other registry's writes still in the page cache would be written
  # back under this one's fsyncs (seen: push-chunked 446 MiB/s when Berth
  # went first, 224-245 right after Distribution): flush them first.
  sync
  # shellcheck disable=SC2046
  $(server_cmd "$reg" "$data") >> "$WORK/$reg-$round.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_ready "$url" "$SERVER_PID"; then
    echo "bench.sh: $reg did not become ready; log:" >&2
    tail -20 "$WORK/$reg-$round.log" >&2
    exit 1
  fi
  if [ "$reg" = berth ] && ! create_bench_project "$url"; then
    echo "bench.sh: could not create the project bench on berth" >&2
    exit 1
  fi
  # shellcheck disable=SC2046
  if ! "$BENCH" --url "$url" --label "$reg" --server-pid "$SERVER_PID" $(bench_auth "$reg") \
      --scenario "$group" --duration "$DURATION" $QUICK_FLAG >> "$out"; then
    log "round $round: $reg had errors in $group"
    FAILED=1
  fi
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  # Deleting a data dir of 10,000 repositories takes minutes of disk I/O:
  # set it aside and delete everything at the end, not under the next
  # measurement.
  mv "$data" "$WORK/trash/$reg-$round-$group-$RANDOM"
}

if [ "$SCENARIO" = all ]; then
  GROUP_LIST=$("$BENCH" scenarios)
else
  GROUP_LIST=${SCENARIO//,/ }
fi

for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS: machine limits"
  "$BENCH" limits --dir "$WORK/limits" $QUICK_FLAG > "$WORK/results/limits-$round.jsonl" || FAILED=1
  for reg in berth distribution; do
    log "round $round/$ROUNDS: $reg start-up"
    [ ! -e "$WORK/start-$reg" ] || mv "$WORK/start-$reg" "$WORK/trash/stale-$RANDOM"
    # shellcheck disable=SC2046
    "$BENCH" startup --url "http://127.0.0.1:$(port_of "$reg")" --label "$reg" -- \
      $(server_cmd "$reg" "$WORK/start-$reg") >> "$WORK/results/$reg-$round.jsonl" || FAILED=1
    mv "$WORK/start-$reg" "$WORK/trash/start-$reg-$round-$RANDOM" 2>/dev/null || true
  done
  # Each scenario group runs on both registries back to back, each on a fresh
  # server and data directory: this VM's disk slows down over minutes, so
  # running all of one registry's scenarios before the other's would compare
  # them on different disks; and a fresh server's peak RSS is that scenario's
  # own, not what earlier scenarios left on the heap. Which registry goes
  # first alternates from group to group and round to round.
  i=$round
  for group in $GROUP_LIST; do
    if [ $((i % 2)) = 1 ]; then order="berth distribution"; else order="distribution berth"; fi
    i=$((i + 1))
    for reg in $order; do
      log "round $round/$ROUNDS: $group on $reg"
      run_group "$reg" "$round" "$group"
    done
  done
done

rm -rf target/bench-results
mkdir -p target/bench-results
cp "$WORK"/results/*.jsonl target/bench-results/

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mode="full sizes"
[ "$QUICK" = 1 ] && mode="**quick** (small sizes: not comparable to the targets)"
dist_version=$("$DIST_BIN" --version 2>/dev/null | head -1 || echo unknown)
log "report -> $OUT"
"$BENCH" report "$WORK"/results/*.jsonl --out "$OUT" \
  --meta "date=$START" \
  --meta "rounds=$ROUNDS, $mode, fixed-duration scenarios $DURATION each; each scenario group on a fresh server and data directory after a sync, the two registries back to back (which goes first alternates)" \
  --meta "berth=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)'), release build, embedded defaults (filesystem + SQLite), authentication on (berth-bench logs in as the admin: Bearer tokens)" \
  --meta "distribution=$dist_version, filesystem storage, in-memory blob descriptor cache, log level warn, no authentication" \
  --meta "machine=$(nproc) cores ($cpu), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -r); data on $(df --output=source,fstype "$WORK" | tail -1 | tr -s ' ')" \
  --meta "client=berth-bench on the same machine (shares the cores with the server)"

if [ "$FAILED" != 0 ]; then
  echo "bench.sh: some scenarios had errors (see above and $OUT)" >&2
  exit 1
fi
log "done; raw results in target/bench-results/"
