#!/usr/bin/env bash
# gRPC load benchmark: one release server, HTTP and gRPC side by side in one run.
#
#   bash benches/grpc/run.sh [SECONDS] [IN_FLIGHT] [ROUNDS]    (defaults: 10, 64, 3)
#
# Each round measures, one after the other on the same server (OTP_SMS, 8 digits):
#   http     POST _generate count=1 with wrk: IN_FLIGHT connections;
#   grpc     CodeService.Generate count=1 with h2load (nghttp2's HTTP/2 load tool, C like
#            wrk): IN_FLIGHT calls at once over 4 connections;
#   tonic    the same calls from tonic's own client (examples/grpc_load.rs), for reference;
#   stream1  CodeService.GenerateStream, 1 stream of 10,000,000 codes (tonic's client);
#   stream4  4 such streams at once.
# Every load client runs on one thread. h2load counts HTTP statuses, not gRPC ones: the
# script fails unless the server's metrics count every gRPC call as OK. Prints the medians,
# the grpc/http ratio (goal >= 1.0), stream codes per second (goal >= 30 million) and the
# server's peak memory (VmHWM).
set -euo pipefail
DEFAULT_SECONDS=10
IN_FLIGHT="${2:-64}"
# shellcheck source=../load/wrk.sh
. "$(dirname "$0")/../load/wrk.sh" "${1:-}" "$IN_FLIGHT" "${3:-}"
command -v h2load >/dev/null || { echo "h2load is needed: apt-get install nghttp2-client" >&2; exit 2; }
cargo build --release --quiet --example grpc_load
LOAD=./target/release/examples/grpc_load
GRPC_LISTEN=127.0.0.1:0 start_server ./target/release/secretgen grpc-benchmark-token
write_requests "$WORK"
GENERATE="$BASE/v1/codes/OTP_SMS/_generate"
# A GenerateRequest{generator_type: OTP_SMS (7)} in a gRPC frame: no compression, length 2.
printf '\x00\x00\x00\x00\x02\x08\x07' >"$WORK/generate.bin"

# h2load_run: prints "calls_per_second mean_us" of one run.
h2load_run() {
    local out
    out="$(h2load -t1 -c4 -m"$((IN_FLIGHT / 4))" -D"$SECONDS_PER_RUN" -d "$WORK/generate.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $TOKEN" \
        "http://$GRPC/secretgen.v1.CodeService/Generate")"
    awk '/^finished in/ {rps = $4} /^time for request:/ {mean = $6}
        END {m = mean + 0; if (mean ~ /ms$/) m *= 1000; else if (mean ~ /us$/) m += 0; else m *= 1e6;
             printf "%s %.0f -\n", rps, m}' <<<"$out"
}

wrk -t1 -c8 -d1s "$BASE/healthz" >/dev/null
RESULTS="$WORK/results"
for _ in $(seq "$ROUNDS"); do
    record http "$TOKEN" -s "$WORK/count1.lua" "$GENERATE"
    echo "grpc $(h2load_run)" >>"$RESULTS"
    echo "tonic $("$LOAD" generate "$GRPC" "$TOKEN" "$SECONDS_PER_RUN" 4 "$IN_FLIGHT")" >>"$RESULTS"
    echo "stream1 $("$LOAD" stream "$GRPC" "$TOKEN" 10000000 1) -" >>"$RESULTS"
    echo "stream4 $("$LOAD" stream "$GRPC" "$TOKEN" 10000000 4) -" >>"$RESULTS"
done
PEAK_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER/status")"
NOT_OK="$(curl -s "$BASE/metrics" | grep '^secretgen_grpc_requests_total' | grep -v 'code="OK"' || true)"
[ -z "$NOT_OK" ] || { echo "gRPC calls that were not OK: $NOT_OK" >&2; exit 1; }

printf '%-46s %14s %10s %10s\n' "median of $ROUNDS (${SECONDS_PER_RUN}s, ${IN_FLIGHT} in flight)" \
    "per second" "p50 us" "p99 us"
printf '%-46s %14s %10s %10s\n' "HTTP _generate count=1, wrk (requests)" "$(median "$RESULTS" http 2)" \
    "$(median "$RESULTS" http 3)" "$(median "$RESULTS" http 4)"
printf '%-46s %14s %10s %10s\n' "gRPC Generate count=1, h2load (calls)" "$(median "$RESULTS" grpc 2)" \
    "mean $(median "$RESULTS" grpc 3)" "-"
printf '%-46s %14s %10s %10s\n' "gRPC Generate count=1, tonic client (calls)" "$(median "$RESULTS" tonic 2)" \
    "$(median "$RESULTS" tonic 3)" "$(median "$RESULTS" tonic 4)"
printf '%-46s %14s %10s\n' "GenerateStream, 1 x 10M codes (codes)" "$(median "$RESULTS" stream1 2)" \
    "$(median "$RESULTS" stream1 3)s"
printf '%-46s %14s %10s\n' "GenerateStream, 4 x 10M codes at once (codes)" "$(median "$RESULTS" stream4 2)" \
    "$(median "$RESULTS" stream4 3)s"
awk -v h="$(median "$RESULTS" http 2)" -v g="$(median "$RESULTS" grpc 2)" \
    -v t="$(median "$RESULTS" tonic 2)" -v s1="$(median "$RESULTS" stream1 2)" \
    -v s4="$(median "$RESULTS" stream4 2)" -v kb="$PEAK_KB" 'BEGIN {
    printf "gRPC Generate / HTTP _generate: %.2fx with h2load (goal >= 1.0), %.2fx with tonic'"'"'s client\n", g / h, t / h
    printf "GenerateStream: %.1f million codes a second (1 stream), %.1f million (4 streams) (goal >= 30)\n", s1 / 1e6, s4 / 1e6
    printf "server peak memory (VmHWM): %.1f MiB\n", kb / 1024
}'
