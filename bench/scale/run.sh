#!/usr/bin/env bash
# The whole pipeline on a moeq-synth checkpoint of real shapes (docs/scale.md, bench/scale/README.md).
#
#   bench/scale/run.sh BIN_DIR LAYERS [WORK_DIR]
#
# Generates qwen3-30b-a3b cut to LAYERS layers under WORK_DIR (default /work/scale-tmp), then
# runs every tool under bench/scale/measure.py (wall time, peak anonymous and file-backed
# memory) and a plain `cp` of the checkpoint for the disk-speed reference; results go to
# WORK_DIR/results-LLAYERS.jsonl. Checks free disk first (the bf16 checkpoint is ~1.25 GB per
# layer + 1.2 GB; the MLX and GGUF outputs ~0.3 GB per layer each; the cp another copy).
# Drops the page cache before each tool when run as root (DROP_CACHES=0: keep it). CP_GB bounds
# the cp reference. Removes the generated files at the end unless KEEP=1. Run it under `nice -n 10` on a shared
# machine. Env: WINDOWS (8), CONTEXT (512), PRESET (qwen3-30b-a3b), SEED (1).
set -euo pipefail
bin=${1:?usage: run.sh BIN_DIR LAYERS [WORK_DIR]}
layers=${2:?usage: run.sh BIN_DIR LAYERS [WORK_DIR]}
work=${3:-/work/scale-tmp}
windows=${WINDOWS:-8}
context=${CONTEXT:-512}
preset=${PRESET:-qwen3-30b-a3b}
here=$(cd "$(dirname "$0")" && pwd)
repo=${REPO:-$(cd "$here/../.." && pwd)}
m="$here/measure.py"
d="$work/L$layers"
res="$work/results-L$layers.jsonl"
mkdir -p "$d"
: > "$res"

need_gb=$(( (layers * 125 / 100 + 2) + ${CP_GB:-12} + layers * 6 / 10 + 2 ))
avail_gb=$(df -BG --output=avail "$work" | tail -1 | tr -dc 0-9)
echo "disk: need ~${need_gb} GB, ${avail_gb} GB free under $work"
if (( avail_gb < need_gb + 10 )); then echo "not enough free disk (keep 10 GB for others)"; exit 1; fi

# Cold page cache before every tool (as root), so that each one reads the checkpoint from disk
# as on a first run; DROP_CACHES=0 keeps whatever the previous tool left in memory.
drop_caches() {
  if [[ "${DROP_CACHES:-1}" == 1 ]]; then sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true; fi
}
run() { local name=$1; shift; drop_caches; python3 "$m" "$name" "$res" -- "$@"; }
# shellcheck source=cp_reference.sh
source "$here/cp_reference.sh"

run synth "$bin/moeq-synth" --preset "$preset" --layers "$layers" --seed "${SEED:-1}" -o "$d/model" --force
du -sb "$d/model" | awk '{printf "{\"tool\": \"checkpoint_bytes\", \"bytes\": %.0f}\n", $1}' >> "$res"
# The disk-speed reference: a plain cp of the checkpoint's shards, cold, up to CP_GB (default
# 12) GB of them so the copy fits on the disk beside the 24-layer checkpoint.
cp_reference "$d/model" "$d"
# Sequential read speed of the same shards, cold (the read bound of profile and eval).
run read sh -c 'cat "$@" > /dev/null' sh "${cp_files[@]}"
# Float GEMM rate of one core (the compute bound), when the benchmarks were built.
if [[ -x "$bin/bench_gemm" ]]; then "$bin/bench_gemm" 2>/dev/null | sed 's/^{/{"tool": "gemm", /' >> "$res"; fi
run inspect "$bin/moeq-inspect" "$d/model"
run profile "$bin/moeq-profile" "$d/model" --text "$repo/data/moe-corpus/calib.txt" --context "$context" \
  --max-windows "$windows" -o "$d/routing_profile.json" --activation-stats "$d/activation_stats.safetensors" --force
run analyze "$bin/moeq-analyze" "$d/model" --activation-stats "$d/activation_stats.safetensors" \
  -o "$d/sensitivity.jsonl" --force
run calibrate "$bin/moeq-calibrate" "$d/model" --sensitivity "$d/sensitivity.jsonl" \
  --text "$repo/data/moe-corpus/calib.txt" --windows "$windows" --context "$context" ${CALIBRATE_FLAGS:---method local} \
  -o "$d/calibrated_priors.json" --force
run allocate "$bin/moeq-allocate" "$d/sensitivity.jsonl" --bpw 4.5 --objective mse --target mlx \
  --rules "$d/calibrated_priors.json" -q -o "$d/allocation.json" --force
run allocate_gguf "$bin/moeq-allocate" "$d/sensitivity.jsonl" --bpw 4.5 --objective mse --target gguf \
  --rules "$d/calibrated_priors.json" -q -o "$d/allocation_gguf.json" --force
run quantize_mlx "$bin/moeq-quantize" "$d/model" --allocation "$d/allocation.json" -o "$d/mlx" --force
du -sb "$d/mlx" | awk '{printf "{\"tool\": \"mlx_bytes\", \"bytes\": %.0f}\n", $1}' >> "$res"
run quantize_gguf "$bin/moeq-quantize" "$d/model" --allocation "$d/allocation_gguf.json" --format gguf -o "$d/model.gguf" --force
ls -l "$d/model.gguf" | awk '{printf "{\"tool\": \"gguf_bytes\", \"bytes\": %.0f}\n", $5}' >> "$res"
rm -f "$d/model.gguf"
run eval_bf16 "$bin/moeq-eval" "$d/model" --text "$repo/data/moe-corpus/valid.txt" --context "$context" \
  --chunks "$windows" -o "$d/eval_bf16.json" --force
run eval_q_packed "$bin/moeq-eval" "$d/mlx" --packed --text "$repo/data/moe-corpus/valid.txt" --context "$context" \
  --chunks "$windows" -o "$d/eval_mlx.json" --force
cp "$d"/*.json "$work/" 2>/dev/null || true
if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$d"; fi
echo "results: $res"
