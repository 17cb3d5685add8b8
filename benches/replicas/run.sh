#!/usr/bin/env bash
# PostgreSQL replicas: propagation delay, PUT latency and _generate throughput, on 127.0.0.1.
#
#   bash benches/replicas/run.sh [changes] [seconds per wrk run] [rounds]   (defaults: 200, 5, 3)
#
# 1. Starts 3 release servers (--workers 1) on one fresh PostgreSQL database, makes CHANGES
#    configuration changes (PUT OTP_SMS on one replica, rotating) and, from the moment each
#    PUT's answer arrives, polls the two others every 1 ms (persistent connections) until they
#    serve the new sequence (measure.py). Reports p50/p99/max of that delay (goal: p99 <= 100 ms).
# 2. Reports p50/p99 of the PUT round trip of the same run.
# 3. Compares POST _generate {"count":1} throughput of a PostgreSQL-backed replica against a
#    SQLite-backed server (--data-dir, fresh temp folder, --workers 1): wrk -t1 -c64, the two
#    alternating, ROUNDS rounds; reports medians and the ratio pg/sqlite.
#
# The database is created under SECRETGEN_BENCH_DATABASE_URL (default
# postgres://root@127.0.0.1:5432/postgres) as sg_bench_PID and dropped on exit (also on Ctrl-C).
# Needs psql, Python 3 and wrk (apt-get install wrk). If PostgreSQL is down, start it with
#   pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
set -euo pipefail
CHANGES="${1:-200}"
WRK_SECONDS="${2:-5}"
WRK_ROUNDS="${3:-3}"
COMMAND="bash benches/replicas/run.sh $CHANGES $WRK_SECONDS $WRK_ROUNDS"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE_URL="${SECRETGEN_BENCH_DATABASE_URL:-postgres://root@127.0.0.1:5432/postgres}"
[[ "$CHANGES" =~ ^[0-9]+$ && "$CHANGES" -ge 3 && "$CHANGES" -le 100000 ]] ||
    { echo "changes must be a number from 3 to 100000" >&2; exit 2; }
[[ "$WRK_SECONDS" =~ ^[0-9]+$ && "$WRK_SECONDS" -ge 1 && "$WRK_SECONDS" -le 600 ]] ||
    { echo "seconds per wrk run must be from 1 to 600" >&2; exit 2; }
[[ "$WRK_ROUNDS" =~ ^[0-9]+$ && "$WRK_ROUNDS" -ge 1 && "$WRK_ROUNDS" -le 50 ]] ||
    { echo "rounds must be from 1 to 50" >&2; exit 2; }
command -v psql >/dev/null || { echo "psql is needed: apt-get install postgresql-client" >&2; exit 2; }
if ! psql "$BASE_URL" -XAtqc 'SELECT 1' >/dev/null 2>&1; then
    echo "PostgreSQL is down or unreachable at $BASE_URL; start it with:" >&2
    echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
    exit 1
fi

# benches/load/wrk.sh: cd to the repository's root, checks for wrk, builds the release binary
# (cargo build --release --quiet) and defines wrk_run, median, write_requests (and, through
# .ci/serve.sh, an EXIT trap that the one below replaces and calls).
# shellcheck source=../load/wrk.sh
. "$HERE/../load/wrk.sh" "$WRK_SECONDS" 64 "$WRK_ROUNDS"
BIN=./target/release/secretgen

DB="sg_bench_$$"
DB_URL="${BASE_URL%/*}/$DB"
TOKEN="$(python3 -c 'import secrets, string
print("sg_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43)))')"
TMP="$(mktemp -d)"
PIDS=()
DB_CREATED=0
cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_servers
    if [ "$DB_CREATED" = 1 ]; then
        psql "$BASE_URL" -XAtqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null ||
            echo "could not drop database $DB" >&2
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

psql "$BASE_URL" -XAtqc "CREATE DATABASE $DB" >/dev/null
DB_CREATED=1

# start NAME SERVE_FLAGS...: starts a server, waits (at most 20 s) for its
# "listening on http://127.0.0.1:PORT" line and sets PORT.
start() {
    local name="$1" i
    shift
    SECRETGEN_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --grpc-listen off --bootstrap-token "$TOKEN" --workers 1 \
        "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=("$!")
    for i in $(seq 200); do
        PORT="$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$TMP/$name.out")"
        [ -n "$PORT" ] && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "server $name did not start:" >&2
    cat "$TMP/$name.err" >&2
    exit 1
}

