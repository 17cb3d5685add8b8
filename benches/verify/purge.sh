#!/usr/bin/env bash
# The purge of issued codes at size (SPEC section 12): after COUNT issued-and-expired codes the
# store holds none of them.
#
#   bash benches/verify/purge.sh [COUNT]    (default 1000000)
#
# One release server on a fresh embedded store, with a window of 1 s (expired codes are kept
# one window, then purged; the purge runs every 10 s) and OTP_SMS codes that expire after 1 s.
# examples/verify_load.rs (ISSUE_ONLY=1) issues codes to new subjects over 64 connections until
# the server's secretgen_codes_issued counter reaches COUNT; then `secretgen check` is read every
# 2 s until it finds no code and no subject. Prints the issue rate, the store's size (the file
# and its WAL) at the end of the issues and after the purge, and how long the purge took.
set -euo pipefail
COUNT="${1:-1000000}"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release --quiet --bin secretgen --example verify_load
BIN=./target/release/secretgen
LOAD=./target/release/examples/verify_load
TOKEN="sg_$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)"
TMP="$(mktemp -d)"
chmod 700 "$TMP"
PID=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$BIN" serve --listen 127.0.0.1:0 --grpc-listen off --bootstrap-token "$TOKEN" \
    --data-dir "$TMP/data" --verify-window 1s --verify-resend-after 0 \
    --verify-issues-per-window 1000 >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 200); do
    grep -q '^listening on http://' "$TMP/out" && break
    sleep 0.05
done
BASE="$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$TMP/out" | head -1)"
[ -n "$BASE" ] || { cat "$TMP/err" >&2; exit 1; }
curl -fsS -X PUT "$BASE/admin/v1/secretgenerators/OTP_SMS" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"length": 6, "expiry": "1s", "includeDigits": true}' >/dev/null

issued() {
    curl -fsS "$BASE/metrics" -H "Authorization: Bearer $TOKEN" |
        awk '/^secretgen_codes_issued/ { n += $NF } END { printf "%d\n", n }'
}
size() { du -cb "$TMP/data"/*.db* 2>/dev/null | tail -1 | cut -f1; }
stored() {
    "$BIN" check --data-dir "$TMP/data" 2>/dev/null |
        sed -n 's/^issued codes: \([0-9]*\) stored for \([0-9]*\) subjects.*/\1 \2/p'
}

started=$(date +%s%N)
while [ "$(issued)" -lt "$COUNT" ]; do
    ISSUE_ONLY=1 "$LOAD" pairs "$TOKEN" 10 64 "$BASE" >/dev/null
done
took=$(( ($(date +%s%N) - started) / 1000000 ))
total="$(issued)"
echo "issued $total codes in $(( took / 1000 )) s ($(( total * 1000 / took )) a second)"
echo "at the end of the issues: $(stored | awk '{ print $1 " codes, " $2 " subjects" }'), store $(( $(size) / 1048576 )) MiB"
purge_started=$(date +%s%N)
while :; do
    read -r codes subjects <<<"$(stored)"
    if [ "${codes:-1}" = 0 ] && [ "${subjects:-1}" = 0 ]; then
        break
    fi
    if [ $(( ($(date +%s%N) - purge_started) / 1000000000 )) -gt 600 ]; then
        echo "after 600 s the store still holds $codes codes and $subjects subjects" >&2
        exit 1
    fi
    sleep 2
done
echo "purged to 0 codes and 0 subjects $(( ($(date +%s%N) - purge_started) / 1000000 )) ms after the last issue; store $(( $(size) / 1048576 )) MiB"
