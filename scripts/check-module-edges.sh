#!/usr/bin/env bash
# Module layering check (ctest: module_layering). Scans every #include "..." in src/, include/
# and tools/, maps the including file and the included header to their module (folder), and
# fails when
#   - a folder→folder edge is not listed in the allowed-edges table (cmake/module_edges.txt),
#   - the edges found, or the edges allowed, contain a cycle,
#   - an include names a header that does not exist.
# Modules: src/<m>/ and include/moeq/<m>/ are module <m>; tools/<dir>/ is module <dir>
# ("moeq-eval", "common"). Usage: check-module-edges.sh [SOURCE_DIR] [EDGES_FILE]
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
table="${2:-$root/cmake/module_edges.txt}"
cd "$root"
[[ -f "$table" ]] || { echo "module_layering: no edges table at $table" >&2; exit 1; }

# module_of_file PATH -> module name of a file of the tree
module_of_file() {
  case "$1" in
    src/*/*) local r="${1#src/}"; echo "${r%%/*}" ;;
    include/moeq/*/*) local r="${1#include/moeq/}"; echo "${r%%/*}" ;;
    tools/*/*) local r="${1#tools/}"; echo "${r%%/*}" ;;
    *) echo "?" ;;
  esac
}

found=$(mktemp); trap 'rm -f "$found"' EXIT
errors=0
while IFS= read -r file; do
  from=$(module_of_file "$file")
  dir=$(dirname "$file")
  while IFS= read -r inc; do
    # Resolve like the compiler: the including file's folder, include/, the module-private
    # folder (src/<from>/ reachable as "<from>/x.h"), tools/ (command headers), generated.
    if [[ -f "$dir/$inc" ]]; then
      target="$dir/$inc"
    elif [[ -f "include/$inc" ]]; then
      target="include/$inc"
    elif [[ -f "src/$inc" ]]; then
      target="src/$inc"
    elif [[ -f "tools/$inc" ]]; then
      target="tools/$inc"
    elif [[ -f "tools/common/$inc" ]]; then
      target="tools/common/$inc"
    elif [[ "$inc" == moeq/base/build_info.h ]]; then
      target="include/moeq/base/build_info.h"   # generated from cmake/build_info.h.in
    else
      echo "module_layering: $file includes \"$inc\", which is not in the tree" >&2
      errors=$((errors + 1)); continue
    fi
    to=$(module_of_file "$target")
    [[ "$to" == "$from" ]] && continue
    # A private header of another module ("src/<m>/x.h" included from outside <m>).
    if [[ "$target" == src/* ]]; then
      echo "module_layering: $file includes \"$inc\", a private header of module $to" >&2
      errors=$((errors + 1))
    fi
    echo "$from $to $file" >> "$found"
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(find src include tools -type f \( -name '*.h' -o -name '*.cpp' \) | LC_ALL=C sort)

# Allowed edges: "from: to to ..." lines; '#' starts a comment.
allowed=$(sed 's/#.*//' "$table" | awk -F: 'NF == 2 { n = split($2, t, " "); for (i = 1; i <= n; i++) print $1, t[i] }' | sed 's/^ *//' | LC_ALL=C sort -u)

while read -r from to file; do
  if ! grep -qx "$from $to" <<< "$allowed"; then
    echo "module_layering: edge $from -> $to (from $file) is not in $(basename "$table")" >&2
    errors=$((errors + 1))
  fi
done < <(LC_ALL=C sort -u -k1,2 "$found")

# Cycles: tsort reports a loop on stderr.
for what in found allowed; do
  if [[ $what == found ]]; then edges=$(awk '{ print $1, $2 }' "$found" | LC_ALL=C sort -u); else edges="$allowed"; fi
  if ! out=$(tsort <<< "$edges" 2>&1 >/dev/null) || [[ -n "$out" ]]; then
    echo "module_layering: the $what edges contain a cycle:" >&2
    echo "$out" >&2
    errors=$((errors + 1))
  fi
done

n_edges=$(awk '{ print $1, $2 }' "$found" | LC_ALL=C sort -u | wc -l)
if (( errors > 0 )); then
  echo "module_layering: $errors problem(s)" >&2
  exit 1
fi
echo "module_layering: $n_edges folder edges, all allowed, no cycle"
if [[ "${MOEQ_PRINT_EDGES:-0}" == 1 ]]; then
  awk '{ print $1, $2 }' "$found" | LC_ALL=C sort -u
fi
