#!/usr/bin/env bash
# Formatting check (ctest: format_check; `make format` fixes). Every C++ file git tracks outside
# the vendored data/ and models/ must be as clang-format (.clang-format in the root) prints it.
# The format depends on the clang-format major version: the check uses Debian bookworm's 14
# (clang-format-14, or clang-format when it is version 14) and exits 77 (ctest: skipped, with a
# message) when neither is installed; `make test-deps` installs it.
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"
fmt=""
for c in clang-format-14 clang-format; do
  if command -v "$c" >/dev/null 2>&1 && "$c" --version | grep -q 'version 14\.'; then fmt=$c; break; fi
done
if [[ -z "$fmt" ]]; then
  echo "format_check: SKIPPED: clang-format 14 is not installed (apt-get install clang-format)" >&2
  exit 77
fi
if [[ "${2:-}" == "--fix" ]]; then
  git ls-files '*.cpp' '*.h' | grep -v -E '^(data|models)/' | xargs "$fmt" -i
  exit 0
fi
if [[ ! -d .git && ! -f .git ]]; then
  echo "format_check: SKIPPED: $root is not a git checkout (the file list comes from git)" >&2
  exit 77
fi
bad=()
while IFS= read -r f; do
  if ! "$fmt" --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done < <(git ls-files '*.cpp' '*.h' | grep -v -E '^(data|models)/')
if ((${#bad[@]})); then
  echo "format_check: ${#bad[@]} file(s) differ from .clang-format (run: make format):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "format_check: all files formatted ($fmt)"
