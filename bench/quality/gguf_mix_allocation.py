#!/usr/bin/env python3
"""Writes a moeq allocation.json that reproduces one of llama.cpp's K-quant type mixes
(Q4_K_M or Q3_K_M, docs/formats.md §4.2) in moeq's plan formats, so that
`moeq-quantize --allocation X --format gguf` writes a file with llama.cpp's per-tensor types
(q4g64 -> Q4_K, q3g64 -> Q3_K, q5g64 -> Q5_K, q6g64 -> Q6_K, q8g32 -> Q8_0; docs/gguf.md).

Rules (llama_tensor_get_type_impl, n = layers, use_more_bits(i) = i < n/8 or i >= 7n/8 or
(i - n/8) % 3 == 2):
  Q4_K_M: default Q4_K; output Q6_K; attn_v and ffn_down Q6_K if use_more_bits(i);
  Q3_K_M: default Q3_K; output Q6_K; attn_v Q5_K for i < 2 else Q4_K; ffn_down Q5_K if
          i < n/16 else Q4_K; attn_output Q4_K;
  both, with 8 experts (Mixtral): attn_v and attn_k Q8_0, attn_output Q5_K.
The router (ffn_gate_inp) and norms are not quantized by llama.cpp: they keep the source dtype.

Usage: gguf_mix_allocation.py MODEL_DIR {Q4_K_M|Q3_K_M} OUT.json
"""
import json
import re
import struct
import sys


def tensor_names(model_dir):
    import os
    names = []
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors") and not f.startswith("reference"):
            with open(os.path.join(model_dir, f), "rb") as fh:
                n = struct.unpack("<Q", fh.read(8))[0]
                header = json.loads(fh.read(n))
            names += [k for k in header if k != "__metadata__"]
    return sorted(names)


def main():
    model_dir, mix, out = sys.argv[1], sys.argv[2], sys.argv[3]
    cfg = json.load(open(model_dir + "/config.json"))
    n = cfg["num_hidden_layers"]
    n_expert = cfg.get("num_local_experts", cfg.get("num_experts", 0))
    default = {"Q4_K_M": "q4g64", "Q3_K_M": "q3g64"}[mix]

    def more_bits(i):
        return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2

    tensors = []
    for name in tensor_names(model_dir):
        if not name.endswith(".weight") or "norm" in name:
            continue
        m = re.search(r"layers\.(\d+)\.", name)
        i = int(m.group(1)) if m else -1
        if name.endswith("mlp.gate.weight") or "block_sparse_moe.gate." in name:
            continue  # router: source dtype
        fmt = default
        if name.startswith("lm_head"):
            fmt = "q6g64"
        elif "v_proj" in name or "k_proj" in name:
            if n_expert == 8:
                fmt = "q8g32"
            elif "v_proj" in name:
                if mix == "Q4_K_M":
                    fmt = "q6g64" if more_bits(i) else default
                else:
                    fmt = "q5g64" if i < 2 else "q4g64"
        elif "o_proj" in name:
            if n_expert == 8:
                fmt = "q5g64"
            elif mix == "Q3_K_M":
                fmt = "q4g64"
        elif ".w2." in name or "down_proj" in name:
            if mix == "Q4_K_M":
                fmt = "q6g64" if more_bits(i) else default
            else:
                fmt = "q5g64" if i < n // 16 else "q4g64"
        tensors.append({"name": name, "format": fmt})
    json.dump({"schema": "moeq.allocation", "version": 1,
               "producer": "bench/quality/gguf_mix_allocation.py " + mix,
               "tensors": tensors}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
