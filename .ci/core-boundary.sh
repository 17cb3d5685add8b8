#!/usr/bin/env bash
# The core boundary (ARCHITECTURE.md, crates/core): the use cases, the control plane, the
# stores, tokens and the core's metrics know no wire format and no transport. Fails, saying
# why, when:
#   1. secretgen-core depends (normal or build edges, directly or not) on a crate of a
#      transport or a wire format: actix, hyper, h2, http, tower, axum, tonic, prost, serde_json,
#      clap;
#   2. the transports import each other outside their tests: src/api names crate::grpc,
#      src/grpc names crate::api, or src/net (below both) names either;
#   3. a transport reaches past the use cases outside its tests: src/api or src/grpc names the
#      core's store or control plane (rows, snapshots) instead of secretgen_core::service.
# Run from any directory; needs cargo, and the dependencies fetched (it runs after clippy).
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() {
    echo "core boundary: $*" >&2
    failed=1
}

# 1. Dependencies, as names.
forbidden='^(actix.*|hyper.*|h2|http|http-body.*|tower.*|axum.*|tonic.*|prost.*|serde_json|clap.*)$'
tree() {
    cargo tree -p secretgen-core -e normal,build --prefix none --format '{p}' "$@" |
        awk '{ print $1 }'
}
all=$(tree | grep -v '^secretgen-core$' | sort -u)
for name in $all; do
    if [[ $name =~ $forbidden ]]; then
        parents=$(cargo tree -p secretgen-core -e normal,build -i "$name" --prefix none \
            --format '{p}' --depth 1 2>/dev/null | sed 1d | awk '{ print $1 }' | sort -u |
            paste -sd ' ' - || true)
        fail "secretgen-core pulls in \`$name\` (needed by: ${parents:-?}): the core knows no" \
            "transport and no wire format. They belong to the secretgen crate (src/), which" \
            "depends on the core, never the other way."
    fi
done

# 2. Siblings: each transport sees the core and src/net, never the other transport.
imports() {
    local dir=$1 pattern=$2
    find "$dir" -name '*.rs' -print0 | xargs -0 awk -v pattern="$pattern" '
        FNR == 1 { tests = 0 }
        /^#\[cfg\(test\)\]/ { tests = 1 }
        !tests && !/^[[:space:]]*\/\// && $0 ~ pattern { print FILENAME ":" FNR ": " $0 }'
}
for pair in "src/api:crate::grpc" "src/grpc:crate::api" "src/net:crate::(api|grpc)" \
    "src/api:secretgen_core::(store|control)" "src/grpc:secretgen_core::(store|control)"; do
    found=$(imports "${pair%%:*}" "${pair#*:}")
    if [ -n "$found" ]; then
        fail "${pair%%:*} imports ${pair#*:}: the transports are siblings over the core's use" \
            "cases (secretgen_core::service), and what they share lives below them (src/net);" \
            "found:"
        echo "$found" >&2
    fi
done

if [ "$failed" = 1 ]; then
    exit 1
fi
echo "core boundary: ok ($(echo "$all" | wc -w) crates, none of a transport or a wire format;" \
    "the transports import each other nowhere, and the core only through its use cases)"
