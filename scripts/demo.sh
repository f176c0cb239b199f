#!/usr/bin/env bash
# The main job on the bundled default: describe the bundled tiny MoE model and report how much
# error uniform quantization at each MINT grid config would cause. Grows as the tools land.
# Usage: scripts/demo.sh BIN_DIR [MODEL_DIR]
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR [MODEL_DIR]}
model=${2:-models/tiny-qwen3moe}

echo "== moeq-inspect $model"
"$bin/moeq-inspect" "$model"
echo
echo "== moeq-inspect --quant-report $model (uniform round-to-nearest, MLX affine, every tensor)"
"$bin/moeq-inspect" "$model" --quant-report
