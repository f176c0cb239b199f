#!/usr/bin/env bash
# moeq-calibrate --method local against --method kl on a small model (docs/scale.md):
# the priors of both, their agreement, and the KL of the moeq plans built from each.
#
#   bench/scale/calibrate_check.sh BIN_DIR [MODEL_DIR] [OUT_DIR]
set -euo pipefail
bin=${1:?usage: calibrate_check.sh BIN_DIR [MODEL_DIR] [OUT_DIR]}
model=${2:-models/tiny-qwen3moe}
out=${3:-out/calibrate-check}
chunks=${CHUNKS:-64}
mkdir -p "$out"
"$bin/moeq-profile" "$model" --text data/moe-corpus/calib.txt --domain calib -q \
  -o "$out/routing_profile.json" --activation-stats "$out/activation_stats.safetensors" --force
"$bin/moeq-analyze" "$model" --activation-stats "$out/activation_stats.safetensors" -q -o "$out/sensitivity.jsonl" --force
for m in kl local; do
  /usr/bin/time -f "calibrate --method $m: %e s" "$bin/moeq-calibrate" "$model" --sensitivity "$out/sensitivity.jsonl" \
    --text data/moe-corpus/calib.txt --method "$m" -o "$out/priors_$m.json" --force 2> "$out/calibrate_$m.log"
  tail -1 "$out/calibrate_$m.log"
  grep -h "forward passes" "$out/calibrate_$m.log" | sed 's/.*calibrate: //'
  "$bin/moeq-allocate" "$out/sensitivity.jsonl" --bpw 4.5 --objective mse --rules "$out/priors_$m.json" -q \
    -o "$out/allocation_$m.json" --force > /dev/null
  "$bin/moeq-quantize" "$model" --allocation "$out/allocation_$m.json" -o "$out/q_$m" --force -q
  "$bin/moeq-eval" "$out/q_$m" --text data/moe-corpus/valid.txt --chunks "$chunks" --reference "$model" -q \
    -o "$out/eval_$m.json" --force
done
python3 - "$out" <<'PY'
import json, math, sys
out = sys.argv[1]
p = {m: {(r["role"], r["layer"]): r for r in json.load(open(f"{out}/priors_{m}.json"))["measurements"]} for m in ("kl", "local")}
keys = sorted(p["kl"])
a = [p["kl"][k]["kl_mean"] for k in keys]
b = [p["local"][k]["kl_mean"] for k in keys]
def ranks(v):
    o = sorted(range(len(v)), key=lambda i: v[i]); r = [0] * len(v)
    for i, j in enumerate(o): r[j] = i
    return r
ra, rb = ranks(a), ranks(b)
n = len(keys)
rho = 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))
ratio = [y / x for x, y in zip(a, b) if x > 0]
pa = [p["kl"][k]["prior"] for k in keys]; pb = [p["local"][k]["prior"] for k in keys]
print(f"{n} probes: Spearman rank correlation of KL (local vs kl) {rho:.3f}; local/kl KL ratio "
      f"median {sorted(ratio)[len(ratio)//2]:.2f}, range {min(ratio):.2f}..{max(ratio):.2f}; "
      f"prior ratio range {min(y/x for x,y in zip(pa,pb)):.2f}..{max(y/x for x,y in zip(pa,pb)):.2f}")
for m in ("kl", "local"):
    e = json.load(open(f"{out}/eval_{m}.json"))
    print(f"plan from {m:5s} priors: KL {e['reference']['kl_mean']:.6f}, ppl {e['ppl']:.4f}")
PY
