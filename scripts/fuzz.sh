#!/usr/bin/env bash
# Runs libFuzzer targets built by `make fuzz`: scripts/fuzz.sh BUILD_DIR SECONDS TARGET...
# Each target starts from a copy of tests/fuzz/corpus/<target> (the tree's corpus is not
# modified); new inputs go to BUILD_DIR/corpus/<target>, crashes to BUILD_DIR/artifacts/<target>/,
# the log to BUILD_DIR/logs/<target>.log. Add every crash input to tests/fuzz/regressions/<target>/.
set -euo pipefail
build=$1; secs=$2; shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
status=0
for t in "$@"; do
  bin="$build/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "missing $bin (run make fuzz)"; exit 2; }
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "$build/logs"
  cp -n "$root/tests/fuzz/corpus/$t/"* "$build/corpus/$t/" 2>/dev/null || true
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  echo "fuzzing $t for ${secs}s"
  if ! ASAN_OPTIONS=detect_leaks=1 "$bin" "$build/corpus/$t" "${dict[@]}" -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" \
      >"$build/logs/$t.log" 2>&1; then
    echo "  $t: FAILED (see $build/logs/$t.log and $build/artifacts/$t/)"; status=1
  fi
  grep -E "^#[0-9]+.*(DONE|pulse)" "$build/logs/$t.log" | tail -1 || true
  grep -E "stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$build/logs/$t.log" || true
done
exit $status
