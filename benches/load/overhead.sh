#!/usr/bin/env bash
# What metrics and per-token rate limits cost on the _generate load benchmark.
#
#   bash benches/load/overhead.sh [SECONDS] [CONNECTIONS] [ROUNDS]    (defaults: 5, 64, 3)
#
# Starts four release servers on 127.0.0.1 side by side: neither feature (--metrics off, the
# base), metrics only (the default), rate limit only (--metrics off --rate-limit 1000000000: a
# limit so high it never refuses, so every request pays the check and nothing else) and both.
# Then, ROUNDS times over, runs wrk against each in turn for _generate with count 1 and with
# count 1000, and prints the median requests per second of each and its ratio to the base.
set -euo pipefail
DEFAULT_SECONDS=5
# shellcheck source=wrk.sh
. "$(dirname "$0")/wrk.sh" "$@"
BIN=./target/release/secretgen
HIGH=1000000000
VARIANTS=(base metrics ratelimit both)
declare -A FLAGS=(
    [base]="--metrics off"
    [metrics]="--metrics on"
    [ratelimit]="--metrics off --rate-limit $HIGH"
    [both]="--metrics on --rate-limit $HIGH"
)
declare -A URL AUTH
for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    start_server "$BIN" "load-$v" ${FLAGS[$v]}
    URL[$v]="$BASE" AUTH[$v]="$TOKEN"
done
write_requests "$WORK"
RESULTS="$WORK/results"

for v in "${VARIANTS[@]}"; do wrk -t1 -c8 -d1s "${URL[$v]}/healthz" >/dev/null; done
for _ in $(seq "$ROUNDS"); do
    for count in 1 1000; do
        for v in "${VARIANTS[@]}"; do
            record "$v/$count" "${AUTH[$v]}" -s "$WORK/count$count.lua" \
                "${URL[$v]}/v1/codes/OTP_SMS/_generate"
        done
    done
done

printf '%-36s %12s %12s %10s %10s\n' "median of $ROUNDS (${SECONDS_PER_RUN}s, ${CONNECTIONS} conns)" \
    "requests/s" "÷ base" "p50 us" "p99 us"
for count in 1 1000; do
    base="$(median "$RESULTS" "base/$count" 2)"
    for v in "${VARIANTS[@]}"; do
        rps="$(median "$RESULTS" "$v/$count" 2)"
        printf '%-36s %12s %12s %10s %10s\n' "_generate count=$count, $v" "$rps" \
            "$(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.3f", a / b}')" \
            "$(median "$RESULTS" "$v/$count" 3)" "$(median "$RESULTS" "$v/$count" 4)"
    done
done
