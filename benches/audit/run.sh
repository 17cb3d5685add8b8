#!/usr/bin/env bash
# The audit search's benchmark (SPEC section 13): a log of EVENTS events (default 1,000,000)
# built straight through the store API, pages of 100 timed on both stores, then a release
# server on that log with `_generate`'s p99 measured quiet and beside READERS (default 32)
# clients that each page through the whole log over and over.
#
#   bash benches/audit/run.sh [EVENTS] [SECONDS] [READERS]     (defaults: 1000000, 10, 32)
#
# PostgreSQL is measured when SECRETGEN_BENCH_DATABASE_URL names a server (a database
# secretgen_audit_bench is made on it, and dropped at the end). Everything talks to
# 127.0.0.1 only and stops by itself.
set -euo pipefail
EVENTS="${1:-1000000}"
SECONDS_PER_PHASE="${2:-10}"
READERS="${3:-32}"
cd "$(dirname "$0")/../.."
cargo build --release --bin secretgen --example audit_log
BENCH=./target/release/examples/audit_log
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
chmod 700 "$WORK"
DATA="$WORK/data"

echo "== SQLite: building a log of $EVENTS events"
"$BENCH" build sqlite "$DATA" "$EVENTS"
"$BENCH" page sqlite "$DATA" 200

if [ -n "${SECRETGEN_BENCH_DATABASE_URL:-}" ]; then
    PG_DB=secretgen_audit_bench
    psql "$SECRETGEN_BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB"
    PG_URL="${SECRETGEN_BENCH_DATABASE_URL%/*}/$PG_DB"
    echo "== PostgreSQL: building a log of $EVENTS events"
    "$BENCH" build postgres "$PG_URL" "$EVENTS"
    psql "$PG_URL" -qc "VACUUM ANALYZE events"
    "$BENCH" page postgres "$PG_URL" 200
    psql "$SECRETGEN_BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $PG_DB"
fi

echo "== HTTP: _generate beside $READERS full readers of the log (SQLite store, release)"
TOKEN="audit-benchmark-token-0123456789abcdef"
SECRETGEN_BOOTSTRAP_TOKEN="$TOKEN" ./target/release/secretgen serve --listen 127.0.0.1:0 \
    --grpc-listen off --data-dir "$DATA" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
for _ in $(seq 600); do
    BASE="$(sed -n 's#^listening on \(http://[^ ]*\).*#\1#p' "$WORK/out" | head -1)"
    [ -n "$BASE" ] && break
    sleep 0.1
done
[ -n "$BASE" ] || { cat "$WORK/err"; exit 1; }
"$BENCH" load "$BASE" "$TOKEN" "$SECONDS_PER_PHASE" "$READERS"
printf 'server peak memory (VmHWM): %s MiB\n' \
    "$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status")"
