# Sourced by .ci/contract.sh and the scripts of benches/load/: starts secretgen servers on free
# ports of 127.0.0.1, each with a fresh store in a scratch folder, and stops them all (and
# removes their folders) when the calling script exits.
#
#   start_server BINARY TOKEN_PREFIX [SERVE_FLAGS...]
#
# Sets, for the server just started: SERVER (pid), WORK (scratch folder), TOKEN (bootstrap
# token), BASE (http://ADDR) and, when GRPC_LISTEN names an address (gRPC is off otherwise),
# GRPC (ADDR). SERVE_DATA names a data folder to start from (copied; the original is left as
# it is) instead of a fresh store.

SERVE_PIDS=()
SERVE_DIRS=()
stop_servers() {
    local pid
    for pid in "${SERVE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${SERVE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ "${#SERVE_DIRS[@]}" -eq 0 ] || rm -rf "${SERVE_DIRS[@]}"
}
trap stop_servers EXIT

start_server() {
    local binary="$1" prefix="$2"
    shift 2
    WORK="$(mktemp -d)"
    SERVE_DIRS+=("$WORK")
    if [ -n "${SERVE_DATA:-}" ]; then cp -a "$SERVE_DATA" "$WORK/data"; fi
    TOKEN="$prefix-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    SECRETGEN_LOG=warn "$binary" serve --listen 127.0.0.1:0 --grpc-listen "${GRPC_LISTEN:-off}" --data-dir "$WORK/data" \
        --bootstrap-token "$TOKEN" "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    SERVER=$!
    SERVE_PIDS+=("$SERVER")
    for _ in $(seq 100); do
        grep -q '^listening on ' "$WORK/stdout" 2>/dev/null && break
        sleep 0.1
    done
    BASE="$(sed -n 's/^listening on \(http\)/\1/p' "$WORK/stdout")"
    GRPC=""
    if [ "${GRPC_LISTEN:-off}" != off ]; then
        for _ in $(seq 50); do
            grep -q '^listening on grpc://' "$WORK/stdout" && break
            sleep 0.1
        done
        GRPC="$(sed -n 's|^listening on grpc://||p' "$WORK/stdout")"
    fi
    [ -n "$BASE" ] || { cat "$WORK/stderr" >&2; exit 1; }
}
