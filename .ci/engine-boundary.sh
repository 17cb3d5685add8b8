#!/usr/bin/env bash
# The engine boundary (ARCHITECTURE.md, crates/engine): the generation engine has no serde, no
# HTTP, no store and no lock, and its rng module is a leaf. Fails, saying why, when:
#   1. secretgen-engine depends (normal or build edges, directly or not) on a crate outside
#      the allowlist below;
#   2. its source names a blocking lock (Mutex, RwLock, Condvar, Barrier, Once, OnceLock,
#      LazyLock, parking_lot);
#   3. crates/engine/src/rng.rs imports from the rest of the crate (`crate::`, or `super::`
#      outside its tests);
#   4. a file of the workspace other than crates/engine/src/generator/wide.rs (the AVX-512
#      sampler) allows `unsafe_code`, or a crate other than the engine stops forbidding it.
# Run from any directory; needs cargo, and the dependencies fetched (it runs after clippy).
set -euo pipefail
cd "$(dirname "$0")/.."

# What the engine may use directly: randomness, zeroing, big integers, lock-free snapshots,
# the coarse clock.
direct_allowed="arc-swap chacha20 getrandom num-bigint rand_core rustix zeroize"
# What those need (on Linux; the others are what they need elsewhere). block-buffer, cipher,
# crypto-common, hybrid-array, inout and typenum come with chacha20's "cipher" feature: the
# core's block-writing interface, which the engine's generator refills from (src/rng.rs).
needed_allowed="autocfg bitflags block-buffer cfg-if cipher cpufeatures crypto-common errno
    hybrid-array inout libc linux-raw-sys num-integer num-traits rustversion r-efi typenum
    wasi wasip2 wit-bindgen windows-link windows-sys windows-targets"
# Named in the message when one of them comes in.
forbidden_families="serde, actix, hyper, http, h2, tokio, tower, axum, tonic, prost, rusqlite,
libsqlite3-sys, sqlx, tracing, log, parking_lot, dashmap"

failed=0
fail() {
    echo "engine boundary: $*" >&2
    failed=1
}

allowed() {
    local name=$1 list=$2 a
    for a in $list; do
        [ "$a" = "$name" ] && return 0
    done
    return 1
}

# 1. Dependencies, as `name@version` (a crate can come in two versions).
tree() {
    cargo tree -p secretgen-engine -e normal,build --prefix none --format '{p}' "$@" |
        awk '{ sub(/^v/, "", $2); print $1 "@" $2 }'
}
direct=$(tree --depth 1 | sed 1d | sort -u)
all=$(tree | grep -v '^secretgen-engine@' | sort -u)
for spec in $direct; do
    if ! allowed "${spec%@*}" "$direct_allowed"; then
        fail "secretgen-engine depends on \`${spec%@*}\`, which is not in the allowlist of" \
            "direct dependencies ($direct_allowed)."
    fi
done
for spec in $all; do
    if ! allowed "${spec%@*}" "$direct_allowed $needed_allowed"; then
        parents=$(tree -i "$spec" --depth 1 2>/dev/null | sed 1d | sed 's/@.*//' | sort -u |
            paste -sd ' ' - || true)
        fail "secretgen-engine pulls in \`$spec\` (needed by: ${parents:-?}), which is not in" \
            "the allowlist."
    fi
done
if [ "$failed" = 1 ]; then
    cat >&2 <<EOF
engine boundary: the engine (crates/engine) must have no serde, no HTTP, no store and no lock:
  no crate of the families $forbidden_families.
  Wire formats, HTTP and storage belong to the secretgen crate (src/), which depends on the
  engine, never the other way. A new dependency the engine really needs (randomness,
  arithmetic) goes into the allowlist in .ci/engine-boundary.sh, with its reason.
EOF
fi

# 2. Locks: the engine's readers and generators never block. Comments are not code.
locks=$(grep -rnE '\b(Mutex|RwLock|Condvar|Barrier|Once|OnceLock|LazyLock|parking_lot)\b' \
    crates/engine/src --include='*.rs' | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//' || true)
if [ -n "$locks" ]; then
    fail "the engine takes no lock (snapshots are swapped with arc-swap, each thread owns its" \
        "generator); found:"
    echo "$locks" >&2
fi

# 3. rng.rs is a leaf: it imports nothing from the engine (its tests may use `super::`).
rng=crates/engine/src/rng.rs
imports=$(awk '/^#\[cfg\(test\)\]/ { tests = 1 }
    !/^[[:space:]]*\/\// && (/crate::/ || (!tests && /super::/)) { print FILENAME ":" FNR ": " $0 }' \
    "$rng")
if [ -n "$imports" ]; then
    fail "$rng is a leaf and imports nothing from the rest of the engine (the thread's" \
        "state lives in generator/cache.rs); found:"
    echo "$imports" >&2
fi

# 4. `unsafe`: the engine denies it (the other crates inherit the workspace's forbid), and
# only its wide sampler allows it back.
wide=crates/engine/src/generator/wide.rs
allows=$(grep -rnE 'allow\((.*[^a-z_])?unsafe_code' --include='*.rs' src crates tests benches \
    examples fuzz 2>/dev/null | grep -v "^$wide:" || true)
if [ -n "$allows" ]; then
    fail "only $wide may allow unsafe_code; found:"
    echo "$allows" >&2
fi
if ! grep -qE '^unsafe_code = "forbid"' Cargo.toml; then
    fail "the workspace's lints must forbid unsafe_code (Cargo.toml [workspace.lints.rust])."
fi
for manifest in Cargo.toml crates/*/Cargo.toml; do
    [ "$manifest" = crates/engine/Cargo.toml ] && continue
    if ! awk '/^\[lints\]/ { l = 1; next } /^\[lints.rust\]/ { r = 1; next } /^\[/ { l = r = 0 }
        (l && /^workspace = true/) || (r && /^unsafe_code = "forbid"/) { ok = 1 }
        END { exit !ok }' "$manifest"; then
        fail "$manifest must forbid unsafe_code (take the workspace's lints, or set it in" \
            "its own [lints.rust])."
    fi
done

if [ "$failed" = 1 ]; then
    exit 1
fi
echo "engine boundary: ok ($(echo "$all" | wc -w) crates, all allowed; no lock; rng.rs a leaf;" \
    "unsafe only in $wide)"
