#!/usr/bin/env bash
# Self-test of scripts/check-module-edges.sh (ctest: module_layering_selftest): on a small fake
# tree it must pass a clean layering and fail on an unlisted edge, a cycle, a private header
# used from another module and an include of a missing header.
set -euo pipefail
checker="$1"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mk() { mkdir -p "$tmp/$(dirname "$1")"; printf '%s\n' "${@:2}" > "$tmp/$1"; }
mk include/moeq/a/a.h '#pragma once'
mk src/a/a.cpp '#include "moeq/a/a.h"' '#include "a/private.h"'
mk src/a/private.h '#pragma once'
mk include/moeq/b/b.h '#pragma once' '#include "moeq/a/a.h"'
mk src/b/b.cpp '#include "moeq/b/b.h"'
mk tools/moeq-x/main.cpp '#include "moeq/b/b.h"'
printf 'a:\nb: a\nmoeq-x: b\n' > "$tmp/edges.txt"
expect() {  # expect pass|fail DESCRIPTION
  if "$checker" "$tmp" "$tmp/edges.txt" > "$tmp/out" 2>&1; then got=pass; else got=fail; fi
  if [[ $got != "$1" ]]; then echo "FAIL: $2: expected $1, got $got"; cat "$tmp/out"; exit 1; fi
  echo "ok: $2 ($1)"
}
expect pass "clean tree"
echo '#include "moeq/a/a.h"' >> "$tmp/tools/moeq-x/main.cpp"
expect fail "unlisted edge moeq-x -> a"
printf 'a:\nb: a\nmoeq-x: a b\n' > "$tmp/edges.txt"
expect pass "edge listed"
echo '#include "moeq/b/b.h"' >> "$tmp/src/a/a.cpp"
printf 'a: b\nb: a\nmoeq-x: a b\n' > "$tmp/edges.txt"
expect fail "cycle a <-> b (listed)"
sed -i '$d' "$tmp/src/a/a.cpp"
printf 'a:\nb: a\nmoeq-x: a b\n' > "$tmp/edges.txt"
expect pass "cycle removed"
echo '#include "a/private.h"' >> "$tmp/src/b/b.cpp"
expect fail "private header of a used by b"
sed -i '$d' "$tmp/src/b/b.cpp"
echo '#include "moeq/a/missing.h"' >> "$tmp/src/b/b.cpp"
expect fail "missing header"
