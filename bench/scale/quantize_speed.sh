#!/usr/bin/env bash
# Quantize throughput against a plain cp of the same checkpoint, in one run (bench/scale/README.md).
#
#   bench/scale/quantize_speed.sh BIN_DIR MODEL_DIR ALLOCATION_MLX ALLOCATION_GGUF [OUT_JSONL]
#
# Runs, each under measure.py with a cold page cache (as root): cp of up to CP_GB (default 12)
# GB of MODEL_DIR's shards + sync (the disk reference), moeq-quantize to MLX and to GGUF with the
# given allocations, and moeq-profile (8 windows x 512 tokens; its peak memory). BASE_BIN=DIR
# also runs DIR's moeq-quantize (MLX) as a same-run baseline. Outputs are written next to
# MODEL_DIR and removed after each step.
set -euo pipefail
bin=${1:?usage: quantize_speed.sh BIN_DIR MODEL_DIR ALLOCATION_MLX ALLOCATION_GGUF [OUT_JSONL]}
model=${2:?model dir}
alloc=${3:?mlx allocation}
alloc_gguf=${4:?gguf allocation}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
res=${5:-$(dirname "$model")/results-quantize-speed.jsonl}
d=$(dirname "$model")
drop_caches() { sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
run() { local name=$1; shift; drop_caches; python3 "$here/measure.py" "$name" "$res" -- "$@"; }
# shellcheck source=cp_reference.sh
source "$here/cp_reference.sh"

cp_reference "$model" "$d"
du -sb "$model" | awk '{printf "{\"tool\": \"checkpoint_bytes\", \"bytes\": %.0f}\n", $1}' >> "$res"
if [[ -n "${BASE_BIN:-}" ]]; then
  run quantize_mlx_base "$BASE_BIN/moeq-quantize" "$model" --allocation "$alloc" -o "$d/mlx" --force
  rm -rf "$d/mlx"
fi
run quantize_mlx "$bin/moeq-quantize" "$model" --allocation "$alloc" -o "$d/mlx" --force
rm -rf "$d/mlx"
run quantize_gguf "$bin/moeq-quantize" "$model" --allocation "$alloc_gguf" --format gguf -o "$d/model.gguf" --force
rm -f "$d/model.gguf"
run profile "$bin/moeq-profile" "$model" --text "$repo/data/moe-corpus/calib.txt" --context 512 \
  --max-windows 8 -o "$d/routing_profile.json" --activation-stats "$d/activation_stats.safetensors" --force
rm -f "$d/activation_stats.safetensors"
echo "results: $res"
