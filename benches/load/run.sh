#!/usr/bin/env bash
# HTTP load benchmark: a release server on 127.0.0.1 against wrk (Debian: apt-get install wrk).
#
#   bash benches/load/run.sh [SECONDS] [CONNECTIONS]     (defaults: 10 seconds, 64 connections)
#
# Runs, one after the other against one server: GET /healthz, POST _generate with count 1,
# POST _generate with count 1000 (OTP_SMS, 8 digits). Prints requests per second, p50 and p99
# latency per run, the ratios the issue asks for, codes per second, and the server's peak
# memory (VmHWM). Extra flags for the server can be passed in SECRETGEN_SERVE_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-10}"
CONNECTIONS="${2:-64}"
THREADS="${WRK_THREADS:-1}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }

cargo build --release --quiet
# shellcheck source=../../.ci/serve.sh
. .ci/serve.sh
# shellcheck disable=SC2086
start_server ./target/release/secretgen load-benchmark-token ${SECRETGEN_SERVE_FLAGS:-}

cat >"$WORK/count1.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"count": 1}'
wrk.headers["Content-Type"] = "application/json"
LUA
cat >"$WORK/count1000.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"count": 1000}'
wrk.headers["Content-Type"] = "application/json"
LUA

# Prints "rps p50 p99" of one wrk run (latencies in microseconds).
run() {
    local out
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "Authorization: Bearer $TOKEN" "$@")"
    if grep -q 'Non-2xx' <<<"$out"; then echo "errors in run: $out" >&2; exit 1; fi
    local rps p50 p99
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    echo "$rps $(to_us "$p50") $(to_us "$p99")"
}
to_us() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /s$/) f = 1000000; printf "%.0f", n * f }'
}

# Warm up, then measure.
wrk -t1 -c8 -d1s "$BASE/healthz" >/dev/null
read -r H_RPS H_P50 H_P99 <<<"$(run "$BASE/healthz")"
read -r C1_RPS C1_P50 C1_P99 <<<"$(run -s "$WORK/count1.lua" "$BASE/v1/codes/OTP_SMS/_generate")"
read -r CK_RPS CK_P50 CK_P99 <<<"$(run -s "$WORK/count1000.lua" "$BASE/v1/codes/OTP_SMS/_generate")"
PEAK_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")"

printf '%-28s %12s %10s %10s\n' "run (${SECONDS_PER_RUN}s, ${CONNECTIONS} conns)" "requests/s" "p50 us" "p99 us"
printf '%-28s %12s %10s %10s\n' "GET /healthz" "$H_RPS" "$H_P50" "$H_P99"
printf '%-28s %12s %10s %10s\n' "_generate count=1" "$C1_RPS" "$C1_P50" "$C1_P99"
printf '%-28s %12s %10s %10s\n' "_generate count=1000" "$CK_RPS" "$CK_P50" "$CK_P99"
awk -v h="$H_RPS" -v c1="$C1_RPS" -v ck="$CK_RPS" -v kb="$PEAK_KB" 'BEGIN {
    printf "count=1 / healthz: %.1f%% (target >= 85%%)\n", 100 * c1 / h
    printf "codes per second with count=1000: %.2f million (target >= 5)\n", ck * 1000 / 1e6
    printf "server peak memory (VmHWM): %.1f MiB\n", kb / 1024
}'
