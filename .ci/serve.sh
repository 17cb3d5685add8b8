# Sourced by .ci/contract.sh and benches/load/run.sh: starts a secretgen server on a free port
# of 127.0.0.1 with a fresh store in a scratch folder, and stops it (and removes the folder)
# when the calling script exits.
#
#   start_server BINARY TOKEN_PREFIX [SERVE_FLAGS...]
#
# Sets SERVER (pid), WORK (scratch folder), TOKEN (bootstrap token) and BASE (http://ADDR).

start_server() {
    local binary="$1" prefix="$2"
    shift 2
    WORK="$(mktemp -d)"
    TOKEN="$prefix-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    SECRETGEN_LOG=warn "$binary" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
        --bootstrap-token "$TOKEN" "$@" >"$WORK/stdout" 2>"$WORK/stderr" &
    SERVER=$!
    trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
    for _ in $(seq 100); do
        grep -q '^listening on ' "$WORK/stdout" 2>/dev/null && break
        sleep 0.1
    done
    BASE="$(sed -n 's/^listening on //p' "$WORK/stdout")"
    [ -n "$BASE" ] || { cat "$WORK/stderr" >&2; exit 1; }
}