# The three replicas start together (one instance, one first token between them).
start pg-a --database-url "$DB_URL"
PORT_A="$PORT"
start pg-b --database-url "$DB_URL"
PORT_B="$PORT"
start pg-c --database-url "$DB_URL"
PORT_C="$PORT"
start sqlite --data-dir "$TMP/sqlite-data"
PORT_SQLITE="$PORT"

# 1 and 2: propagation delay and PUT latency.
echo "propagation: $CHANGES changes over replicas $PORT_A $PORT_B $PORT_C ..." >&2
timeout $((CHANGES * 12 + 60)) python3 "$HERE/measure.py" "$TOKEN" "$CHANGES" \
    "$PORT_A" "$PORT_B" "$PORT_C" >"$TMP/measure"
read -r _ D50 D99 DMAX DN DTIMEOUTS < <(grep '^delay ' "$TMP/measure")
read -r _ P50 P99 PMAX PN _ < <(grep '^put ' "$TMP/measure")

# 3: _generate throughput, PostgreSQL-backed replica A against the SQLite-backed server.
write_requests "$TMP"
RESULTS="$TMP/results"
: >"$RESULTS"
for port in "$PORT_A" "$PORT_SQLITE"; do # warm up
    wrk -t1 -c8 -d1s -s "$TMP/count1.lua" -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$port/v1/codes/OTP_SMS/_generate" >/dev/null
done
for round in $(seq "$WRK_ROUNDS"); do
    echo "wrk round $round/$WRK_ROUNDS ..." >&2
    # Alternate which one goes first, so that neither always gets the same moment.
    if [ $((round % 2)) = 1 ]; then order="pg sqlite"; else order="sqlite pg"; fi
    for name in $order; do
        if [ "$name" = pg ]; then port="$PORT_A"; else port="$PORT_SQLITE"; fi
        line="$(wrk_run "$TOKEN" -s "$TMP/count1.lua" \
            "http://127.0.0.1:$port/v1/codes/OTP_SMS/_generate")"
        echo "$name $line" >>"$RESULTS"
    done
done
PG_RPS="$(median "$RESULTS" pg 2)"
SQ_RPS="$(median "$RESULTS" sqlite 2)"

echo
echo "command: $COMMAND"
echo "machine: $(nproc) cores; PostgreSQL $(psql "$BASE_URL" -XAtqc 'SHOW server_version'); servers --workers 1"
echo
printf '%-46s %10s %10s %10s %8s\n' "" "p50 ms" "p99 ms" "max ms" samples
printf '%-46s %10s %10s %10s %8s\n' "propagation delay (PUT answer -> other replica)" \
    "$D50" "$D99" "$DMAX" "$DN"
printf '%-46s %10s %10s %10s %8s\n' "PUT round trip (PostgreSQL)" "$P50" "$P99" "$PMAX" "$PN"
awk -v p="$D99" -v t="$DTIMEOUTS" 'BEGIN {
    printf "goal p99 <= 100 ms: %s (%d replica-changes over 5 s timed out)\n",
        (p + 0 <= 100 && t == 0) ? "met" : "NOT met", t }'
echo
printf '%-46s %12s %10s %10s\n' "_generate count=1, median of $WRK_ROUNDS (${WRK_SECONDS}s, 64 conns)" \
    "requests/s" "p50 us" "p99 us"
printf '%-46s %12s %10s %10s\n' "PostgreSQL-backed replica" "$PG_RPS" \
    "$(median "$RESULTS" pg 3)" "$(median "$RESULTS" pg 4)"
printf '%-46s %12s %10s %10s\n' "SQLite-backed server (--data-dir)" "$SQ_RPS" \
    "$(median "$RESULTS" sqlite 3)" "$(median "$RESULTS" sqlite 4)"
awk -v a="$PG_RPS" -v b="$SQ_RPS" 'BEGIN { printf "ratio pg/sqlite: %.3f\n", a / b }'
echo
echo "per run (name requests/s p50_us p99_us):"
sed 's/^/  /' "$RESULTS"
