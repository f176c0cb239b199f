// Matrix products straight from MLX affine-packed weights (private to src/engine).
//
// A PackedMatrix is a non-owning view of one quantized weight W [out, in]: per row, `in` codes
// of `bits` bits as a little-endian bit stream (MLX's uint32 words, read as bytes on a
// little-endian host), and per group of `group` consecutive codes one scale and one bias
// (bf16, f16 or f32 bit patterns). w[o, i] ≈ q[o, i] * scale[o, g] + bias[o, g].
//
// Each weight is dequantized in float32 as w = fma(q, scale, bias) and multiplied into one of 8
// (AVX2, portable) or 16 (AVX-512) lane accumulators; the lanes are summed by one fixed tree at
// the end. For one input row (decode) the codes are unpacked and dequantized in registers; for
// many (prefill) the dequantized weights of 8 or 16 rows are written once to a small float32
// panel that a register-blocked FMA kernel runs every input row against (qmatmul_kernel.h).
// See docs/inference.md for the tolerance against dequantize-then-multiply.
//
// Determinism: every output element is computed by one fixed sequence of operations that
// depends only on the ISA path and the shapes — not on the thread count, the output tile, the
// kernel or how many input rows are processed together (a token gives the same bits in a
// 512-token window and in a one-token decode step).
//
// Buffers: the code stream of a matrix must be followed by at least kPackedPadBytes readable
// bytes (the vector loads read up to 12 bytes past the last code).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "moeq/base/cpu_features.h"

namespace moeq::engine {

/// Readable bytes required after every packed code buffer.
inline constexpr int64_t kPackedPadBytes = 64;

/// Scale/bias element type of a packed matrix.
enum class PackedScale : uint8_t { kBF16, kF16, kF32 };

struct PackedMatrix {
  int bits = 0;   ///< 2, 3, 4, 5, 6 or 8
  int group = 0;  ///< 32, 64 or 128
  PackedScale scale = PackedScale::kBF16;
  int64_t out = 0;
  int64_t in = 0;
  const uint8_t* codes = nullptr;  ///< out * in * bits / 8 bytes (+ kPackedPadBytes readable)
  const void* scales = nullptr;    ///< out * in / group elements
  const void* biases = nullptr;    ///< out * in / group elements
  /// Run products on int8 activations (EngineOptions::int8_activations; the int8 contract
  /// below) instead of float32 ones.
  bool int8_act = false;

  bool valid() const { return codes != nullptr; }
  int64_t row_bytes() const { return in * bits / 8; }
  int64_t groups_per_row() const { return in / group; }
  int64_t scale_bytes() const { return scale == PackedScale::kF32 ? 4 : 2; }
  /// Bytes of codes + scales + biases (what a product reads).
  int64_t nbytes() const { return out * row_bytes() + 2 * out * groups_per_row() * scale_bytes(); }
  /// Format key: equal keys run the same kernel.
  int key() const {
    return (int8_act ? 100000 : 0) + bits * 1000 + group * 4 + static_cast<int>(scale);
  }
};

// ---- int8 activations ------------------------------------------------------------------------
// With PackedMatrix::int8_act the input rows are quantized once per product (Int8RowsBuffer):
// per row and block of kInt8Block consecutive inputs, d = amax / 127 and x_q = round-half-even
// (x * (127 / amax)) clamped to [-127, 127] (all zero, d = 0 for an all-zero block), plus the
// float32 sum of the block's x (x[l] + x[16 + l] in 16 lanes, then halves added: 8, 4, 2, 1). A
// product is then
//   y[t, o] = sequence over groups g, in order: for each block b of g, in order:
//               f = fma(float(Σ_{i in b} q[o, i] · x_q[t, i]), scale[o, g] · d[t, b], f);
//             then f = fma(bias[o, g], xsum[t, g], f)
// from f = 0, where the integer sums are exact (any order gives the same value) and xsum[t, g] is
// Int8GroupSum of the group's block sums. Every ISA computes exactly this, so int8 results are
// identical across ISAs, thread counts, tiles and the number of rows processed together. A block
// with a NaN or an infinity gives x_q = 0 and d = NaN, so the outputs it feeds are NaN.
// docs/inference.md gives the measured accuracy.

inline constexpr int64_t kInt8Block = 32;

/// Quantized input rows: q [rows, in] (row stride `in`), d and sum [rows, in / kInt8Block].
struct Int8Rows {
  const int8_t* q = nullptr;
  const float* d = nullptr;
  const float* sum = nullptr;
  int64_t rows = 0;
  int64_t in = 0;
  int64_t blocks() const { return in / kInt8Block; }
};

/// Owning storage of quantized rows (reused between calls: it only grows).
class Int8RowsBuffer {
 public:
  /// Quantizes x [rows, in] (row stride x_stride); in must be a multiple of kInt8Block. `isa`
  /// only picks the code (an available one; every ISA gives the same bytes).
  void Quantize(const float* x, int64_t rows, int64_t x_stride, int64_t in, Isa isa);
  const Int8Rows& view() const { return view_; }

