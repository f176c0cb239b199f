#!/usr/bin/env bash
# moeq-analyze in N layer shards with GNU parallel, then the merge (byte-identical to one
# process: tests/unit/parallel_example_test.cpp). Add --sshlogin to spread shards over machines
# that see the same paths.
#
#   examples/parallel/analyze.sh BIN_DIR MODEL_DIR OUT.jsonl [SHARDS] [extra moeq-analyze flags...]
set -euo pipefail
bin=${1:?usage: analyze.sh BIN_DIR MODEL_DIR OUT.jsonl [SHARDS] [flags...]}
model=${2:?model directory}
out=${3:?output sensitivity.jsonl}
n=${4:-4}
shift $(( $# < 4 ? $# : 4 ))
work=$(mktemp -d "${TMPDIR:-/tmp}/moeq-analyze-shards.XXXXXX")
trap 'rm -rf "$work"' EXIT
parallel --will-cite --halt now,fail=1 -j "${JOBS:-$n}" \
  "$bin/moeq-analyze" "$model" --shard {}/"$n" -o "$work/s{}.jsonl" -q "$@" ::: $(seq 0 $((n - 1)))
shards=()
for i in $(seq 0 $((n - 1))); do shards+=("$work/s$i.jsonl"); done
"$bin/moeq-analyze" merge "$out" "${shards[@]}" -q --force
