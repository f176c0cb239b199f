#!/usr/bin/env bash
# Quality benchmark: for each model, perplexity, mean KL divergence from the bf16 model's token
# distributions and top-1 agreement with it, on held-out in-domain text (moe-corpus valid split)
# and on WikiText-2 test, for:
#   bf16 | uniform RTN q4g64 | MINT plan at the bytes of q4g64 | MINT plan at +25% bytes |
#   moeq plan (output-noise objective) at the same two sizes, with MINT's priors and with priors
#   measured by moeq-calibrate | tiered (DynaMINT) at the same bytes |
#   3.0 bpw with the 9 dB SQNR veto | 3.0 bpw without it
# A plan that cannot be built at its budget (the tool exits 1 naming the smallest feasible size)
# is listed as infeasible and evaluated instead at its fallback budget: the smallest feasible
# size, or for the tiered plan (whose fixed 8/4-bit expert tiers do not fit 4.5 bpw) 5.625 bpw,
# the budget of the +25% rows.
#
# Usage: bench/quality/run.sh BIN_DIR OUT_DIR MODEL_DIR...
#   e.g. bench/quality/run.sh build-release/bin out/quality models/tiny-qwen3moe ../shared/models/tiny-mixtral
# Environment: QUALITY_CHUNKS (windows of 512 tokens per text, default 64); QUALITY_ENCODERS=0 skips
# the data-aware encoder rows (bench/quality/encoders.sh, written to OUT_DIR/encoders/results.md
# and appended to OUT_DIR/results.md).
# Writes OUT_DIR/results.md (the tables) and every artefact under OUT_DIR/<model>/.
set -euo pipefail
bin=${1:?usage: run.sh BIN_DIR OUT_DIR MODEL_DIR...}
out=${2:?usage: run.sh BIN_DIR OUT_DIR MODEL_DIR...}
shift 2
[ $# -gt 0 ] || { echo "run.sh: no MODEL_DIR given" >&2; exit 2; }
chunks=${QUALITY_CHUNKS:-64}
root=$(cd "$(dirname "$0")/../.." && pwd)
calib=$root/data/moe-corpus/calib.txt
valid=$root/data/moe-corpus/valid.txt
wiki=$root/data/wikitext-2-raw/wiki.test.raw
mkdir -p "$out"
results=$out/results.md
{
  echo "# moeq quality benchmark"
  echo
  echo "Produced by \`bench/quality/run.sh $bin $out $*\` ($chunks windows of 512 tokens per text,"
  echo "protocol \`reference\`: every token but the first of each window scored; KL(P_bf16 ‖ P_quant)"
  echo "over the whole vocabulary, nats per token). Calibration (routing profile, activation"
  echo "statistics) on data/moe-corpus/calib.txt, a slice of the TRAIN split; never on the evaluated text."
} > "$results"

for model in "$@"; do
  name=$(basename "$model")
  d=$out/$name
  mkdir -p "$d"
  echo "== $name: profile, analyze"
  "$bin/moeq-profile" "$model" --text "$calib" -o "$d/routing_profile.json" \
    --activation-stats "$d/activation_stats.safetensors" --force -q
  "$bin/moeq-analyze" "$model" --activation-stats "$d/activation_stats.safetensors" \
    -o "$d/sensitivity.jsonl" --force -q
  "$bin/moeq-calibrate" "$model" --sensitivity "$d/sensitivity.jsonl" --text "$calib" \
    -o "$d/calibrated_priors.json" --force -q

  # label|allocate arguments (empty for bf16/uniform) ; notes collect infeasible plans.
  plans=(
    "mint|--bpw 4.5 --objective nrmse"
    "mint+25%|--bpw 5.625 --objective nrmse"
    "moeq|--bpw 4.5 --objective mse"
    "moeq+25%|--bpw 5.625 --objective mse"
    "moeq-cal|--bpw 4.5 --objective mse --rules $d/calibrated_priors.json"
    "moeq-cal+25%|--bpw 5.625 --objective mse --rules $d/calibrated_priors.json"
    "tiered|--bpw 4.5 --policy tiered --profile $d/routing_profile.json|5.625"
    "3.0bpw-veto|--bpw 3.0 --objective nrmse"
    "3.0bpw-noveto|--bpw 3.0 --objective nrmse --min-sqnr -200"
  )
  notes=()
  labels=(uniform-q4g64 uniform-q2g32 uniform-q3g128)
  echo "== $name: quantize"
  # Uniform baselines follow mlx-lm (routers and shared-expert gates 8-bit; moeq-quantize --help).
  "$bin/moeq-quantize" "$model" --uniform 4 --group 64 -o "$d/uniform-q4g64" --force -q
  # Below 4 bits: uniform 2-bit g32 (3.0 bpw, the bytes of the 3.0bpw plans) and 3-bit g128 (3.25 bpw).
  "$bin/moeq-quantize" "$model" --uniform 2 --group 32 -o "$d/uniform-q2g32" --force -q
  "$bin/moeq-quantize" "$model" --uniform 3 --group 128 -o "$d/uniform-q3g128" --force -q
  for p in "${plans[@]}"; do
    IFS='|' read -r label args fallback <<< "$p"
    fallback=${fallback:-min}  # the budget to evaluate an infeasible plan at: bpw or "min"
    # shellcheck disable=SC2086
    if "$bin/moeq-allocate" "$d/sensitivity.jsonl" $args -o "$d/$label.allocation.json" --force -q \
         > "$d/$label.allocation.txt" 2> "$d/$label.allocation.err"; then
      labels+=("$label")
    else
      msg=$(grep -o 'budget .*' "$d/$label.allocation.err" | head -1)
      notes+=("**$label** (\`$args\`): infeasible: $msg")
      echo "   $label: infeasible: $msg"
      # Evaluate the policy at its smallest feasible size instead.
      label_min="$label@$fallback"
      # Same arguments with the budget replaced by "min".
      read -r -a words <<< "$args"
      min_args=()
      for ((i = 0; i < ${#words[@]}; ++i)); do
        if [ "${words[i]}" = --bpw ]; then i=$((i + 1)); else min_args+=("${words[i]}"); fi
      done
      if [ "$fallback" = min ]; then budget_args=(--budget min); else budget_args=(--bpw "$fallback"); fi
      "$bin/moeq-allocate" "$d/sensitivity.jsonl" "${min_args[@]}" "${budget_args[@]}" \
        -o "$d/$label_min.allocation.json" --force -q > "$d/$label_min.allocation.txt"
      label=$label_min
      labels+=("$label")
    fi
    "$bin/moeq-quantize" "$model" --allocation "$d/$label.allocation.json" -o "$d/$label" --force -q
  done

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
    { echo; echo "Infeasible plans for $name:"; echo; for n in "${notes[@]}"; do echo "- $n"; done; } >> "$results"
  fi
done
if [ "${QUALITY_ENCODERS:-1}" != 0 ]; then
  "$(dirname "$0")/encoders.sh" "$bin" "$out/encoders" "$@" > /dev/null
  { echo; sed -e '2,$s/^## /### /' -e '1s/^# /## /' "$out/encoders/results.md"; } >> "$results"
fi
echo
cat "$results"
