#!/usr/bin/env bash
# Memory and latency under attack, against a release server on 127.0.0.1 (both ports).
#
#   bash benches/attacks/run.sh [SECONDS]        (default 30; each attack stops by itself)
#
# For each attack a fresh server is started, with the default timeouts (10 s) and connection
# cap (256); its VmHWM is reset once it is warm, so that the peak is the attack's own. From
# two attacker processes, half of the connections each:
#   methods    8 connections send requests with random method names (a new name each time)
#   pipeline   1000 clients pipeline POST _generate {"count":1000} and never read
#   headers    8000 connections each send 120 KiB of header lines and never finish the head
#   slowread   300 connections pipeline GET /openapi.json and never read; reopened when closed
#   silent     300 TCP connections to the gRPC port that never send a byte; reopened
#   streamsN   N HTTP/2 connections to the gRPC port, each with 1 GiB windows and 32 streams
#              of GenerateStream (10,000,000 codes) never read; reopened (streams16, streams256)
#   audit      32 readers that page through a log of AUDIT_EVENTS events (default 1,000,000,
#              built once by examples/audit_log.rs) 1000 events a page, over and over
# While an attack runs, three well-behaved clients (processes of their own, one request at a
# time) measure their latencies: "kept" on one kept HTTP connection (GET /healthz and
# _generate count=1 in turn), "new HTTP" the same requests each on a NEW connection (what a
# client locked out sees), "new gRPC" CodeService.Generate as grpc-web over HTTP/1.1 on the
# gRPC port, each on a NEW connection. A request unanswered in 30 s is a failure. Prints, per
# attack: RSS when idle, peak (VmHWM), RSS 12 s after the attackers left (jemalloc gives freed
# memory back after its 10 s decay time), each client's p50/p99/max in ms and its failed
# requests, and whether the server was still running.
#
# ATTACKS="pipeline headers" runs only those. SECRETGEN_BIN runs another binary (e.g. one
# built from an older commit) instead of building ./target/release/secretgen;
# SECRETGEN_SERVE_FLAGS adds flags to `serve`. Needs Python 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECONDS_PER_ATTACK="${1:-30}"
ATTACK="python3 benches/attacks/attack.py"
if [ -z "${SECRETGEN_BIN:-}" ]; then
    cargo build --release --quiet
    SECRETGEN_BIN=./target/release/secretgen
fi
AUDIT_LOG=""
remove_audit_log() { [ -z "$AUDIT_LOG" ] || rm -rf "$AUDIT_LOG"; }
# shellcheck source=../../.ci/serve.sh
. .ci/serve.sh

kib() { awk "/^$1:/ {print \$2}" "/proc/$SERVER/status" 2>/dev/null || echo 0; }
mib() { awk -v k="${1:-0}" 'BEGIN { printf "%.1f", k / 1024 }'; }

# "p50/p99/max fails/requests" of a client's JSON line.
figures() {
    python3 -c 'import json,sys; r = json.load(sys.stdin)
print("%s/%s/%s %d/%d" % (r["p50_ms"], r["p99_ms"], r["max_ms"], r["failures"], r["requests"]))' \
        <"$1" 2>/dev/null || echo "-"
}
ROW='%-10s %6s %7s %7s  %-28s %-28s %-28s %s\n'
# shellcheck disable=SC2059
printf "$ROW" attack idle peak after "kept: p50/p99/max ms fails" "new HTTP: p50/p99/max fails" \
    "new gRPC: p50/p99/max fails" server
# shellcheck disable=SC2059
printf "$ROW" "" MiB MiB MiB "" "" "" ""
for attack in ${ATTACKS:-methods pipeline headers slowread silent streams16 streams256 audit}; do
    data=""
    if [ "$attack" = audit ]; then
        if [ -z "$AUDIT_LOG" ]; then
            AUDIT_LOG="$(mktemp -d)"
            trap 'stop_servers; remove_audit_log' EXIT
            cargo build --release --quiet --example audit_log
            ./target/release/examples/audit_log build sqlite "$AUDIT_LOG/data" \
                "${AUDIT_EVENTS:-1000000}" 2>/dev/null
        fi
        data="$AUDIT_LOG/data"
    fi
    # shellcheck disable=SC2086
    SERVE_DATA="$data" GRPC_LISTEN=127.0.0.1:0 start_server "$SECRETGEN_BIN" attack-token \
        ${SECRETGEN_SERVE_FLAGS:-}
    port="${BASE##*:}"
    grpc="${GRPC##*:}"
    # Warm up: a few seconds of the well-behaved clients alone.
    $ATTACK client "$port" "$TOKEN" --seconds 2 >/dev/null
    $ATTACK fresh "$grpc" "$TOKEN" --grpc --seconds 1 >/dev/null
    idle="$(kib VmRSS)"
    # The peak from here on is the attack's own, not the start's (replaying a long audit log
    # takes memory of its own): writing 5 to clear_refs resets VmHWM to the current RSS.
    echo 5 >"/proc/$SERVER/clear_refs" 2>/dev/null || true
    # The well-behaved clients start first (the kept one connects, as a pooled client
    # would), then measure from 2 s into the attack until its end.
    measure=(--after 3 --seconds "$((SECONDS_PER_ATTACK - 2))")
    timeout $((SECONDS_PER_ATTACK + 45)) $ATTACK client "$port" "$TOKEN" "${measure[@]}" \
        >"$WORK/kept.json" &
    clients=($!)
    timeout $((SECONDS_PER_ATTACK + 45)) $ATTACK fresh "$port" "$TOKEN" "${measure[@]}" \
        >"$WORK/http.json" &
    clients+=($!)
    timeout $((SECONDS_PER_ATTACK + 45)) $ATTACK fresh "$grpc" "$TOKEN" --grpc "${measure[@]}" \
        >"$WORK/grpc.json" &
    clients+=($!)
    sleep 1
    # Two attacker processes (one Python process cannot keep the server busy), half each.
    case "$attack" in
        methods) args=(methods "$port" --conns 4) ;;
        pipeline) args=(pipeline "$port" "$TOKEN" --clients 500) ;;
        headers) args=(headers "$port" --conns 4000 --kib 120) ;;
        slowread) args=(slowread "$port" --conns 150) ;;
        silent) args=(silent "$grpc" --conns 150) ;;
        streams*) args=(streams "$grpc" "$TOKEN" --conns "$((${attack#streams} / 2))" --streams 32) ;;
        audit) args=(audit "$port" "$TOKEN" --conns 16) ;;
        *) echo "unknown attack $attack" >&2; exit 2 ;;
    esac
    attackers=()
    for _ in 1 2; do
        timeout $((SECONDS_PER_ATTACK + 30)) $ATTACK "${args[@]}" --seconds "$SECONDS_PER_ATTACK" \
            2>>"$WORK/attack.log" &
        attackers+=($!)
    done
    wait "${attackers[@]}" || true
    wait "${clients[@]}" || true
    sleep 12
    peak="$(kib VmHWM)"
    after="$(kib VmRSS)"
    alive=running
    kill -0 "$SERVER" 2>/dev/null || alive=DEAD
    # shellcheck disable=SC2059
    printf "$ROW" "$attack" "$(mib "$idle")" "$(mib "$peak")" "$(mib "$after")" \
        "$(figures "$WORK/kept.json")" "$(figures "$WORK/http.json")" \
        "$(figures "$WORK/grpc.json")" "$alive"
    sed 's/^/    /' "$WORK/attack.log" >&2
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
done
