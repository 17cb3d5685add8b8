#!/usr/bin/env bash
# HTTP load benchmark: a release server on 127.0.0.1 against wrk (Debian: apt-get install wrk).
#
#   bash benches/load/run.sh [SECONDS] [CONNECTIONS] [ROUNDS]    (defaults: 10, 64, 3)
#
# Runs, against one server, GET /healthz, POST _generate with count 1 and POST _generate with
# count 1000 (OTP_SMS, 8 digits), one after the other, ROUNDS times over (so that a slow
# moment of the machine does not land on one of them only). Prints the median requests per
# second, p50 and p99 latency of each, the ratios the issue asks for, codes per second, and the
# server's peak memory (VmHWM). Extra flags for the server can be passed in
# SECRETGEN_SERVE_FLAGS. benches/load/overhead.sh measures what metrics and rate limits cost.
set -euo pipefail
DEFAULT_SECONDS=10
# shellcheck source=wrk.sh
. "$(dirname "$0")/wrk.sh" "$@"
# shellcheck disable=SC2086
start_server ./target/release/secretgen load-benchmark-token ${SECRETGEN_SERVE_FLAGS:-}
write_requests "$WORK"
GENERATE="$BASE/v1/codes/OTP_SMS/_generate"

# Warm up, then measure.
wrk -t1 -c8 -d1s "$BASE/healthz" >/dev/null
RESULTS="$WORK/results"
for _ in $(seq "$ROUNDS"); do
    record healthz "$TOKEN" "$BASE/healthz"
    record count1 "$TOKEN" -s "$WORK/count1.lua" "$GENERATE"
    record count1000 "$TOKEN" -s "$WORK/count1000.lua" "$GENERATE"
done
PEAK_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")"

printf '%-34s %12s %10s %10s\n' "median of $ROUNDS (${SECONDS_PER_RUN}s, ${CONNECTIONS} conns)" \
    "requests/s" "p50 us" "p99 us"
for name in healthz count1 count1000; do
    case "$name" in
        healthz) label="GET /healthz" ;;
        count1) label="_generate count=1" ;;
        count1000) label="_generate count=1000" ;;
    esac
    printf '%-34s %12s %10s %10s\n' "$label" "$(median "$RESULTS" "$name" 2)" \
        "$(median "$RESULTS" "$name" 3)" "$(median "$RESULTS" "$name" 4)"
done
awk -v h="$(median "$RESULTS" healthz 2)" -v c1="$(median "$RESULTS" count1 2)" \
    -v ck="$(median "$RESULTS" count1000 2)" -v kb="$PEAK_KB" 'BEGIN {
    printf "count=1 / healthz: %.1f%% (target >= 90%%)\n", 100 * c1 / h
    printf "codes per second with count=1000: %.2f million (target >= 5)\n", ck * 1000 / 1e6
    printf "server peak memory (VmHWM): %.1f MiB\n", kb / 1024
}'
