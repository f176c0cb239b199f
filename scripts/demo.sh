#!/usr/bin/env bash
# The main job on the bundled default (models/tiny-qwen3moe and the texts in data/):
#   1. describe the checkpoint (moeq-inspect)
#   2. report the error uniform quantization would cause at each MINT grid config
#   3. profile expert routing on in-domain calibration text (moeq-profile)
#   4. measure perplexity on the held-out in-domain text (moeq-eval), to compare with the
#      model card's reference (87.4925) computed by an independent PyTorch implementation
# It grows into profile -> analyze -> allocate -> quantize -> eval as those tools land.
# Usage: scripts/demo.sh BIN_DIR [MODEL_DIR] [OUT_DIR]
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR [MODEL_DIR] [OUT_DIR]}
model=${2:-models/tiny-qwen3moe}
out=${3:-out/demo}
mkdir -p "$out"

echo "== 1. moeq-inspect $model"
"$bin/moeq-inspect" "$model"
echo
echo "== 2. uniform round-to-nearest quantization (MLX affine) of every quantizable tensor"
"$bin/moeq-inspect" "$model" --quant-report
echo
echo "== 3. moeq-profile: expert routing on 64 windows of in-domain text"
"$bin/moeq-profile" "$model" --text data/moe-corpus/valid.txt --max-windows 64 \
  -o "$out/routing_profile.json" --activation-stats "$out/activation_stats.safetensors" --force
echo
echo "== 4. moeq-eval: perplexity on the held-out in-domain text (reference protocol)"
"$bin/moeq-eval" "$model" --text data/moe-corpus/valid.txt -o "$out/eval_bf16.json" --force
python3 - "$out/eval_bf16.json" <<'PY' 2>/dev/null || grep -E '"(ppl|tokens_scored|seconds)"' "$out/eval_bf16.json"
import json, sys
j = json.load(open(sys.argv[1]))
print(f"bf16 perplexity {j['ppl']:.4f} ± {j['ppl_stderr']:.4f} on {j['tokens_scored']} tokens "
      f"(model card reference: 87.4925), {j['tokens_per_second']:.0f} tokens/s")
PY
echo
echo "demo artefacts in $out/"
