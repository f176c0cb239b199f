// ggml block bit packing (layouts: docs/formats.md §3.2): how integer codes, fp16 scales and
// the K-quants' sub-block scales are laid out in the bytes of a block. The one packer of moeq:
// the formats module's round-to-nearest encoders (QuantizeGgmlRow) and the quant module's
// data-aware GGUF encoders (moeq/quant/gguf_encoders.h) both write blocks through it, and the
// decoders (DequantizeGgmlRow) read what it writes.
//
// Codes are the stored unsigned values (e.g. Q4_0: q + 8; Q6_K: q + 32); only the bits the
// layout stores are used.
#pragma once

#include <cstdint>

namespace moeq::ggml {

/// fp16 of v, little-endian, at p[0..1].
void PutF16(uint8_t* p, float v);

/// Legacy 32-element blocks: the low nibbles of codes q[0..31] into 16 bytes (q[j] in the low,
/// q[j + 16] in the high nibble of byte j).
void PackNibbles32(const uint8_t* q, uint8_t* qs);
/// Legacy 5-bit blocks: bit 4 of codes q[0..31] into 4 bytes (a little-endian uint32, bit j
/// from q[j]).
void PackHighBits32(const uint8_t* q, uint8_t* qh);

/// Q4_K/Q5_K: the 6-bit scales ls[0..7] and mins lm[0..7] of the 8 sub-blocks into the 12 scale
/// bytes (the inverse of ggml's get_scale_min_k4).
void PackScaleMinK4(const uint8_t* ls, const uint8_t* lm, uint8_t* q);
/// Q4_K/Q5_K: scale and min of sub-block j from the 12 scale bytes (ggml's get_scale_min_k4).
void GetScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m);

/// Q4_K: the 256 codes (in [0, 15]) into 128 bytes: chunk c of 64 codes gives bytes
/// 32c..32c+31, its first 32 codes in the low nibbles, the next 32 in the high ones.
void PackQ4KCodes(const uint8_t* q, uint8_t* qs);
/// Q5_K: the 256 codes (in [0, 31]): low nibbles as Q4_K into qs (128 bytes), bit 4 into qh (32
/// bytes; bit 2c of qh[l] from code 64c + l, bit 2c + 1 from code 64c + 32 + l).
void PackQ5KCodes(const uint8_t* q, uint8_t* qh, uint8_t* qs);
/// Q6_K: the 256 codes (in [0, 63]) into ql (128 bytes, low 4 bits) and qh (64 bytes, high 2
/// bits); both are cleared first.
void PackQ6KCodes(const uint8_t* q, uint8_t* ql, uint8_t* qh);

}  // namespace moeq::ggml
