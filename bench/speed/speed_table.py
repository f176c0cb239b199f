#!/usr/bin/env python3
"""The table of bench/speed/llamacpp_speed.sh from its JSON lines (one per process run).

Usage: speed_table.py SPEED.jsonl NAME TOKENS ROUNDS REPS LOAD_START LOAD_END

Per (side, format, thread count): the median over every repetition of every round of the wall
time (and of the process CPU time) of one prefill of TOKENS tokens / one decode step. Ratios are
moeq tokens/s over llama.cpp tokens/s (> 1: moeq faster). The CPU-time ratio is given for one
thread only: with one thread, CPU time is what the work costs whatever else runs on the machine;
with two, llama.cpp's worker threads spin while they wait, which CPU time would count as work.
"""
import json
import statistics
import sys

path, name, tokens, rounds, reps, load0, load1 = sys.argv[1:]
tokens = int(tokens)
runs = [json.loads(line) for line in open(path)]


def med(label, threads, key):
    v = [x for r in runs if r["label"] == label and r["threads"] == threads for x in r.get(key, [])]
    return statistics.median(v) if v else None


llama = next((r for r in runs if r["label"].startswith("llama")), {})
moeq = next((r for r in runs if r["label"].startswith("moeq")), {})
print(f"### {name}: moeq against llama.cpp, prefill of {tokens} tokens in one batch")
print()
print(f"llama.cpp {llama.get('llama_cpp', '?')} (node-llama-cpp {llama.get('node_llama_cpp', '?')}, "
      f"prebuilt CPU backend, flash attention {llama.get('flash_attention', '?')}); moeq kernels "
      f"{moeq.get('kernels', '?')}. Medians over {int(rounds)} alternating rounds x {reps} "
      f"repetitions; load average {load0} at the start, {load1} at the end.")
print()
print("| row | threads | moeq tok/s | llama.cpp tok/s | moeq / llama.cpp (wall) | "
      "moeq / llama.cpp (CPU time) |")
print("|---|---:|---:|---:|---:|---:|")
pairs = [("prefill: moeq packed q4g64 vs Q4_K_M", "moeq-q4g64", "llama-Q4_K_M", "prefill", tokens),
         ("prefill: moeq packed q4g64, int8 activations vs Q4_K_M", "moeq-q4g64-i8", "llama-Q4_K_M",
          "prefill", tokens),
         ("prefill: BASELINE_BIN's moeq packed q4g64 vs Q4_K_M", "moeq-q4g64-baseline", "llama-Q4_K_M",
          "prefill", tokens),
         ("prefill: moeq bf16 vs F16", "moeq-bf16", "llama-F16", "prefill", tokens),
         ("decode: moeq packed q4g64 vs Q4_K_M", "moeq-q4g64", "llama-Q4_K_M", "decode", 1),
         ("decode: moeq packed q4g64, int8 activations vs Q4_K_M", "moeq-q4g64-i8", "llama-Q4_K_M",
          "decode", 1),
         ("decode: moeq bf16 vs F16", "moeq-bf16", "llama-F16", "decode", 1),
         ("decode: BASELINE_BIN's moeq packed q4g64 vs Q4_K_M", "moeq-q4g64-baseline", "llama-Q4_K_M",
          "decode", 1)]
thread_counts = sorted({r["threads"] for r in runs}, reverse=True)
for title, a, b, kind, n in pairs:
    wall = "prefill_s" if kind == "prefill" else "decode_s_per_token"
    cpu = "prefill_cpu_s" if kind == "prefill" else "decode_cpu_s_per_token"
    for th in thread_counts:
        ma, mb = med(a, th, wall), med(b, th, wall)
        if ma is None or mb is None:
            continue
        ca, cb = med(a, th, cpu), med(b, th, cpu)
        cpu_ratio = f"{cb / ca:.2f}" if th == 1 and ca and cb else ""
        print(f"| {title} | {th} | {n / ma:.0f} | {n / mb:.0f} | {mb / ma:.2f} | {cpu_ratio} |")
if any(r["label"] == "moeq-q4g64-baseline" for r in runs):
    print()
    for th in thread_counts:
        a, b = med("moeq-q4g64", th, "prefill_s"), med("moeq-q4g64-baseline", th, "prefill_s")
        ca, cb = med("moeq-q4g64", th, "prefill_cpu_s"), med("moeq-q4g64-baseline", th, "prefill_cpu_s")
        if a and b:
            print(f"moeq packed prefill, this build / BASELINE_BIN, {th} thread(s): {b / a:.2f}x (wall)"
                  + (f", {cb / ca:.2f}x (CPU time)" if ca and cb else ""))
