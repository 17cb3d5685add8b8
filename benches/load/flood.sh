#!/usr/bin/env bash
# What a flood of unknown tokens costs the callers that carry a known one (issue 13).
#
#   bash benches/load/flood.sh [SECONDS] [CONNECTIONS] [ROUNDS]    (defaults: 10, 64, 3)
#
# Against one release server: wrk sends POST _generate (count 1) with the bootstrap token,
# alone; then the same wrk again while a second wrk (8 connections) sends the same request
# with a new random token on every request, each of which the server must look for (401).
# Alternates the two ROUNDS times and prints the medians of the valid callers' requests per
# second, p50 and p99, with and without the flood, the ratio, and how many 401s the flood got
# answered. Everything shares the machine's cores: the ratio includes the CPU the flood itself
# takes from the server.
set -euo pipefail
DEFAULT_SECONDS=10
# shellcheck source=wrk.sh
. "$(dirname "$0")/wrk.sh" "$@"
start_server ./target/release/secretgen flood-benchmark-token
write_requests "$WORK"
GENERATE="$BASE/v1/codes/OTP_SMS/_generate"
cat >"$WORK/guess.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"count": 1}'
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time())
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
request = function()
    local t = {}
    for i = 1, 43 do
        local k = math.random(#chars)
        t[i] = chars:sub(k, k)
    end
    wrk.headers["Authorization"] = "Bearer sg_" .. table.concat(t)
    return wrk.format()
end
LUA

wrk -t1 -c8 -d1s "$BASE/healthz" >/dev/null
RESULTS="$WORK/results"
for _ in $(seq "$ROUNDS"); do
    record clean "$TOKEN" -s "$WORK/count1.lua" "$GENERATE"
    wrk -t1 -c8 -d"$((SECONDS_PER_RUN + 2))s" -s "$WORK/guess.lua" "$GENERATE" >"$WORK/flood.out" &
    FLOOD=$!
    sleep 1
    record flooded "$TOKEN" -s "$WORK/count1.lua" "$GENERATE"
    wait "$FLOOD"
    awk '/^Requests\/sec:/ {print "flood", $2}' "$WORK/flood.out" >>"$RESULTS"
    grep -q 'Non-2xx' "$WORK/flood.out" || { echo "the flood got no 401s" >&2; exit 1; }
done

printf '%-40s %12s %10s %10s\n' "median of $ROUNDS (${SECONDS_PER_RUN}s, ${CONNECTIONS} conns)" \
    "requests/s" "p50 us" "p99 us"
printf '%-40s %12s %10s %10s\n' "known token alone" "$(median "$RESULTS" clean 2)" \
    "$(median "$RESULTS" clean 3)" "$(median "$RESULTS" clean 4)"
printf '%-40s %12s %10s %10s\n' "known token beside the flood" "$(median "$RESULTS" flooded 2)" \
    "$(median "$RESULTS" flooded 3)" "$(median "$RESULTS" flooded 4)"
printf '%-40s %12s\n' "the flood's unknown tokens (401s)" "$(median "$RESULTS" flood 2)"
awk -v c="$(median "$RESULTS" clean 2)" -v f="$(median "$RESULTS" flooded 2)" 'BEGIN {
    printf "beside the flood / alone: %.2f (goal >= 0.8)\n", f / c
}'
