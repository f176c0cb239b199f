// Data-aware encoders of the GGUF block layouts (docs/formats.md §3.2): the `weighted` and `gptq`
// encoders of encoders.h, producing ggml blocks that decode with the unchanged ggml
// dequantization (DequantizeGgmlRow, llama.cpp). `rtn` is QuantizeGgmlRow.
//
// Every quantized type is described by one model: a block of B elements (32 legacy, 256 K-quant)
// is cut into sub-blocks of S elements, sub-block j has a step dl_j and an offset off_j, and an
// element decodes to ŵ = dl_j·q + off_j with an integer code q in [qlo, qhi]:
//   Q8_0/Q4_0/Q5_0  dl = d (fp16), off = 0;            Q4_1/Q5_1  dl = d, off = m (fp16);
//   Q2_K/Q4_K/Q5_K  dl = d·ls_j, off = −dmin·lm_j (d, dmin fp16; ls, lm unsigned 4/6-bit);
//   Q3_K/Q6_K       dl = d·ls_j, off = 0 (ls signed 6/8-bit).
// Codes are always round-to-nearest for the block's stored parameters.
//
// weighted  per block, minimises Σ_j h_j (w_j − ŵ_j)² (h = per-input-channel importance, the
//           diagonal of the input statistics) over a candidate grid:
//           1. each sub-block's continuous (scale, offset) — 21 inverse-scale candidates
//              (qmax − 1 … qmax + 1 levels over the range), each refit by weighted least squares;
//           2. legacy types: every candidate of step 1 rounded to fp16 (plus ggml's plain
//              min/max rule) is evaluated exactly, the best is kept;
//              K-quants: the super-block scale d (and dmin) from the largest sub-block scale
//              (min) times f ∈ {0.90, 0.95, 1, 1.05, 1.10} (asymmetric: f_d × f_dmin ∈
//              {0.95, 1, 1.05}²); for each, every sub-block's integer scale (and min) is chosen
//              among round(scale/d) ± 1 (× round(min/dmin) ± 1) by the exact weighted error;
//           3. the block moeq's rtn codec writes is evaluated too and kept when it is better, so
//              weighted never does worse than rtn on this objective.
// gptq      GPTQ's column-by-column rounding with error compensation through the Cholesky factor
//           of the damped inverse Hessian (encoders.h), in the GGUF layout: when the sweep reaches
//           the first column of a block, that block's parameters (d, dmin, sub-block scales and
//           mins) are chosen for each row by the `weighted` search (steps 1–2, h = diag H) on the
//           partially updated weights; the block's columns are then rounded one by one with those
//           parameters and their error propagated to the later columns. Lazy batches are a
//           multiple of the block size (≥ gptq_block), so a block's weights are up to date when its
//           parameters are chosen. act-order is not used (a block's columns are contiguous).
//           With H = I nothing is propagated and the codes equal the step-1–2 search with h = 1.
//
// Deterministic for any thread count (rows in fixed chunks, fixed summation order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "moeq/base/status.h"
#include "moeq/formats/gguf.h"
#include "moeq/quant/encoders.h"

namespace moeq::quant {

/// True for the block-quantized types the data-aware encoders handle (Q4_0 … Q6_K).
bool GgmlEncoderSupported(GgmlType type);

/// Encodes W [rows, cols] (float32 row-major, cols a multiple of the block size) into `rows`
/// ggml rows of `type` (rows · GgmlRowBytes(type, cols) bytes) with options.kind; the encoder
/// really run is EffectiveEncoder(options.kind, stats) (rtn without statistics), and rtn for
/// float types. `stats` (may be null) must describe `cols` inputs.
Result<std::vector<std::byte>> EncodeGgml(std::span<const float> w, int64_t rows, int64_t cols,
                                          GgmlType type, const EncoderOptions& options,
                                          const InputStats* stats, int threads = 0);

/// The weighted search (steps 1–2 above, without the rtn comparison) of one block of `type`:
/// writes the block's bytes to `out` (type_size bytes). `h` has block_size non-negative entries
/// (all zero = uniform). Exposed for tests.
Status SearchGgmlBlock(GgmlType type, const float* x, const double* h, std::byte* out);

/// Σ h (x − decode(block))² of one encoded block (decoded by DequantizeGgmlRow).
Result<double> GgmlBlockError(GgmlType type, const float* x, const double* h,
                              const std::byte* block);

}  // namespace moeq::quant
