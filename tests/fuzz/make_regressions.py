#!/usr/bin/env python3
"""Writes the hostile inputs of issue 15 into tests/fuzz/regressions/<target>/ (each crashed,
hung or was mis-handled by moeq before the fix); crash inputs found by the fuzzers are added
there by hand (copied from build-fuzz/artifacts/<target>/). Run from the repository root."""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


deep = "[" * 100000 + "]" * 100000
moe = {"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "vocab_size": 256, "intermediate_size": 96, "moe_intermediate_size": 32,
       "num_experts": 4, "num_experts_per_tok": 2}
# 1. deeply nested JSON, in a value that error messages used to dump().
put("config_adapter", "deep_nesting_value.json", json.dumps(moe)[:-1] + ', "rope_scaling": ' + deep + "}")
put("config_adapter", "deep_nesting_hidden_size.json", json.dumps(moe).replace('"hidden_size": 64', '"hidden_size": ' + deep))
put("sensitivity_jsonl", "deep_nesting.jsonl", '{"schema": "moeq.sensitivity", "version": 1}\n{"tensor": ' + deep + "}\n")
put("token_ids", "deep_nesting.json", b"\x00" + deep.encode())
put("tokenizer_json", "deep_nesting_normalizer.json", '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": '
    + "{\"type\": \"Sequence\", \"normalizers\": " * 1 + deep + "}}")
# 2. nested tokenizer Sequences (quadratic path strings, then a stack overflow).
n = 3000
seq = '{"type": "Sequence", "normalizers": [' * n + '{"type": "NFC"}' + "]}" * n
put("tokenizer_json", "nested_sequences.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": ' + seq + "}")
pseq = '{"type": "Sequence", "pretokenizers": [' * 100 + '{"type": "Whitespace"}' + "]}" * 100
put("tokenizer_json", "nested_pretokenizers_100.json", '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": ' + pseq + "}")
# 3. number overflow (out_of_range.406 escaped the readers).
put("config_adapter", "overflow_1e400.json", json.dumps(moe).replace('"vocab_size": 256', '"vocab_size": 1e400'))
put("sensitivity_jsonl", "overflow_1e400.jsonl", '{"schema": "moeq.sensitivity", "version": 1}\n'
    '{"tensor": "t", "format": "q4g64", "bits": 4, "group_size": 64, "bytes": 1, "nrmse": 1e400, "sqnr_db": 1}\n')
put("allocation_json", "overflow_1e400.json", '{"schema": "moeq.allocation", "version": 1e400, "tensors": []}')
put("routing_trace", "overflow_1e400.jsonl", '{"layer": 0, "token": 0, "experts": [0, 1], "weights": [1e400, 0]}\n')
h = b'{"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}'
put("safetensors_header", "overflow_1e400.safetensors", struct.pack("<Q", len(h)) + h + b"\x00" * 4)
# 4. absurd counts in config.json.
for key, value, name in [("num_experts", 1000000000, "experts_1e9"), ("num_hidden_layers", 2**31 - 1, "layers_2p31"),
                         ("num_hidden_layers", 2**32 + 4, "layers_2p32_plus_4"), ("num_hidden_layers", 1000000, "layers_1e6"),
                         ("vocab_size", 2**62, "vocab_2p62"), ("hidden_size", -5, "hidden_negative")]:
    c = dict(moe)
    c[key] = value
    put("config_adapter", name + ".json", json.dumps(c))
# 5. GGUF dimensions whose product overflows int64 (the byte size wrapped to 0).
def gguf_str(s):
    return struct.pack("<Q", len(s)) + s
for name, ne in [("numel_overflow", [2**40, 2**40, 2**40, 2**40]), ("numel_2p63", [2**32, 2**31, 1, 1])]:
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + gguf_str(b"t") + struct.pack("<I", len(ne))
    out += b"".join(struct.pack("<q", d) for d in ne) + struct.pack("<iQ", 0, 0)
    out += b"\x00" * ((32 - len(out) % 32) % 32) + b"\x00" * 64
    put("gguf_reader", name + ".gguf", out)
# 6. sensitivity shape whose product overflows int64.
put("sensitivity_jsonl", "shape_overflow.jsonl", '{"schema": "moeq.sensitivity", "version": 1}\n'
    '{"tensor": "t", "role": "attn_q", "layer": 0, "expert": -1, "shape": [4294967296, 4294967296, 16], "params": 1, '
    '"dtype": "bf16", "format": "q4g64", "bits": 4, "group_size": 64, "bytes": 1, "nrmse": 0.1, "sqnr_db": 1}\n')
# 7. allocation inconsistencies: empty tensors[], a stray bits/group_size next to a valid format.
put("allocation_json", "empty_tensors.json", '{"schema": "moeq.allocation", "version": 1, "tensors": []}')
put("allocation_json", "stray_bits.json", json.dumps({"schema": "moeq.allocation", "version": 1, "tensors": [
    {"name": "model.layers.0.self_attn.q_proj.weight", "format": "q4g32", "bits": 7, "group_size": 48}]}))
put("allocation_json", "version_99.json", '{"schema": "moeq.allocation", "version": 99, "tensors": []}')
