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
ST="$(command -v st || echo "$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/st")"
cargo build --quiet
# shellcheck source=serve.sh
. .ci/serve.sh
start_server ./target/debug/secretgen contract-test-token
"$ST" run "$BASE/openapi.json" -H "Authorization: Bearer $TOKEN" --max-time "$SECONDS_BUDGET" \
    --workers 2 --seed "$SEED" --no-color
