#!/usr/bin/env bash
# Issuing and verifying codes under load (SPEC section 12), on 127.0.0.1, HTTP/1.1 keep-alive.
#
#   bash benches/verify/run.sh [SECONDS] [CONNECTIONS] [ROUNDS]    (defaults: 10, 64, 3)
#
# 1. The embedded store: one release server (fresh data directory). CONNECTIONS clients each
#    issue an OTP_SMS code for a subject of their own and verify it (examples/verify_load.rs),
#    ROUNDS runs of SECONDS: the median pairs a second and the p50/p99 of a pair (issue and
#    verify, both durable before their answers). Goal on a 2-core machine: >= 5,000 pairs a
#    second, p99 <= 20 ms.
# 2. _generate count=1 alone and beside a steady STEADY_PAIRS pairs a second (default 500)
#    on a new store; then on the server of 1. (its store grown by the pairs before: each
#    operation touches more pages) alone, beside the pairs (CONNECTIONS clients each, as many
#    pairs as the server takes) and beside the steady pairs: the ratios of _generate's calls a
#    second to alone (goal >= 0.9).
# 3. PostgreSQL (unless SECRETGEN_BENCH_DATABASE_URL is "off"): three release replicas on a
#    fresh database (created under SECRETGEN_BENCH_DATABASE_URL, default
#    postgres://root@127.0.0.1:5432/postgres, dropped at the end), the pairs spread over the
#    three (each pair verified on another replica than the one that issued it). Goal >= 2,000
#    pairs a second.
# ONLY=postgres runs part 3 alone; SECRETGEN_BENCH_DATABASE_URL=off leaves it out.
# Also prints this disk's fdatasync time (median of 200), which bounds a store's commits.
# The clients run on the same machine: on 2 cores they take CPU from the servers.
set -euo pipefail
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-64}"
ROUNDS="${3:-3}"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BASE_URL="${SECRETGEN_BENCH_DATABASE_URL:-postgres://root@127.0.0.1:5432/postgres}"
cargo build --release --quiet --bin secretgen --example verify_load
BIN=./target/release/secretgen
LOAD=./target/release/examples/verify_load
TOKEN="sg_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)"
TMP="$(mktemp -d)"
chmod 700 "$TMP"
DB=""
# The servers' pids, one a line: serve runs in a command substitution (a subshell), so they
# are kept in a file rather than a variable.
PIDS="$TMP/pids"
cleanup() {
    trap - EXIT INT TERM
    local pid
    for pid in $(cat "$PIDS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    # And whatever else this run started (the token is this run's own).
    pkill -f -- "--bootstrap-token $TOKEN" 2>/dev/null || true
    for pid in $(cat "$PIDS" 2>/dev/null); do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    done
    if [ -n "$DB" ]; then
        psql "$BASE_URL" -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# Starts a server with the flags given; prints its base URL once it listens.
serve() {
    local out="$TMP/serve.$RANDOM"
    "$BIN" serve --listen 127.0.0.1:0 --grpc-listen off --bootstrap-token "$TOKEN" \
        --verify-resend-after 0 --verify-issues-per-window 1000 "$@" >"$out" 2>"$out.err" &
    echo "$!" >>"$PIDS"
    for _ in $(seq 200); do
        if grep -q '^listening on http://' "$out"; then
            sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out" | head -1
            return
        fi
        sleep 0.05
    done
    echo "the server did not start:" >&2
    cat "$out.err" >&2
    exit 1
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Runs `verify_load MODE` ROUNDS times against the URLs; prints the median of each column of
# the lines named NAME: "NAME per_second p50 p99 failures".
measure() {
    local mode="$1" name="$2"
    shift 2
    local runs="$TMP/runs.$RANDOM"
    for _ in $(seq "$ROUNDS"); do
        "$LOAD" "$mode" "$TOKEN" "$SECONDS_PER_RUN" "$CONNECTIONS" "$@" >>"$runs"
    done
    local column
    for column in 2 3 4 5; do
        awk -v n="$name" -v c="$column" '$1 == n { print $c }' "$runs" | median | tr '\n' ' '
    done
    echo
}

python3 - <<'EOF'
import os, tempfile, time
fd, path = tempfile.mkstemp(dir=".")
times = []
for _ in range(200):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fdatasync(fd); times.append(time.perf_counter() - t)
os.close(fd); os.remove(path)
times.sort()
print(f"fdatasync on this disk: median {times[100] * 1e3:.3f} ms, p99 {times[198] * 1e3:.3f} ms")
EOF

echo "medians of $ROUNDS runs of ${SECONDS_PER_RUN}s, $CONNECTIONS clients"
if [ "${ONLY:-}" != postgres ]; then
STEADY="${STEADY_PAIRS:-500}"
NEW="$(serve --data-dir "$TMP/new")"
read -r NEW_ALONE _ <<<"$(measure generate generate "$NEW")"
read -r NEW_PACED _ <<<"$(PAIRS_PER_SECOND="$STEADY" measure both generate "$NEW")"
awk -v a="$NEW_ALONE" -v p="$NEW_PACED" -v s="$STEADY" 'BEGIN {
    printf "new store: _generate count=1: %d calls/s alone; beside a steady %d pairs/s %d (%.2f; goal >= 0.90)\n", a, s, p, p / a
}'
SQLITE="$(serve --data-dir "$TMP/data")"
read -r PAIRS P50 P99 FAILED <<<"$(measure pairs pairs "$SQLITE")"
printf 'embedded store: %s issue+verify pairs/s, pair p50 %s ms, p99 %s ms, %s failed (goal >= 5000, p99 <= 20 ms)\n' \
    "$PAIRS" "$P50" "$P99" "$FAILED"
read -r ALONE _ <<<"$(measure generate generate "$SQLITE")"
read -r BESIDE _ <<<"$(measure both generate "$SQLITE")"
read -r PACED _ <<<"$(PAIRS_PER_SECOND="$STEADY" measure both generate "$SQLITE")"
awk -v a="$ALONE" -v b="$BESIDE" -v p="$PACED" -v s="$STEADY" 'BEGIN {
    printf "grown store: _generate count=1: %d calls/s alone; beside as many pairs as the server takes %d (%.2f);\n", a, b, b / a
    printf "  beside a steady %d pairs/s %d (%.2f; goal >= 0.90)\n", s, p, p / a
}'
fi

if [ "$BASE_URL" = "off" ]; then
    exit 0
fi
if ! psql "$BASE_URL" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL is unreachable at $BASE_URL: replicas skipped" >&2
    exit 0
fi
DB="sg_verify_bench_$$"
psql "$BASE_URL" -XAtqc "CREATE DATABASE $DB" >/dev/null
DB_URL="${BASE_URL%/*}/$DB"
printf 'k1:%s\n' "$(head -c 32 /dev/urandom | base64)" >"$TMP/verify.key"
REPLICAS=()
for _ in 1 2 3; do
    REPLICAS+=("$(serve --database-url "$DB_URL" --verify-key-file "$TMP/verify.key" --workers 1)")
done
read -r PAIRS P50 P99 FAILED <<<"$(measure pairs pairs "${REPLICAS[@]}")"
printf 'three PostgreSQL replicas: %s pairs/s, pair p50 %s ms, p99 %s ms, %s failed (goal >= 2000)\n' \
    "$PAIRS" "$P50" "$P99" "$FAILED"
