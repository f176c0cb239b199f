#!/usr/bin/env python3
"""Markdown table of bench/scale/run.sh results: table.py results-L4.jsonl [results-L8.jsonl ...]"""
import json
import sys

rows = {}
for path in sys.argv[1:]:
    recs = [json.loads(line) for line in open(path) if line.strip()]
    by = {r["tool"]: r for r in recs}
    layers = path.split("results-L")[-1].split(".")[0]
    rows[layers] = by

tools = ["synth", "cp", "inspect", "profile", "analyze", "calibrate", "allocate", "quantize_mlx", "quantize_gguf",
         "eval_bf16", "eval_q_packed"]
print("| tool | " + " | ".join(f"{l} layers: wall s / anon MB / file MB" for l in rows) + " |")
print("|---|" + "---|" * len(rows))
for t in tools:
    cells = []
    for l, by in rows.items():
        r = by.get(t)
        cells.append("—" if r is None else
                     f"{r['wall_s']:.1f} / {r['peak_anon_mb']:.0f} / {r['peak_file_mb']:.0f}" + ("" if r["rc"] == 0 else f" (rc {r['rc']})"))
    print(f"| {t} | " + " | ".join(cells) + " |")
for l, by in rows.items():
    ck = by.get("checkpoint_bytes", {}).get("bytes", 0)
    cp = by.get("cp", {}).get("wall_s", 0)
    q = by.get("quantize_mlx", {}).get("wall_s", 0)
    a = by.get("analyze", {}).get("wall_s", 0)
    if ck and cp and q:
        print(f"\n{l} layers: checkpoint {ck/1e9:.2f} GB; cp {ck/1e9/cp:.2f} GB/s; quantize (MLX) {ck/1e9/q:.2f} GB/s "
              f"= {cp/q:.2f}x cp; analyze {ck/1e9/a:.2f} GB/s")
