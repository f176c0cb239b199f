#!/usr/bin/env bash
# examples/slurm/*.sbatch without Slurm (ctest slurm_sbatch_scripts, label unit): runs them as
# plain bash with the variables Slurm sets for array tasks and a stub moeq-analyze that records
# its arguments; checks the shard each task analyses, the guards and the merge command.
# The real-Slurm run is tests/slurm/slurm_array_test.sh (opt-in, MOEQ_SLURM_TEST=1).
#
#   tests/slurm/sbatch_scripts_test.sh [SOURCE_DIR]
set -euo pipefail
src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
analyze=$src/examples/slurm/analyze.sbatch
merge=$src/examples/slurm/merge.sbatch
t=$(mktemp -d "${TMPDIR:-/tmp}/moeq-sbatch.XXXXXX")
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bin"
cat >"$t/bin/moeq-analyze" <<'EOF'
#!/usr/bin/env bash
echo "$*" >"$STUB_LOG"
EOF
chmod +x "$t/bin/moeq-analyze"
export STUB_LOG=$t/args BIN=$t/bin MODEL=/models/m OUT=$t/out
failures=0

# run NAME EXPECTED_RC EXPECTED_ARGS_OR_STDERR_TEXT SCRIPT [VAR=VALUE...]: runs SCRIPT in a clean
# SLURM_*/SHARDS/ANALYZE_FLAGS environment plus the given variables.
run() {
  local name=$1 want_rc=$2 want=$3 script=$4
  shift 4
  rm -f "$STUB_LOG"
  local rc=0
  env -u SHARDS -u ANALYZE_FLAGS -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT \
    -u SLURM_ARRAY_TASK_MIN -u SLURM_ARRAY_TASK_MAX -u SLURM_CPUS_PER_TASK "$@" \
    bash "$script" >"$t/stdout" 2>"$t/stderr" || rc=$?
  local got
  if [ "$want_rc" -eq 0 ]; then got=$(cat "$STUB_LOG" 2>/dev/null || echo "(moeq-analyze not run)"); else got=$(cat "$t/stderr"); fi
  if [ "$rc" -ne "$want_rc" ] || [[ "$got" != *"$want"* ]]; then
    echo "FAIL $name: exit $rc (want $want_rc)"
    echo "  got:  $got"
    echo "  want: *$want*"
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

array4=(SLURM_ARRAY_TASK_COUNT=4 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=3 SLURM_CPUS_PER_TASK=2)
run "task 2 of --array=0-3" 0 "/models/m --shard 2/4 --threads 2 -o $OUT/s2.jsonl --force" \
  "$analyze" "${array4[@]}" SLURM_ARRAY_TASK_ID=2
[ -d "$OUT" ] || { echo "FAIL analyze.sbatch did not create OUT"; failures=$((failures + 1)); }
run "ANALYZE_FLAGS are passed on" 0 "--shard 0/4 --threads 2 -o $OUT/s0.jsonl --force --rank 8 --activation-stats a.safetensors" \
  "$analyze" "${array4[@]}" SLURM_ARRAY_TASK_ID=0 "ANALYZE_FLAGS=--rank 8 --activation-stats a.safetensors"
run "no --cpus-per-task: threads 0 (all)" 0 "--shard 1/2 --threads 0 " \
  "$analyze" SLURM_ARRAY_TASK_COUNT=2 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=1 SLURM_ARRAY_TASK_ID=1
run "resubmitted subset --array=3,5 without SHARDS is refused" 2 "set SHARDS to the number of shards" \
  "$analyze" SLURM_ARRAY_TASK_COUNT=2 SLURM_ARRAY_TASK_MIN=3 SLURM_ARRAY_TASK_MAX=5 SLURM_ARRAY_TASK_ID=5
run "resubmitted subset with SHARDS=8" 0 "--shard 5/8 " \
  "$analyze" SLURM_ARRAY_TASK_COUNT=2 SLURM_ARRAY_TASK_MIN=3 SLURM_ARRAY_TASK_MAX=5 SLURM_ARRAY_TASK_ID=5 SHARDS=8
run "--array=0-9%2 (throttled) is 10 shards" 0 "--shard 9/10 " \
  "$analyze" SLURM_ARRAY_TASK_COUNT=10 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=9 SLURM_ARRAY_TASK_ID=9
run "task id beyond SHARDS is refused" 2 "array task 4 is not a shard of 4" \
  "$analyze" SLURM_ARRAY_TASK_COUNT=5 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_MAX=4 SLURM_ARRAY_TASK_ID=4 SHARDS=4
run "not an array job" 1 "run as an array job" "$analyze"
run "MODEL missing" 1 "MODEL: checkpoint directory" "$analyze" "${array4[@]}" SLURM_ARRAY_TASK_ID=0 MODEL=
run "merge of 3 shards" 0 "merge $OUT/sensitivity.jsonl $OUT/s0.jsonl $OUT/s1.jsonl $OUT/s2.jsonl --force" \
  "$merge" SHARDS=3
run "merge without SHARDS" 1 "SHARDS: the array size" "$merge"

if [ "$failures" -ne 0 ]; then
  echo "sbatch_scripts_test: $failures failure(s)"
  exit 1
fi
echo "sbatch_scripts_test: all passed"
