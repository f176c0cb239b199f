#!/usr/bin/env bash
# Data-aware GGUF codes (issue 17): llama.cpp's Q4_K_M and Q3_K_M type mixes (the same per-tensor
# ggml types, hence the same bytes, as llama-quantize writes for the model; docs/formats.md §4.2,
# bench/quality/gguf_mix_allocation.py) written by moeq-quantize --format gguf with rtn, weighted
# and gptq codes; KL from bf16 in moeq-eval reading the GGUF, on the moe-corpus valid split.
# Calibration (activation statistics with Gram matrices) on data/moe-corpus/calib.txt, a slice of
# the TRAIN split, only. Models need hidden sizes that are multiples of 256 for K-quants
# (others fall back to legacy types, docs/gguf.md).
#
# Usage: bench/quality/gguf_encoders.sh BIN_DIR OUT_DIR MODEL_DIR...
# Environment: QUALITY_CHUNKS (windows of 512 tokens, default 32), PROFILE_WINDOWS (calibration
# windows for the statistics, default 32).
# Writes OUT_DIR/results.md and every artefact under OUT_DIR/<model>/.
set -euo pipefail
bin=${1:?usage: gguf_encoders.sh BIN_DIR OUT_DIR MODEL_DIR...}
out=${2:?usage: gguf_encoders.sh BIN_DIR OUT_DIR MODEL_DIR...}
shift 2
[ $# -gt 0 ] || { echo "gguf_encoders.sh: no MODEL_DIR given" >&2; exit 2; }
chunks=${QUALITY_CHUNKS:-32}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
calib=$root/data/moe-corpus/calib.txt
valid=$root/data/moe-corpus/valid.txt
mkdir -p "$out"
results=$out/results.md
{
  echo "# moeq data-aware GGUF codes (issue 17)"
  echo
  echo "Produced by \`bench/quality/gguf_encoders.sh $bin $out $*\` ($chunks windows of 512 tokens of the"
  echo "moe-corpus valid split, protocol \`reference\`; KL(P_bf16 ‖ P_quant) in nats per token; moeq-eval reads the GGUF)."
  echo "Calibration on data/moe-corpus/calib.txt (TRAIN split slice) only."
} > "$results"

for model in "$@"; do
  name=$(basename "$model")
  d=$out/$name
  mkdir -p "$d"
  if [ ! -f "$d/act.safetensors" ]; then
    echo "== $name: profile (--gram)"
    "$bin/moeq-profile" "$model" --text "$calib" --max-windows "${PROFILE_WINDOWS:-32}" \
      -o "$d/routing_profile.json" --activation-stats "$d/act.safetensors" --gram --force -q
  fi
  "$bin/moeq-eval" "$model" --text "$valid" --chunks "$chunks" -o "$d/eval_bf16.json" \
    --save-logits "$d/bf16.logits.safetensors" --force -q
  evals=(--eval "bf16=$d/eval_bf16.json")
  for mix in Q4_K_M Q3_K_M; do
    python3 "$here/gguf_mix_allocation.py" "$model" "$mix" "$d/$mix.allocation.json"
    for enc in rtn weighted gptq; do
      label=$mix-$enc
      echo "== $name: $label"
      "$bin/moeq-quantize" "$model" --allocation "$d/$mix.allocation.json" --format gguf \
        --stats "$d/act.safetensors" --encoder "$enc" -o "$d/$label.gguf" --force -q
      "$bin/moeq-eval" "$d/$label.gguf" --text "$valid" --chunks "$chunks" \
        --reference-logits "$d/bf16.logits.safetensors" \
        -o "$d/eval_$label.json" --force -q
      evals+=(--eval "$label=$d/eval_$label.json")
    done
  done
  # moeq's own plan at the bytes of the Q4_K_M file: `moeq-allocate --target gguf` costs every
  # option at the bytes the GGUF writer stores (one type per layer and projection of experts);
  # the experts' codes rtn, then gptq.
  "$bin/moeq-analyze" "$model" --activation-stats "$d/act.safetensors" -o "$d/sensitivity.jsonl" \
    --force -q
  budget=$(stat -c %s "$d/Q4_K_M-rtn.gguf")
  "$bin/moeq-allocate" "$d/sensitivity.jsonl" --target gguf --budget "${budget}B" --objective mse \
    -o "$d/plan.allocation.json" --force -q
  for enc in rtn gptq; do
    label=plan@Q4_K_M-$enc
    echo "== $name: $label"
    "$bin/moeq-quantize" "$model" --allocation "$d/plan.allocation.json" --format gguf \
      --stats "$d/act.safetensors" --expert-encoder "$enc" -o "$d/$label.gguf" --force -q
    "$bin/moeq-eval" "$d/$label.gguf" --text "$valid" --chunks "$chunks" \
      --reference-logits "$d/bf16.logits.safetensors" -o "$d/eval_$label.json" --force -q
    evals+=(--eval "$label=$d/eval_$label.json")
  done
  {
    echo
    echo "## $name — in domain (moe-corpus valid split)"
    echo
    "$bin/moeq-report" --no-html --table markdown --table-baseline Q4_K_M-rtn "${evals[@]}"
  } >> "$results"
done
echo
cat "$results"
