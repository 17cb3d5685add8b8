#!/usr/bin/env bash
# `secretgen generate` against a plain rand 0.10 program, whole processes into a pipe.
#
#   bash benches/cli.sh [COUNT] [RUNS]      # defaults: 20000000 codes, 5 runs each
#
# Builds the release binary and examples/rand_choose.rs, then times, in turn and RUNS times
# each after one warm-up run of each:
#   - secretgen generate with alnum8 codes (8 of the 62 characters A-Za-z0-9: OTP_SMS with
#     --length 8 --lower --upper --digits), its default threads (one per core);
#   - the same with --threads 1;
#   - rand_choose: rand 0.10's `IndexedRandom::choose` over `StdRng`, 8 characters of the same
#     62 per code, one line each through a 64 KiB buffer.
# Each command writes COUNT lines into a pipe read by `cat > /dev/null`; the time is wall
# time from start to the pipeline's end (both processes, start-up included). Prints each
# run, the medians and rand's median divided by each secretgen median (higher is faster).
set -euo pipefail

COUNT=${1:-20000000}
RUNS=${2:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin secretgen --example rand_choose
target=${CARGO_TARGET_DIR:-target}/release
secretgen=$target/secretgen
rand_choose=$target/examples/rand_choose

alnum8=(generate OTP_SMS --length 8 --lower --upper --digits --count "$COUNT")
# No store: the default configuration of OTP_SMS, changed by the flags above.
export SECRETGEN_DATA_DIR=/nonexistent/secretgen-bench

# Prints the wall milliseconds of one run of "$@" into `cat > /dev/null`.
time_ms() {
    local start end
    start=$(date +%s%N)
    "$@" | cat > /dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

median() {
    printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# The lines are right before anything is timed.
lines=$("$secretgen" "${alnum8[@]}" | head -c 900000 | grep -cE '^[A-Za-z0-9]{8}$')
[ "$lines" = 100000 ] || { echo "unexpected output from secretgen generate" >&2; exit 1; }
lines=$("$rand_choose" "$COUNT" | head -c 900000 | grep -cE '^[A-Za-z0-9]{8}$')
[ "$lines" = 100000 ] || { echo "unexpected output from rand_choose" >&2; exit 1; }

threads_default=() threads_one=() rand=()
time_ms "$secretgen" "${alnum8[@]}" > /dev/null
time_ms "$secretgen" "${alnum8[@]}" --threads 1 > /dev/null
time_ms "$rand_choose" "$COUNT" > /dev/null
for run in $(seq "$RUNS"); do
    threads_default+=("$(time_ms "$secretgen" "${alnum8[@]}")")
    threads_one+=("$(time_ms "$secretgen" "${alnum8[@]}" --threads 1)")
    rand+=("$(time_ms "$rand_choose" "$COUNT")")
    echo "run $run: generate ${threads_default[-1]} ms, generate --threads 1 ${threads_one[-1]} ms, rand_choose ${rand[-1]} ms"
done

m_default=$(median "${threads_default[@]}")
m_one=$(median "${threads_one[@]}")
m_rand=$(median "${rand[@]}")
echo
echo "$COUNT alnum8 codes into a pipe, medians of $RUNS runs ($(nproc) cores):"
printf '  %-60s %6d ms\n' "secretgen ${alnum8[*]}" "$m_default" \
    "secretgen ${alnum8[*]} --threads 1" "$m_one" \
    "rand_choose $COUNT (rand 0.10 choose)" "$m_rand"
awk -v r="$m_rand" -v d="$m_default" -v o="$m_one" 'BEGIN {
    printf "  rand_choose / generate:              %.2fx\n", r / d
    printf "  rand_choose / generate --threads 1:  %.2fx\n", r / o
}'
