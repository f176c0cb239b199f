#!/usr/bin/env python3
"""Markdown table of bench/scale/run.sh results: table.py results-L4.jsonl [results-L24.jsonl ...]

One row per tool and layer count: wall time, CPU time (user + system; on a shared machine the
CPU time is the figure that does not depend on the others' load), the load average at start,
GB read from storage, and the peaks of anonymous and file-backed resident memory."""
import json
import sys

tools = ["synth", "cp", "read", "inspect", "profile", "analyze", "calibrate", "allocate", "allocate_gguf",
         "quantize_mlx", "quantize_gguf", "eval_bf16", "eval_q_packed"]
print("| layers | tool | wall s | CPU s | load | read GB | peak anon MB | peak file-backed MB |")
print("|---|---|---|---|---|---|---|---|")
summary = []
for path in sys.argv[1:]:
    recs = [json.loads(line) for line in open(path) if line.strip()]
    by = {r["tool"]: r for r in recs}
    layers = path.split("results-L")[-1].split(".")[0]
    for t in tools:
        r = by.get(t)
        if r is None:
            continue
        rc = "" if r["rc"] == 0 else f" (exit {r['rc']})"
        print(f"| {layers} | {t}{rc} | {r['wall_s']:.1f} | {r.get('cpu_s', float('nan')):.1f} | "
              f"{r.get('load_start', float('nan')):.1f} | {r.get('read_mb', 0) / 1024:.2f} | "
              f"{r['peak_anon_mb']:.0f} | {r['peak_file_mb']:.0f} |")
    ck = by.get("checkpoint_bytes", {}).get("bytes", 0)
    cpb = by.get("cp_bytes", {}).get("bytes", ck)
    cp = by.get("cp", {}).get("wall_s", 0)
    line = f"{layers} layers: checkpoint {ck / 1e9:.2f} GB"
    if cp:
        line += f"; cp {cpb / 1e9 / cp:.3f} GB/s (cold, {cpb / 1e9:.1f} GB + sync)"
    rd = by.get("read", {}).get("wall_s", 0)
    if rd:
        line += f"; sequential read {cpb / 1e9 / rd:.3f} GB/s (cold)"
    g = by.get("gemm")
    if g:
        line += f"; float GEMM {g['best_gflop_per_cpu_s']:.0f} GFLOP per CPU-second (one core)"
    for t, name in (("quantize_mlx", "quantize MLX"), ("quantize_gguf", "quantize GGUF"),
                    ("analyze", "analyze"), ("profile", "profile")):
        r = by.get(t)
        if r and r["rc"] == 0 and r["wall_s"] > 0:
            gbs = ck / 1e9 / r["wall_s"]
            line += f"; {name} {gbs:.3f} GB/s"
            if cp and t.startswith("quantize"):
                line += f" = {gbs / (cpb / 1e9 / cp):.2f}x cp"
    summary.append(line)
print()
for s in summary:
    print(s)
