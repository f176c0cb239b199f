#!/usr/bin/env bash
# moeq against llama.cpp on the same model and the same token ids, measured in one run
# (bench/speed/README.md).
#
#   bench/speed/llamacpp_speed.sh [MODEL_DIR]
#
# MODEL_DIR: a bf16 Hugging Face checkpoint (default ../shared/models/tiny-mixtral-256 when
# present, else the bundled models/tiny-qwen3moe). Writes under WORK/<model name>/:
#   q4g64/          moeq-quantize --uniform 4 --group 64 (MLX affine 4-bit g64; routers 8-bit)
#   Q4_K_M.gguf     moeq-quantize --format gguf with llama.cpp's Q4_K_M type mix
#                   (bench/quality/gguf_mix_allocation.py: the per-tensor types llama-quantize
#                   picks for Q4_K_M)
#   F16.gguf        every weight matrix f16 (llama.cpp's float baseline)
#   ids.json        the first TOKENS tokens of data/moe-corpus/valid.txt (moeq's tokenizer)
# then runs ROUNDS rounds of, alternately, moeq packed q4g64 | the same with int8 activations
# (--int8-activations, as llama.cpp multiplies its quantized types) | llama.cpp Q4_K_M | moeq bf16 |
# llama.cpp F16 — each a fresh process (bench_speed / llamacpp_speed.mjs) that loads the model,
# runs one untimed warm-up, then REPS timed prefills of TOKENS tokens (one batch; logits of the
# last token) and, with DECODE > 0, REPS timed runs of DECODE one-token steps on the KV cache
# after a 32-token prompt. Load time is never timed. Medians over all REPS x ROUNDS values.
#
# Environment: BIN (build/bin), WORK (/tmp/moeq-speed), ROUNDS (3), REPS (5), THREADS ("2 1":
# every thread count in the list, alternated within each round),
# TOKENS (512), DECODE (64; 0 = no decode rows), DECODE_THREADS ("1": the thread counts with
# decode rows; llama.cpp's two-thread decode is meaningless on a loaded machine, README),
# NICE ("nice -n 10" on the shared machine: both sides get the same), FORCE=1 rewrites the model
# files, BASELINE_BIN (a directory with another build's bench_speed: an extra
# "moeq-q4g64-baseline" run in every round, for before/after in the same run).
# Needs node and tests/llamacpp/node_modules (scripts/install-llamacpp.sh).
# Prints the table on stdout and writes it to WORK/<name>/speed.md; raw JSON lines in
# WORK/<name>/speed.jsonl.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${BIN:-$root/build/bin}
work=${WORK:-/tmp/moeq-speed}
rounds=${ROUNDS:-3}
reps=${REPS:-5}
threads=${THREADS:-2 1}
tokens=${TOKENS:-512}
decode=${DECODE:-64}
nice_cmd=${NICE-nice -n 10}
if [ $# -ge 1 ]; then
  model=$1
elif [ -f "$root/../shared/models/tiny-mixtral-256/config.json" ]; then
  model=$root/../shared/models/tiny-mixtral-256
else
  model=$root/models/tiny-qwen3moe
fi
model=$(cd "$model" && pwd)
name=$(basename "$model")
d=$work/$name
mkdir -p "$d"
for t in bench_speed moeq-quantize; do
  [ -x "$bin/$t" ] || { echo "llamacpp_speed.sh: $bin/$t missing (build it)" >&2; exit 2; }
done
[ -f "$root/tests/llamacpp/node_modules/node-llama-cpp/package.json" ] || {
  echo "llamacpp_speed.sh: node-llama-cpp missing: run scripts/install-llamacpp.sh" >&2
  exit 2
}
force=()
[ "${FORCE:-0}" = 1 ] && force=(--force)

echo "== $name: model files in $d" >&2
if [ ! -f "$d/ids.json" ] || [ "${FORCE:-0}" = 1 ]; then
  "$bin/bench_speed" "$model" --text "$root/data/moe-corpus/valid.txt" --tokens "$tokens" \
    --decode "$decode" --reps 0 --dump-ids "$d/ids.json"
fi
if [ ! -f "$d/q4g64/config.json" ] || [ "${FORCE:-0}" = 1 ]; then
  "$bin/moeq-quantize" "$model" --uniform 4 --group 64 -o "$d/q4g64" --force -q
fi
if [ ! -f "$d/Q4_K_M.gguf" ] || [ "${FORCE:-0}" = 1 ]; then
  python3 "$root/bench/quality/gguf_mix_allocation.py" "$model" Q4_K_M "$d/Q4_K_M.allocation.json"
  "$bin/moeq-quantize" "$model" --allocation "$d/Q4_K_M.allocation.json" --format gguf \
    -o "$d/Q4_K_M.gguf" --force --no-model-card -q
fi
if [ ! -f "$d/F16.gguf" ] || [ "${FORCE:-0}" = 1 ]; then
  # Every weight matrix f16 (norms and the router stay F32 in a GGUF; docs/gguf.md).
  python3 - "$model" "$d/F16.allocation.json" <<'EOF'
import json, os, struct, sys
model, out = sys.argv[1], sys.argv[2]
names = []
for f in sorted(os.listdir(model)):
    if f.endswith(".safetensors") and not f.startswith("reference"):
        with open(os.path.join(model, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            names += [k for k in json.loads(fh.read(n)) if k != "__metadata__"]
tensors = [{"name": n, "format": "f16"} for n in sorted(names)
           if n.endswith(".weight") and "norm" not in n]
json.dump({"schema": "moeq.allocation", "version": 1,
           "producer": "bench/speed/llamacpp_speed.sh f16", "tensors": tensors}, open(out, "w"))
EOF
  "$bin/moeq-quantize" "$model" --allocation "$d/F16.allocation.json" --format gguf \
    -o "$d/F16.gguf" --force --no-model-card -q
fi

decode_threads=${DECODE_THREADS:-1}
base_bin=${BASELINE_BIN:-}
out=$d/speed.jsonl
: > "$out"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
run() {  # label, threads, command...
  local label=$1 th=$2
  shift 2
  echo "   $label, $th thread(s)" >&2
  $nice_cmd "$@" --threads "$th" |
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["label"]=sys.argv[1]; r["threads"]=int(sys.argv[2]); print(json.dumps(r))' "$label" "$th" >> "$out"
}
for r in $(seq 1 "$rounds"); do
  for th in $threads; do
    echo "== round $r/$rounds, $th thread(s)" >&2
    dec=0
    case " $decode_threads " in *" $th "*) dec=$decode ;; esac
    common=(--tokens "$tokens" --reps "$reps" --decode "$dec")
    run moeq-q4g64 "$th" "$bin/bench_speed" "$d/q4g64" --ids "$d/ids.json" "${common[@]}"
    run moeq-q4g64-i8 "$th" "$bin/bench_speed" "$d/q4g64" --ids "$d/ids.json" "${common[@]}" \
      --int8-activations
    run llama-Q4_K_M "$th" node "$here/llamacpp_speed.mjs" "$d/Q4_K_M.gguf" "$d/ids.json" "${common[@]}"
    if [ -n "$base_bin" ]; then
      run moeq-q4g64-baseline "$th" "$base_bin/bench_speed" "$d/q4g64" --ids "$d/ids.json" "${common[@]}"
    fi
    run moeq-bf16 "$th" "$bin/bench_speed" "$model" --ids "$d/ids.json" "${common[@]}"
    run llama-F16 "$th" node "$here/llamacpp_speed.mjs" "$d/F16.gguf" "$d/ids.json" "${common[@]}"
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 "$here/speed_table.py" "$out" "$name" "$tokens" "$rounds" "$reps" "$load0" "$load1" | tee "$d/speed.md"
