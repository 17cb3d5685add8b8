#!/usr/bin/env bash
# Memory and latency under three attacks, against a release server on 127.0.0.1.
#
#   bash benches/attacks/run.sh [SECONDS]        (default 20; each attack stops by itself)
#
# For each attack a fresh server is started (so that its VmHWM is the attack's own peak):
#   methods   8 connections send requests with random method names (a new name each time)
# (each attack from two attacker processes, half of the connections each)
#   pipeline  1000 clients pipeline POST _generate {"count":1000} and never read
#   headers   8000 connections each send 120 KiB of header lines and never finish the head
# While an attack runs, a well-behaved client (its own process and connection, one request
# at a time, GET /healthz and _generate count=1 in turn) measures its latencies. Prints, per
# attack: RSS when idle, peak (VmHWM), RSS 12 s after the attackers left (jemalloc gives freed memory back after its 10 s decay time), the well-behaved
# client's p50/p99/max and failed requests, and whether the server was still running.
#
# ATTACKS="pipeline headers" runs only those. SECRETGEN_BIN runs another binary (e.g. one built from an older commit) instead of building
# ./target/release/secretgen; SECRETGEN_SERVE_FLAGS adds flags to `serve`. Needs Python 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS_PER_ATTACK="${1:-20}"
ATTACK="python3 benches/attacks/attack.py"
if [ -z "${SECRETGEN_BIN:-}" ]; then
    cargo build --release --quiet
    SECRETGEN_BIN=./target/release/secretgen
fi
# shellcheck source=../../.ci/serve.sh
. .ci/serve.sh

kib() { awk "/^$1:/ {print \$2}" "/proc/$SERVER/status" 2>/dev/null || echo 0; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }

printf '%-9s %9s %10s %9s %8s %8s %8s %6s %s\n' attack "idle MiB" "peak MiB" "after MiB" \
    "p50 ms" "p99 ms" "max ms" fails server
for attack in ${ATTACKS:-methods pipeline headers}; do
    # shellcheck disable=SC2086
    start_server "$SECRETGEN_BIN" attack-token ${SECRETGEN_SERVE_FLAGS:-}
    port="${BASE##*:}"
    # Warm up: a few seconds of the well-behaved client alone.
    $ATTACK client "$port" "$TOKEN" --seconds 2 >/dev/null
    idle="$(kib VmRSS)"
    # The well-behaved client connects first (as a pooled client would be), then measures
    # from 2 s into the attack until 1 s before its end.
    timeout $((SECONDS_PER_ATTACK + 30)) $ATTACK client "$port" "$TOKEN" --after 3 \
        --seconds "$((SECONDS_PER_ATTACK - 3))" >"$WORK/client.json" &
    client=$!
    sleep 1
    # Two attacker processes (one Python process cannot keep the server busy), half each.
    case "$attack" in
        methods) args=(methods "$port" --conns 4) ;;
        pipeline) args=(pipeline "$port" "$TOKEN" --clients 500) ;;
        headers) args=(headers "$port" --conns 4000 --kib 120) ;;
    esac
    attackers=()
    for _ in 1 2; do
        timeout $((SECONDS_PER_ATTACK + 30)) $ATTACK "${args[@]}" --seconds "$SECONDS_PER_ATTACK" \
            2>>"$WORK/attack.log" &
        attackers+=($!)
    done
    wait "${attackers[@]}" || true
    wait "$client" || true
    sleep 12
    peak="$(kib VmHWM)"
    after="$(kib VmRSS)"
    alive=running
    kill -0 "$SERVER" 2>/dev/null || alive=DEAD
    read -r p50 p99 max fails < <(python3 -c 'import json,sys; r = json.load(sys.stdin)
print(r["p50_ms"], r["p99_ms"], r["max_ms"], "%d/%d" % (r["failures"], r["requests"]))' \
        <"$WORK/client.json" 2>/dev/null || echo "- - - -")
    printf '%-9s %9s %10s %9s %8s %8s %8s %6s %s\n' "$attack" "$(mib "$idle")" "$(mib "$peak")" \
        "$(mib "$after")" "$p50" "$p99" "$max" "$fails" "$alive"
    sed 's/^/    /' "$WORK/attack.log" >&2
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
done
