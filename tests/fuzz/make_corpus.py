#!/usr/bin/env python3
"""Regenerates the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/): small,
valid (or nearly valid) files of every input kind. Run from the repository root."""
import json, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    header, blobs, off = {}, b"", 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs += data
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blobs


put("safetensors_header", "f32.safetensors", safetensors([("w", "F32", [2, 3], struct.pack("<6f", *range(6)))]))
put("safetensors_header", "mixed.safetensors", safetensors(
    [("a.weight", "BF16", [4], b"\x80\x3f" * 4), ("b.bias", "F16", [2, 2], b"\x00\x3c" * 4),
     ("ids", "I32", [3], struct.pack("<3i", 1, 2, 3)), ("empty", "F32", [0, 4], b"")],
    {"format": "pt"}))
put("safetensors_header", "u32.safetensors", safetensors([("q", "U32", [2, 2], b"\x01\x00\x00\x00" * 4)]))


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(kv, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, payload in kv:
        out += gguf_str(key) + struct.pack("<i", vtype) + payload
    off = 0
    infos, data = b"", b""
    for name, ne, ttype, blob in tensors:
        infos += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", d) for d in ne)
        infos += struct.pack("<iQ", ttype, off)
        pad = (alignment - len(blob) % alignment) % alignment
        data += blob + b"\x00" * pad
        off += len(blob) + pad
    out += infos
    out += b"\x00" * ((alignment - len(out) % alignment) % alignment)
    return out + data


kv = [("general.architecture", 8, gguf_str("qwen3moe")), ("general.alignment", 4, struct.pack("<I", 32)),
      ("qwen3moe.block_count", 4, struct.pack("<I", 1)),
      ("tokenizer.ggml.tokens", 9, struct.pack("<iQ", 8, 2) + gguf_str("a") + gguf_str("b"))]
q8_block = struct.pack("<e", 0.5) + bytes(range(32))
put("gguf_reader", "f32_q8.gguf", gguf(kv, [("token_embd.weight", [4, 2], 0, struct.pack("<8f", *range(8))),
                                            ("blk.0.ffn_down.weight", [32, 2], 8, q8_block * 2)]))
put("gguf_reader", "f16.gguf", gguf(kv[:2], [("output.weight", [8], 1, struct.pack("<8e", *range(8)))]))

base_moe = {"model_type": "qwen3_moe", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 256, "intermediate_size": 96, "moe_intermediate_size": 32,
            "num_experts": 4, "num_experts_per_tok": 2, "mlp_only_layers": [0], "rope_theta": 1e6}
put("config_adapter", "qwen3_moe.json", json.dumps(base_moe))
put("config_adapter", "mixtral.json", json.dumps({"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "intermediate_size": 32,
    "num_local_experts": 4, "num_experts_per_tok": 2}))
put("config_adapter", "deepseek_v3.json", json.dumps({"model_type": "deepseek_v3", "hidden_size": 64,
    "num_hidden_layers": 3, "num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 96,
    "moe_intermediate_size": 32, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
    "first_k_dense_replace": 1, "q_lora_rank": None, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8, "v_head_dim": 8}))
put("config_adapter", "qwen2_moe.json", json.dumps({"model_type": "qwen2_moe", "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 96,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64, "num_experts": 4,
    "num_experts_per_tok": 2, "tie_word_embeddings": True}))
put("config_adapter", "llama.json", json.dumps({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 8, "vocab_size": 256, "intermediate_size": 128, "head_dim": 8}))
put("config_adapter", "olmoe.json", json.dumps({"model_type": "olmoe", "hidden_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 4, "vocab_size": 256, "intermediate_size": 32, "num_experts": 8,
    "num_experts_per_tok": 2}))

byte_vocab = {chr(c) if 33 <= c < 127 else "\u0100" + chr(0x100 + c)[-1]: i for i, c in enumerate(range(256))}
vocab = {}
for i, c in enumerate(list(range(33, 127)) + [0x120, 0x10A]):
    vocab[chr(c)] = i
vocab.update({"he": len(vocab), "ll": len(vocab) + 1, "hell": len(vocab) + 2, "Ġw": len(vocab) + 3})
tok = {"version": "1.0", "added_tokens": [{"id": 200, "content": "<|endoftext|>", "special": True,
                                           "single_word": False, "lstrip": False, "rstrip": False,
                                           "normalized": False}],
       "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
       "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
           {"type": "Split", "pattern": {"Regex": "\\s+|\\p{L}+|\\p{N}|[^\\s\\p{L}\\p{N}]+"}, "behavior": "Isolated",
            "invert": False},
           {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
       "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
       "model": {"type": "BPE", "vocab": vocab, "merges": ["h e", "l l", "he ll", "Ġ w"], "dropout": None,
                 "unk_token": None, "byte_fallback": False}}
put("tokenizer_json", "bytelevel_bpe.json", json.dumps(tok))
tok2 = dict(tok)
tok2["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                          {"type": "Replace", "pattern": {"String": " "},
                                                           "content": "\u2581"}]}
