#!/usr/bin/env bash
# Data-aware encoders in the allocation loop (issue 17): KL from bf16 on the in-domain valid
# split and on WikiText-2 test, calibration (routing profile, activation statistics with Gram matrices, measured priors)
# on data/moe-corpus/calib.txt (a slice of the TRAIN split) only. Rows, per budget:
#   4.5 bpw (the bytes of uniform q4g64):
#     uniform-q4g64 | moeq (today: --objective mse with moeq-calibrate priors, RTN codes) |
#     the same allocation with weighted / gptq codes for the routed experts |
#     moeq-da (allocation on the data-aware grid: formats x {rtn, weighted, gptq}, activation-
#     weighted error, priors calibrated on it; every tensor gets its chosen encoder)
#   3.5 bpw: uniform-q3g64 (3.5 bpw) | moeq | moeq + gptq experts | moeq-da
#   3.0 bpw with the 9 dB veto: uniform-q2g32 (3.0 bpw) | moeq | moeq-da
# A plan that is infeasible at its budget is evaluated at --budget min and marked @min.
#
# Usage: bench/quality/encoders.sh BIN_DIR OUT_DIR MODEL_DIR...
#   e.g. bench/quality/encoders.sh build/bin out/quality-encoders models/tiny-qwen3moe ../shared/models/tiny-mixtral
# Environment: QUALITY_CHUNKS (windows of 512 tokens, default 32).
# Writes OUT_DIR/results.md and every artefact under OUT_DIR/<model>/.
set -euo pipefail
bin=${1:?usage: encoders.sh BIN_DIR OUT_DIR MODEL_DIR...}
out=${2:?usage: encoders.sh BIN_DIR OUT_DIR MODEL_DIR...}
shift 2
[ $# -gt 0 ] || { echo "encoders.sh: no MODEL_DIR given" >&2; exit 2; }
chunks=${QUALITY_CHUNKS:-32}
root=$(cd "$(dirname "$0")/../.." && pwd)
calib=$root/data/moe-corpus/calib.txt
valid=$root/data/moe-corpus/valid.txt
wiki=$root/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$out"
results=$out/results.md
{
  echo "# moeq data-aware encoders (issue 17)"
  echo
  echo "Produced by \`bench/quality/encoders.sh $bin $out $*\` ($chunks windows of 512 tokens of the"
  echo "moe-corpus valid split and of WikiText-2 test, protocol \`reference\`; KL(P_bf16 ‖ P_quant) in nats per token)."
  echo "Calibration on data/moe-corpus/calib.txt (TRAIN split slice) only."
} > "$results"

for model in "$@"; do
  name=$(basename "$model")
  d=$out/$name
  mkdir -p "$d"
  echo "== $name: profile (--gram), analyze (rtn; data-aware), calibrate"
  "$bin/moeq-profile" "$model" --text "$calib" -o "$d/routing_profile.json" \
    --activation-stats "$d/act.safetensors" --gram --force -q
  "$bin/moeq-analyze" "$model" --activation-stats "$d/act.safetensors" -o "$d/sens.jsonl" --force -q
  "$bin/moeq-analyze" "$model" --activation-stats "$d/act.safetensors" --encoders rtn,weighted,gptq \
    --error activation -o "$d/sens_da.jsonl" --force -q
  "$bin/moeq-calibrate" "$model" --sensitivity "$d/sens.jsonl" --text "$calib" -o "$d/cal.json" --force -q
  "$bin/moeq-calibrate" "$model" --sensitivity "$d/sens_da.jsonl" --text "$calib" -o "$d/cal_da.json" --force -q

  labels=()
  notes=()
  uniform() {  # label bits group
    "$bin/moeq-quantize" "$model" --uniform "$2" --group "$3" -o "$d/$1" --force -q
    labels+=("$1")
  }
  # plan label sensitivity rules bpw [quantize args...]: allocate, then quantize.
  plan() {
    local label=$1 sens=$2 rules=$3 bpw=$4
    shift 4
    local budget=(--bpw "$bpw")
    if ! "$bin/moeq-allocate" "$sens" --objective mse --rules "$rules" "${budget[@]}" \
         -o "$d/$label.allocation.json" --force -q > "$d/$label.allocation.txt" 2> "$d/$label.allocation.err"; then
      notes+=("**$label** at $bpw bpw: infeasible: $(grep -o 'budget .*' "$d/$label.allocation.err" | head -1)")
      label=$label@min
      "$bin/moeq-allocate" "$sens" --objective mse --rules "$rules" --budget min \
        -o "$d/$label.allocation.json" --force -q > "$d/$label.allocation.txt"
    fi
    "$bin/moeq-quantize" "$model" --allocation "$d/$label.allocation.json" --stats "$d/act.safetensors" \
      -o "$d/$label" --force -q "$@"
    labels+=("$label")
    PLAN_LABEL=$label
  }
  # same_plan label from-label [quantize args...]: the allocation of from-label, other encoders.
  same_plan() {
    local label=$1 from=$2
    shift 2
    "$bin/moeq-quantize" "$model" --allocation "$d/$from.allocation.json" --stats "$d/act.safetensors" \
      -o "$d/$label" --force -q "$@"
    labels+=("$label")
  }
  echo "== $name: quantize"
  uniform uniform-q4g64 4 64
  plan moeq@4.5 "$d/sens.jsonl" "$d/cal.json" 4.5
  same_plan "moeq@4.5+weighted-experts" "$PLAN_LABEL" --expert-encoder weighted
  same_plan "moeq@4.5+gptq-experts" "$PLAN_LABEL" --expert-encoder gptq
  plan moeq-da@4.5 "$d/sens_da.jsonl" "$d/cal_da.json" 4.5
  uniform uniform-q3g64 3 64
  plan moeq@3.5 "$d/sens.jsonl" "$d/cal.json" 3.5
  same_plan "moeq@3.5+gptq-experts" "$PLAN_LABEL" --expert-encoder gptq
  plan moeq-da@3.5 "$d/sens_da.jsonl" "$d/cal_da.json" 3.5
  uniform uniform-q2g32 2 32
  plan moeq@3.0 "$d/sens.jsonl" "$d/cal.json" 3.0
  plan moeq-da@3.0 "$d/sens_da.jsonl" "$d/cal_da.json" 3.0

  for text in valid wiki; do
    file=${!text}
    echo "== $name: eval on $text"
    "$bin/moeq-eval" "$model" --text "$file" --chunks "$chunks" -o "$d/eval_${text}_bf16.json" --force -q
    evals=(--eval "bf16=$d/eval_${text}_bf16.json")
    for label in "${labels[@]}"; do
      "$bin/moeq-eval" "$d/$label" --text "$file" --chunks "$chunks" --reference "$model" \
        -o "$d/eval_${text}_$label.json" --force -q
      evals+=(--eval "$label=$d/eval_${text}_$label.json")
    done
    {
      echo
      case $text in
        valid) echo "## $name — in domain (moe-corpus valid split)" ;;
        wiki) echo "## $name — WikiText-2 test" ;;
      esac
      echo
      "$bin/moeq-report" --no-html --table markdown --table-baseline uniform-q4g64 "${evals[@]}"
    } >> "$results"
  done
  if [ ${#notes[@]} -gt 0 ]; then
    { echo; for n in "${notes[@]}"; do echo "- $n"; done; } >> "$results"
  fi
done
echo
cat "$results"