 private:
  std::vector<int8_t> q_;
  std::vector<float> f_;  // d then sum
  Int8Rows view_;
};

/// The int8 rows a product of `w` needs: nullptr when `w` is not int8_act; `given` when not
/// null (x already quantized); else x [rows, w.in] (row stride x_stride) quantized into this
/// thread's buffer, valid until the thread's next call.
const Int8Rows* Int8RowsFor(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride,
                            const Int8Rows* given, Isa isa);

/// The sum of a group's block sums `s[0..n)` (n = group / kInt8Block: 1, 2 or 4), fixed tree.
inline float Int8GroupSum(const float* s, int64_t n) {
  if (n == 1) return s[0];
  if (n == 2) return s[0] + s[1];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/// Instruction-set paths of the packed kernels: the library's one Isa (moeq/base/cpu_features.h).
using PackedIsa = Isa;

/// The path used by default: SelectIsa() — the best one the CPU supports (AVX-512 F+BW+VL+DQ,
/// AVX2+FMA, portable), lowered by MOEQ_ISA=portable|avx2|avx512 (MOEQ_ENGINE_KERNELS is the
/// deprecated older name).
PackedIsa DefaultPackedIsa();
/// True when this build and CPU can run `isa`.
bool PackedIsaAvailable(PackedIsa isa);
std::string_view PackedIsaName(PackedIsa isa);

/// Widest vector (lanes) and largest token block of any ISA's kernel (sizes the work buffer).
inline constexpr int64_t kPackedMaxWidth = 16;
inline constexpr int64_t kPackedMaxTokenBlock = 8;

/// Floats of the work buffer a kernel call on a matrix with `in` inputs needs (per thread):
/// accumulators, a float32 panel of kPackedMaxWidth dequantized rows, and 64-byte alignment.
inline int64_t PackedWorkFloats(int64_t in) {
  return kPackedMaxTokenBlock * kPackedMaxWidth * kPackedMaxWidth + kPackedMaxWidth * in + 16;
}

/// Arguments of one kernel call: outputs [o0, o1) of W for `rows` input rows.
struct PackedGemmArgs {
  const PackedMatrix* w = nullptr;
  const float* x = nullptr;  ///< [rows, x_stride], the first w->in values of each row used
  int64_t x_stride = 0;
  float* work = nullptr;  ///< PackedWorkFloats(w->in) floats, owned by the calling thread
  int64_t rows = 0;
  float* y = nullptr;  ///< y[r * y_stride + o] for o in [o0, o1)
  int64_t y_stride = 0;
  int64_t o0 = 0, o1 = 0;
  /// The quantized x rows (required by int8_act kernels, ignored by float ones).
  const Int8Rows* xq = nullptr;
};
using PackedGemmFn = void (*)(const PackedGemmArgs&);

/// The kernel for `w`'s format on `isa` (which must be available), or nullptr when the format
/// is unsupported (bits or group size outside the MLX set). For int8_act matrices: the AVX-512
/// VNNI kernel when `isa` is avx512 and the CPU has VNNI, else the generic int8 kernel compiled
/// for `isa` (all give the same bits).
PackedGemmFn FindPackedGemm(const PackedMatrix& w, PackedIsa isa);

/// This thread's work buffer for a kernel call on a matrix with `in` inputs.
float* PackedWorkBuffer(int64_t in);

/// y [rows, w.out] (row stride y_stride) = x [rows, w.in] · Wᵀ, tiled over output rows and
/// run on up to `threads` threads; the result does not depend on `threads`. For an int8_act
/// matrix x is quantized first (or `xq`, x already quantized, is used).
void PackedGemm(const PackedMatrix& w, const float* x, int64_t rows, int64_t x_stride, float* y,
                int64_t y_stride, int threads, PackedIsa isa = DefaultPackedIsa(),
                const Int8Rows* xq = nullptr);

}  // namespace moeq::engine