tok2["pre_tokenizer"] = None
tok2["decoder"] = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                    {"type": "ByteFallback"}, {"type": "Fuse"},
                                                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
put("tokenizer_json", "spm_like.json", json.dumps(tok2))

hdr = {"schema": "moeq.sensitivity", "version": 1, "producer": {"tool": "moeq-analyze", "version": "0.1.0"}}
lines = [json.dumps(hdr)]
for name, role, layer, expert in [("model.layers.0.mlp.experts.0.gate_proj.weight", "expert_gate", 0, 0),
                                  ("model.layers.0.self_attn.q_proj.weight", "attn_q", 0, -1)]:
    for fmt, bits, group, nbytes, nrmse in [("q4g64", 4, 64, 1152, 0.11), ("q8g32", 8, 32, 2304, 0.01),
                                           ("bf16", 16, 0, 4096, 0.002)]:
        lines.append(json.dumps({"tensor": name, "role": role, "layer": layer, "expert": expert, "shape": [32, 64],
                                 "params": 2048, "dtype": "bf16", "format": fmt, "bits": bits, "group_size": group,
                                 "bytes": nbytes, "nrmse": nrmse, "sqnr_db": 20.0}))
put("sensitivity_jsonl", "two_tensors.jsonl", "\n".join(lines) + "\n")

alloc = {"schema": "moeq.allocation", "version": 1, "producer": {"tool": "moeq-allocate"},
         "tensors": [{"name": "model.layers.0.mlp.experts.0.gate_proj.weight", "format": "q4g32", "bits": 4,
                      "group_size": 32},
                     {"name": "model.layers.1.self_attn.q_proj.weight", "format": "q8g32"},
                     {"name": "model.layers.1.mlp.experts.3.down_proj.weight", "format": "bf16", "prune": False}]}
put("allocation_json", "three.json", json.dumps(alloc))

trace = [json.dumps({"schema": "moeq.routing_trace", "version": 1,
                     "model": {"num_layers": 2, "num_experts": 4, "top_k": 2}})]
for tkn in range(4):
    for layer in range(2):
        trace.append(json.dumps({"layer": layer, "token": tkn, "experts": [tkn % 4, (tkn + 1) % 4],
                                 "weights": [0.625, 0.375], "domain": "code" if tkn % 2 else "default"}))
put("routing_trace", "small.jsonl", "\n".join(trace) + "\n")

put("token_ids", "list.json", b"\x00[1, 2, 3, 200, 0]")
put("token_ids", "object.json", b"\x00{\"ids\": [5, 6, 7]}")
npy_header = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }"
npy_header += " " * ((64 - (10 + len(npy_header) + 1) % 64) % 64) + "\n"
put("token_ids", "ids.npy", b"\x01\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header.encode()
    + struct.pack("<3i", 1, 2, 3))
put("token_ids", "ids.u16", b"\x02" + struct.pack("<4H", 1, 2, 3, 65535))
put("token_ids", "ids.u32", b"\x03" + struct.pack("<2I", 7, 70000))
put("token_ids", "mqid.ids", b"\x04MQID" + struct.pack("<HHQ", 1, 2, 3) + struct.pack("<3H", 9, 8, 7))
