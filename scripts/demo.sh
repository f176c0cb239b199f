#!/usr/bin/env bash
# The main job end to end on the bundled default (models/tiny-qwen3moe and the texts in data/):
#   profile -> analyze -> allocate (at the bytes of uniform 4-bit g64) -> quantize -> eval -> report
# for uniform round-to-nearest 4-bit g64, the MINT plan (MINT's objective, sum of prior*NRMSE)
# and the moeq plan (output-noise objective, sum of prior^2*exposure*NRMSE^2, with priors
# measured by moeq-calibrate), then prints a comparison table (bytes, bpw, PPL, dPPL, KL from
# the bf16 model, top-1 agreement).
# Calibration uses a slice of the model's TRAIN split (data/moe-corpus/calib.txt); quality is
# measured on held-out text: the in-domain valid split (KL, the primary measure) and WikiText-2.
# Usage: scripts/demo.sh BIN_DIR [MODEL_DIR] [OUT_DIR]
# Environment: DEMO_CHUNKS (windows of 512 tokens evaluated per text, default 64).
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR [MODEL_DIR] [OUT_DIR]}
model=${2:-models/tiny-qwen3moe}
out=${3:-out/demo}
chunks=${DEMO_CHUNKS:-64}
mkdir -p "$out"
start=$(date +%s)
step() { echo; echo "== [$(( $(date +%s) - start ))s] $*"; }

step "1/7 moeq-inspect $model"
"$bin/moeq-inspect" "$model"

step "2/7 moeq-profile: expert routing and activation statistics on calibration text (train split)"
"$bin/moeq-profile" "$model" --text data/moe-corpus/calib.txt --domain calib \
  -o "$out/routing_profile.json" --activation-stats "$out/activation_stats.safetensors" --force

step "3/7 moeq-analyze: sensitivity features and the rate-distortion grid of every tensor"
"$bin/moeq-analyze" "$model" --activation-stats "$out/activation_stats.safetensors" \
  -o "$out/sensitivity.jsonl" --force

step "4/7 moeq-calibrate + moeq-allocate: plans at the bytes of uniform 4-bit g64 (4.5 bits per weight)"
"$bin/moeq-calibrate" "$model" --sensitivity "$out/sensitivity.jsonl" --text data/moe-corpus/calib.txt \
  -o "$out/calibrated_priors.json" --force
"$bin/moeq-allocate" "$out/sensitivity.jsonl" --bpw 4.5 --objective nrmse \
  -o "$out/allocation_mint.json" --curve 24 --force
"$bin/moeq-allocate" "$out/sensitivity.jsonl" --bpw 4.5 --objective mse --rules "$out/calibrated_priors.json" -q \
  -o "$out/allocation_moeq.json" --force > "$out/allocation_moeq.txt"
echo "(moeq plan summary in $out/allocation_moeq.txt)"

step "5/7 moeq-quantize: uniform q4g64 (mlx-lm rule: routers 8-bit), MINT plan, moeq plan (MLX safetensors)"
"$bin/moeq-quantize" "$model" --uniform 4 --group 64 -o "$out/q4g64" --force
"$bin/moeq-quantize" "$model" --allocation "$out/allocation_mint.json" -o "$out/mint" --force
"$bin/moeq-quantize" "$model" --allocation "$out/allocation_moeq.json" -o "$out/moeq" --force

step "6/7 moeq-eval: $chunks windows of 512 tokens per text, KL against the bf16 model"
for text in valid wiki; do
  case $text in
    valid) file=data/moe-corpus/valid.txt ;;
    wiki) file=data/wikitext-2-raw/wiki.test.raw ;;
  esac
  "$bin/moeq-eval" "$model" --text "$file" --chunks "$chunks" -o "$out/eval_${text}_bf16.json" --force
  for q in q4g64 mint moeq; do
    "$bin/moeq-eval" "$out/$q" --text "$file" --chunks "$chunks" --reference "$model" \
      -o "$out/eval_${text}_$q.json" --force
  done
done

step "7/7 moeq-report: $out/report.html"
"$bin/moeq-report" --title "moeq demo: $(basename "$model")" --profile "$out/routing_profile.json" \
  --sensitivity "$out/sensitivity.jsonl" --allocation "$out/allocation_moeq.json" \
  --curve "$out/allocation_mint.curve.csv" \
  --eval "bf16=$out/eval_valid_bf16.json" --eval "uniform-q4g64=$out/eval_valid_q4g64.json" \
  --eval "mint=$out/eval_valid_mint.json" --eval "moeq=$out/eval_valid_moeq.json" \
  -o "$out/report.html" --force

for text in valid wiki; do
  echo
  case $text in
    valid) echo "Quality on held-out in-domain text (data/moe-corpus/valid.txt; KL from bf16 is the primary measure):" ;;
    wiki) echo "Quality on WikiText-2 test (partly out of the model's domain: perplexity alone can mislead):" ;;
  esac
  "$bin/moeq-report" --no-html --table text --table-baseline uniform-q4g64 \
    --eval "bf16=$out/eval_${text}_bf16.json" --eval "uniform-q4g64=$out/eval_${text}_q4g64.json" \
    --eval "mint=$out/eval_${text}_mint.json" --eval "moeq=$out/eval_${text}_moeq.json"
done
echo
echo "mint = MINT's allocation (sum of prior*NRMSE, MINT's fixed priors); moeq = moeq's output-noise"
echo "objective (sum of prior^2*exposure*NRMSE^2: experts weighted by the share of tokens they see,"
echo "priors measured per role by moeq-calibrate); both at the bytes of uniform q4g64."
echo "Artefacts in $out/, report in $out/report.html."
echo "demo: done in $(( $(date +%s) - start )) s"
