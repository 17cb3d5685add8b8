# Sourced first by the scripts of benches/load/, with their arguments
# [SECONDS] [CONNECTIONS] [ROUNDS] (SECONDS defaults to the caller's DEFAULT_SECONDS):
# moves to the repository's root, builds the release binary, brings in .ci/serve.sh and
# defines the helpers for wrk runs against a secretgen server.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS_PER_RUN="${1:-$DEFAULT_SECONDS}"
CONNECTIONS="${2:-64}"
ROUNDS="${3:-3}"
THREADS="${WRK_THREADS:-1}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
# shellcheck source=../../.ci/serve.sh
. .ci/serve.sh

# Writes the request scripts for _generate with count 1 and 1000 into folder $1.
write_requests() {
    local count
    for count in 1 1000; do
        cat >"$1/count$count.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"count": $count}'
wrk.headers["Content-Type"] = "application/json"
LUA
    done
}

# wrk_run TOKEN [WRK ARGS...] URL: prints "rps p50 p99" of one run (latencies in
# microseconds); a run with any answer other than 2xx stops the script.
wrk_run() {
    local token="$1" out rps p50 p99
    shift
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -H "Authorization: Bearer $token" "$@")"
    if grep -q 'Non-2xx' <<<"$out"; then echo "errors in run: $out" >&2; exit 1; fi
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    echo "$rps $(to_us "$p50") $(to_us "$p99")"
}

to_us() {
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) f = 1; else if (v ~ /ms$/) f = 1000; else if (v ~ /s$/) f = 1000000; printf "%.0f", n * f }'
}

# median FILE NAME COLUMN: the median of column COLUMN (2 = rps, 3 = p50, 4 = p99) over the
# lines of FILE whose first field is NAME (the lower middle one for an even count).
median() {
    awk -v n="$2" -v c="$3" '$1 == n {print $c}' "$1" | sort -g |
        awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

# record NAME TOKEN [WRK ARGS...] URL: one wrk_run, appended to $RESULTS as "NAME rps p50 p99".
record() {
    local name="$1" line
    shift
    line="$(wrk_run "$@")"
    echo "$name $line" >>"$RESULTS"
}
