#!/usr/bin/env bash
# The contract test: schemathesis (PyPI) generates requests from the served /openapi.json and
# checks every answer against it (status codes, bodies, headers, schema-invalid requests
# refused, schema-valid ones accepted, auth enforced, 405 for other methods). See
# schemathesis.toml for the one check turned off, and why.
#
#   bash .ci/contract.sh [SECONDS]          (default 60; SCHEMATHESIS_SEED overrides the seed)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET="${1:-60}"
SEED="${SCHEMATHESIS_SEED:-85633458239668268528549550726823554531}"
command -v st >/dev/null || python3 -m pip install --quiet 'schemathesis==4.32.5'
cargo build --quiet
WORK="$(mktemp -d)"
TOKEN="contract-test-token-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
SECRETGEN_LOG=warn ./target/debug/secretgen serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
    --bootstrap-token "$TOKEN" >"$WORK/stdout" 2>"$WORK/stderr" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
    grep -q '^listening on ' "$WORK/stdout" 2>/dev/null && break
    sleep 0.1
done
BASE="$(sed -n 's/^listening on //p' "$WORK/stdout")"
[ -n "$BASE" ] || { cat "$WORK/stderr" >&2; exit 1; }
st run "$BASE/openapi.json" -H "Authorization: Bearer $TOKEN" --max-time "$SECONDS_BUDGET" \
    --workers 2 --seed "$SEED" --no-color
